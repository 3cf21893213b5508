"""FMR by selection: rescore cached lora beams with a bonus for naming item-profile features.

Reads a candidate cache written by ``recx train reranker``
(``var/rerank/<adapter>-<split>-*.jsonl``),
picks per record with the ``typical`` rule plus ``w`` x (features of the item's profile the
candidate names, counted or weighted by their share of the item's reviews), and prints BLEU-1,
BLEU-4, ROUGE-L F and FMR on 15-word references, plus the FMR of the best beam (the bound).

    PYTHONPATH=. python deploy/experiments/feature_bonus.py \\
        var/rerank/smollm2-musical-v2.1-valid-<digest>.jsonl --data var/data/musical --split valid
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from recx_worker.features import words
from recx_worker.lm.selection import PhrasePrior, best_index, typical_scores
from training.evaluation.metrics import corpus_bleu, feature_matching_ratio, rouge
from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize


def _named(text: str, features: list[str]) -> list[str]:
    padded = f" {' '.join(words(text))} "
    return [f for f in features if f" {f} " in padded]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("--data", type=Path, default=Path("var/data/musical"))
    parser.add_argument("--split", default="valid")
    args = parser.parse_args()
    records = {
        r["record_id"]: r
        for r in map(json.loads, (args.data / f"{args.split}.jsonl").open(encoding="utf-8"))
    }
    train = [json.loads(line)["explanation"] for line in (args.data / "train.jsonl").open()]
    prior = PhrasePrior(train)
    profiles = json.loads((args.data / "item_profiles.json").read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in args.cache.open(encoding="utf-8")][1:]  # 1st: key

    cases = []
    for row in rows:
        record, texts = records[row["id"]], row["texts"]
        profile = profiles.get(record["item_id"], {})
        n = max(1, profile.get("n_reviews", 1))
        share = {f["feature"]: f["count"] / n for f in profile.get("features", [])}
        base = typical_scores(texts, prior)
        cases.append((record, texts, base, [_named(t, list(share)) for t in texts], share))

    def report(name: str, bonus: Callable[[list[str], dict[str, float]], float]) -> None:
        refs, hyps, feats = [], [], []
        for record, texts, base, named, share in cases:
            pick = best_index([b + bonus(m, share) for b, m in zip(base, named, strict=True)])
            refs.append(tokenize(record["explanation"])[:PETER_REFERENCE_WORDS])
            hyps.append(tokenize(texts[pick]))
            feats.append(record["feature"])
        print(
            f"{name:34} BLEU-1 {corpus_bleu(refs, hyps, 1):6.2f}  BLEU-4 "
            f"{corpus_bleu(refs, hyps, 4):5.2f}  R-L F {rouge(refs, hyps)['rouge_l_f']:6.2f}  "
            f"FMR {feature_matching_ratio(hyps, feats):.3f}"
        )

    bound = sum(
        any(record["feature"] in _named(t, [record["feature"]]) for t in texts)
        for record, texts, *_ in cases
    )
    print(f"{len(cases)} records; best beam for FMR: {bound / len(cases):.3f}")
    report("typical", lambda named, share: 0.0)
    for w in (0.05, 0.1, 0.2, 0.4):
        report(f"+ {w} per profile feature", lambda named, share, w=w: w * len(named))
        report(f"+ {w} x review share", lambda named, share, w=w: w * sum(share[f] for f in named))


if __name__ == "__main__":
    main()
