"""Offline study of how the lora explainer should choose among its decoded candidates.

    python deploy/experiments/mbr_study.py dump  --split valid --limit 207 OUT.jsonl
    python deploy/experiments/mbr_study.py score OUT.jsonl

``dump`` decodes, once, each record's beam candidates (cleaned, best beam first) with the
explainer's own code and stores them next to the record's reference, the template explainer's
text and the item's training snippets. ``score`` then compares selection rules on those same
candidates (first beam, consensus of the beams, consensus weighted by the item's training
sentences, the oracle that knows the reference) in seconds, so no rule needs a generation run
of its own.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path


def dump(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from recx_worker.config import load_settings
    from recx_worker.explainer import ExplainerContext
    from recx_worker.plugins import create_explainer
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.evaluation.evaluate import build_requests

    settings = load_settings()
    data = PreparedData(args.data)
    records = data.split(args.split)[: args.limit]
    store = EvidenceStore.open(args.data)
    records, requests, _ = build_requests(records, store, settings.chain)
    context = ExplainerContext.from_settings(settings, store)
    lora = create_explainer(
        "lora",
        context,
        adapter_dir=args.adapter,
        num_beams=args.beams,
        candidates=args.beams,
        threads=args.threads,
    )
    template = create_explainer("template", context)
    profiles = data.item_profiles
    started = time.perf_counter()
    with open(args.out, "w", encoding="utf-8") as out:
        for start in tqdm(range(0, len(requests), args.batch), unit="batch"):
            reqs = requests[start : start + args.batch]
            recs = records[start : start + args.batch]
            candidates = lora.candidate_texts(reqs)
            fallback = template.explain_batch(reqs)
            for i, rec in enumerate(recs):
                row = {
                    "id": rec.record_id,
                    "reference": rec.explanation,
                    "beams": candidates[i][0],
                    "template": fallback[i].text,
                    "snippets": profiles[rec.item_id].snippets,
                }
                out.write(json.dumps(row) + "\n")
    print(f"{len(requests)} records in {time.perf_counter() - started:.0f} s -> {args.out}")


def score(args: argparse.Namespace) -> None:
    from recx_worker.lm.selection import consensus_index, rouge_l_f1
    from training.evaluation.metrics import corpus_bleu, rouge_l
    from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

    rows = [json.loads(line) for line in args.file.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r["beams"]]
    refs = [tokenize(r["reference"])[:PETER_REFERENCE_WORDS] for r in rows]

    def snippet_mbr(r: dict) -> str:
        """Consensus with the item's training sentences counted as extra references."""
        beams = r["beams"]
        scores = [
            sum(rouge_l_f1(b, o) for j, o in enumerate(beams) if j != i)
            + sum(rouge_l_f1(b, s) for s in r["snippets"])
            for i, b in enumerate(beams)
        ]
        return beams[max(range(len(beams)), key=lambda i: (scores[i], -i))]

    def oracle(r: dict, ref: list[str]) -> str:
        return max(r["beams"], key=lambda b: rouge_l(ref, tokenize(b))[2])

    rules: dict[str, Callable[[dict], str]] = {
        "template": lambda r: r["template"],
        "first beam": lambda r: r["beams"][0],
        "consensus of beams": lambda r: r["beams"][consensus_index(r["beams"])],
        "beams + item snippets": lambda r: snippet_mbr(r),
    }
    print(f"{len(rows)} records")
    print(f"{'rule':32} {'BLEU-1':>7} {'BLEU-4':>7} {'R-L F':>7} {'words':>6}")
    for name, rule in [*rules.items(), ("oracle (R-L)", None)]:
        texts = [
            oracle(r, ref) if rule is None else rule(r) for r, ref in zip(rows, refs, strict=True)
        ]
        hyps = [tokenize(t) for t in texts]
        b1, b4 = corpus_bleu(refs, hyps, 1), corpus_bleu(refs, hyps, 4)
        rl = 100 * sum(rouge_l(ref, h)[2] for ref, h in zip(refs, hyps, strict=True)) / len(rows)
        n = sum(map(len, hyps)) / len(hyps)
        print(f"{name:32} {b1:7.2f} {b4:7.2f} {rl:7.2f} {n:6.1f}")
    # How close a user's own training explanations come to their reference (personal style).
    from recx_worker.prepared import PreparedData

    data = PreparedData(args.data)
    records = {r.record_id: r for r in data.split(args.split)}
    own: dict[str, list[list[str]]] = {}
    for record in data.split("train"):
        own.setdefault(record.user_id, []).append(tokenize(record.explanation))
    scores = [
        sum(rouge_l(ref, past)[2] for past in own[records[r["id"]].user_id])
        / len(own[records[r["id"]].user_id])
        for r, ref in zip(rows, refs, strict=True)
        if records[r["id"]].user_id in own
    ]
    print(
        f"the user's own training explanations, mean R-L F: {100 * sum(scores) / len(scores):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out", type=Path)
    d.add_argument("--data", type=Path, default=Path("var/data/musical"))
    d.add_argument("--split", default="valid")
    d.add_argument("--limit", type=int, default=300)
    d.add_argument("--adapter", default="adapters/smollm2-musical-v2")
    d.add_argument("--beams", type=int, default=4)
    d.add_argument("--batch", type=int, default=16)
    d.add_argument("--threads", type=int, default=None)
    s = sub.add_parser("score")
    s.add_argument("file", type=Path)
    s.add_argument("--data", type=Path, default=Path("var/data/musical"))
    s.add_argument("--split", default="valid")
    args = parser.parse_args()
    dump(args) if args.command == "dump" else score(args)


if __name__ == "__main__":
    main()
