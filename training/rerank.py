"""``recx train reranker``: fit the lora explainer's candidate reranker on the validation split.

1. **Decode** each record's candidates with the lora explainer's own code path
   (``LoraExplainer.candidate_texts``: its prompts, evidence, grounded decoding, cleaning) and
   the model's log-probability of each candidate; cached as JSON lines under
   ``var/rerank/`` keyed by the adapter, the split file and the decoding options, so re-fitting
   (or an interrupted run) decodes nothing twice.
2. **Describe** each candidate with ``recx_worker.lm.rerank.candidate_features`` (the code the
   explainer runs at inference; no reference involved) and **label** it with its ROUGE-L F
   against the record's reference (PEPLER tokens, 15-word reference, as ``recx eval``).
3. **Fit** a pairwise logistic model (scikit-learn): for two candidates of one record, the
   difference of their standardised features predicts which has the higher ROUGE-L F (pairs
   weighted by the gap). The regularisation and the ``guard_first`` rule are chosen by 5-fold
   cross-validation over records on the mean ROUGE-L F of the picks.
4. **Write** ``reranker.json`` (weights, feature list, scaling, the adapter and data checksums,
   the cross-validated numbers) into the adapter directory.

``--outputs DIR --outputs-split test`` also decodes that split (cached the same way) and writes
``first.jsonl``, ``consensus.jsonl``, ``reranker.jsonl`` and ``oracle.jsonl`` (``{"id",
"text"}`` per record) for ``recx eval --external``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recx_worker.checksums import sha256_file
from recx_worker.lm.rerank import (
    FEATURES,
    LOGPROB_FEATURES,
    CandidateGroup,
    Reranker,
    candidate_features,
)
from recx_worker.lm.selection import PhrasePrior, consensus_index, typical_index

CACHE_FORMAT = 1
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
FOLDS = 5


@dataclass(slots=True)
class Decoded:
    """One split's records with their cleaned candidates and each candidate's log-prob."""

    ids: list[str]
    references: list[str]
    groups: list[CandidateGroup]


def file_checksum(path: Path) -> str:
    """``sha256:<hex>`` of a file, as the cache key and ``reranker.json`` record it."""
    return "sha256:" + sha256_file(path)


def cache_key(explainer: Any, split_file: Path, adapter_checksum: str) -> dict[str, Any]:
    """What the cached candidates depend on: the adapter, the split file and everything the
    explainer says shapes its candidates (``LoraExplainer.decoding_identity``)."""
    return {
        "format": CACHE_FORMAT,
        "adapter": adapter_checksum,
        "split": file_checksum(split_file),
        **explainer.decoding_identity(),
    }


def _read_cache(path: Path, key: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or json.loads(lines[0]).get("key") != key:
        return {}
    rows = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except ValueError:  # a line cut short by an interrupted run
            break
        rows[row["id"]] = row
    return rows


def decode_split(
    explainer: Any,
    records: Sequence[Any],
    requests: Sequence[Any],
    cache: Path,
    key: dict[str, Any],
    batch: int = 16,
    logprobs: bool = False,
    log: Callable[[str], None] = print,
) -> Decoded:
    """Candidates (and with ``logprobs`` their log-probs) of every record, cached in
    ``cache`` (only missing ones are decoded), then the explainer's features' inputs (guard
    verdicts, planned feature)."""
    done = _read_cache(cache, key)
    todo = [
        i
        for i, r in enumerate(records)
        if r.record_id not in done or (logprobs and done[r.record_id]["logprobs"] is None)
    ]
    if todo:
        log(f"decoding {len(todo)} records ({len(done)} cached) -> {cache}")
        cache.parent.mkdir(parents=True, exist_ok=True)
        fresh = not done
        with cache.open("w" if fresh else "a", encoding="utf-8") as out:
            if fresh:
                out.write(json.dumps({"key": key}) + "\n")
            for start in range(0, len(todo), batch):
                chunk = todo[start : start + batch]
                reqs = [requests[i] for i in chunk]
                texts = [t for t, _ in explainer.candidate_texts(reqs)]
                scores = explainer.candidate_logprobs(reqs, texts) if logprobs else None
                for i, ts, lps in zip(chunk, texts, scores or [None] * len(chunk), strict=True):
                    row = {"id": records[i].record_id, "texts": ts, "logprobs": lps}
                    done[row["id"]] = row
                    out.write(json.dumps(row) + "\n")
                out.flush()
                log(f"  {min(start + batch, len(todo))}/{len(todo)}")
    rows = [done[r.record_id] for r in records]
    with_scores = all(r["logprobs"] is not None for r in rows)
    groups = explainer.candidate_groups(
        list(requests),
        [r["texts"] for r in rows],
        [r["logprobs"] for r in rows] if with_scores else None,
    )
    return Decoded([r.record_id for r in records], [r.explanation for r in records], groups)


def candidate_scores(reference: str, texts: Sequence[str]) -> list[float]:
    """ROUGE-L F of each candidate against ``reference`` as ``recx eval`` computes it."""
    from training.evaluation.metrics import rouge_l
    from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

    ref = tokenize(reference)[:PETER_REFERENCE_WORDS]
    return [rouge_l(ref, tokenize(t))[2] for t in texts]


@dataclass(slots=True)
class Table:
    """Per record (with candidates): feature rows and each candidate's ROUGE-L F."""

    features: list[np.ndarray]
    targets: list[np.ndarray]
    keep: list[int]  # indices into Decoded of these records


def build_table(decoded: Decoded, lexicon: Any) -> Table:
    feats, targets, keep = [], [], []
    for i, (group, reference) in enumerate(zip(decoded.groups, decoded.references, strict=True)):
        if not group.texts:
            continue
        feats.append(np.array(candidate_features(group, lexicon), dtype=float))
        targets.append(np.array(candidate_scores(reference, group.texts)))
        keep.append(i)
    return Table(feats, targets, keep)


def _pairs(
    feats: list[np.ndarray], targets: list[np.ndarray], mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, ws = [], [], []
    for x, y in zip(feats, targets, strict=True):
        z = (x - mean) / scale
        for i in range(len(y)):
            for j in range(i + 1, len(y)):
                gap = y[i] - y[j]
                if abs(gap) < 1e-9:
                    continue
                xs += [z[i] - z[j], z[j] - z[i]]
                ys += [int(gap > 0), int(gap < 0)]
                ws += [abs(gap)] * 2
    if not xs:
        raise ValueError("no record has candidates that differ in ROUGE-L F: nothing to learn")
    return np.array(xs), np.array(ys), np.array(ws)


def fit_reranker(
    feats: list[np.ndarray],
    targets: list[np.ndarray],
    c: float,
    guard_first: bool,
    features: Sequence[str] = FEATURES,
) -> Reranker:
    """The pairwise logistic model over ``features`` (see the module docstring); ``feats``
    hold all ``FEATURES`` columns."""
    from sklearn.linear_model import LogisticRegression

    columns = [FEATURES.index(f) for f in features]
    feats = [x[:, columns] for x in feats]
    stacked = np.vstack(feats)
    mean = stacked.mean(axis=0)
    scale = stacked.std(axis=0)
    scale[scale < 1e-12] = 1.0
    x, y, w = _pairs(feats, targets, mean, scale)
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    model.fit(x, y, sample_weight=w / w.mean())
    return Reranker(
        features=tuple(features),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weights=tuple(float(v) for v in model.coef_[0]),
        guard_first=guard_first,
    )


def picks_score(picks: Sequence[int], targets: Sequence[np.ndarray]) -> float:
    """Mean ROUGE-L F (x100) of the picked candidates."""
    return 100 * float(np.mean([t[p] for p, t in zip(picks, targets, strict=True)]))


def rule_picks(
    table: Table, decoded: Decoded, prior: PhrasePrior | None = None
) -> dict[str, list[int]]:
    """The reference-free rules and the oracle on the same candidates."""
    texts = [decoded.groups[i].texts for i in table.keep]
    return {
        "first beam": [0] * len(texts),
        "consensus": [consensus_index(t) for t in texts],
        "typical": [typical_index(t, prior) for t in texts],
        "oracle": [int(np.argmax(t)) for t in table.targets],
    }


def cross_validate(
    table: Table, folds: int = FOLDS, seed: int = 0, features: Sequence[str] = FEATURES
) -> dict[tuple[float, bool], tuple[float, list[int]]]:
    """Mean ROUGE-L F of the held-out picks (and the picks) for each (C, guard_first);
    records split in ``folds`` random folds."""
    order = np.random.default_rng(seed).permutation(len(table.targets))
    fold_of = np.empty(len(order), dtype=int)
    fold_of[order] = np.arange(len(order)) % folds
    results = {}
    for guard_first in (False, True):
        for c in C_GRID:
            picks = [0] * len(table.targets)
            for f in range(folds):
                train = [i for i in range(len(order)) if fold_of[i] != f]
                model = fit_reranker(
                    [table.features[i] for i in train],
                    [table.targets[i] for i in train],
                    c,
                    guard_first,
                    features,
                )
                for i in np.flatnonzero(fold_of == f):
                    picks[i] = model.choose(table.features[i].tolist())
            results[(c, guard_first)] = (picks_score(picks, table.targets), picks)
    return results


def _decode(
    explainer: Any, data: Any, store: Any, settings: Any, split: str, limit: int | None, **kw: Any
) -> Decoded:
    from recx_worker.lm.adapter import adapter_checksum
    from training.evaluation.evaluate import build_requests

    records = data.split(split)[:limit]
    records, requests, _ = build_requests(records, store, settings.chain)
    checksum = adapter_checksum(explainer.adapter_dir)
    key = cache_key(explainer, data.root / f"{split}.jsonl", checksum)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = kw.pop("cache") / f"{explainer.adapter_dir.name}-{split}-{digest}.jsonl"
    return decode_split(explainer, records, requests, path, key, **kw)


def _summary(name: str, picks: Sequence[int], table: Table, decoded: Decoded) -> str:
    from training.evaluation.metrics import corpus_bleu
    from training.evaluation.text import PETER_REFERENCE_WORDS, tokenize

    refs = [tokenize(decoded.references[i])[:PETER_REFERENCE_WORDS] for i in table.keep]
    hyps = [tokenize(decoded.groups[i].texts[p]) for i, p in zip(table.keep, picks, strict=True)]
    b1, b4 = corpus_bleu(refs, hyps, 1), corpus_bleu(refs, hyps, 4)
    rouge = picks_score(picks, table.targets)
    return f"{name:34} R-L F {rouge:6.2f}  BLEU-1 {b1:6.2f}  BLEU-4 {b4:5.2f}"


def run_reranker(
    *,
    adapter: Path,
    data: Path,
    index: Path | None,
    split: str,
    limit: int | None,
    cache: Path,
    batch_size: int,
    threads: int | None,
    write: bool,
    outputs: Path | None,
    outputs_split: str,
    outputs_limit: int | None = None,
    logprobs: bool = False,
    log: Callable[[str], None] = print,
) -> Reranker:
    """``recx train reranker`` (see the module docstring); returns the fitted reranker."""
    from recx_worker.config import load_settings
    from recx_worker.explainer import ExplainerContext
    from recx_worker.lm.adapter import adapter_checksum
    from recx_worker.plugins import create_explainer
    from recx_worker.prepared import PreparedData
    from recx_worker.retrieval.evidence import EvidenceStore
    from training.cli import data_checksum

    settings = load_settings()
    prepared = PreparedData(data)
    store = EvidenceStore.open(data, index)
    options = {
        k: v
        for k, v in settings.chain.options.get("lora", {}).items()
        if k not in ("adapter_dir", "selection")
    }
    if threads:
        options["threads"] = threads
    explainer: Any = create_explainer(
        "lora",
        ExplainerContext.from_settings(settings, store),
        **options,
        adapter_dir=adapter,
        selection="consensus",
        batch_size=batch_size,
    )
    if explainer.generation.candidates < 2:
        raise ValueError(
            f"the lora explainer decodes one candidate per request for {adapter} (its "
            "manifest's or [chain.options.lora]'s decoding), so there is nothing to choose "
            "among: set candidates >= 2 there (e.g. num_beams = 4 and candidates = 4, or "
            "top_p with candidates = 4), or use the adapter's teacher"
        )
    decoded = _decode(
        explainer, prepared, store, settings, split, limit,
        cache=cache, batch=batch_size, logprobs=logprobs, log=log,
    )  # fmt: skip
    table = build_table(decoded, store.lexicon)
    log(f"{len(table.keep)} {split} records with candidates; cross-validating")
    rules = rule_picks(table, decoded, explainer.phrase_prior())
    lines = [_summary(n, p, table, decoded) for n, p in rules.items()]
    feature_sets = {"without log-probs": [f for f in FEATURES if f not in LOGPROB_FEATURES]}
    if logprobs:
        feature_sets["with log-probs"] = list(FEATURES)
    for label, features in feature_sets.items():
        results = cross_validate(table, features=features)
        for (cc, gf), (score, _) in sorted(results.items()):
            log(f"  CV {label}, C={cc:g} guard_first={gf}: R-L F {score:.2f}")
        (c, guard_first), (cv_score, cv_picks) = max(results.items(), key=lambda kv: kv[1][0])
        lines.append(_summary(f"reranker {label} (CV)", cv_picks, table, decoded))
    log(f"{split}, {len(table.keep)} records:\n" + "\n".join(lines))
    # The last feature set is the one fitted (with log-probs when they were computed).
    reranker = fit_reranker(table.features, table.targets, c, guard_first, features)
    meta = {
        "objective": "ROUGE-L F (PEPLER tokens, 15-word reference), pairwise logistic",
        "C": c,
        "adapter_checksum": adapter_checksum(adapter),
        "data": {"dir": str(data), "split": split, "records": len(table.keep)},
        "generation": explainer.generation.as_dict(),
        "data_checksum": data_checksum(data),
        "split_checksum": file_checksum(prepared.root / f"{split}.jsonl"),
        "cross_validation": {
            "folds": FOLDS,
            "rouge_l_f": round(cv_score, 3),
            "consensus_rouge_l_f": round(picks_score(rules["consensus"], table.targets), 3),
            "oracle_rouge_l_f": round(picks_score(rules["oracle"], table.targets), 3),
        },
    }
    reranker = Reranker(
        reranker.features, reranker.mean, reranker.scale, reranker.weights, guard_first, meta
    )
    if write:
        log(f"wrote {reranker.save(adapter)}")
    if outputs is not None:
        write_outputs(
            explainer, reranker, prepared, store, settings, outputs_split, outputs_limit, outputs,
            cache=cache, batch=batch_size, logprobs=logprobs, log=log,
        )  # fmt: skip
    return reranker


def write_outputs(
    explainer: Any,
    reranker: Reranker,
    prepared: Any,
    store: Any,
    settings: Any,
    split: str,
    limit: int | None,
    out: Path,
    **kw: Any,
) -> None:
    """Decode ``split`` and write each rule's pick per record as ``OUT/<rule>.jsonl``."""
    decoded = _decode(explainer, prepared, store, settings, split, limit, **kw)
    table = build_table(decoded, store.lexicon)
    picks = rule_picks(table, decoded, explainer.phrase_prior())
    picks["reranker"] = [reranker.choose(f.tolist()) for f in table.features]
    out.mkdir(parents=True, exist_ok=True)
    for name, chosen in picks.items():
        path = out / f"{name.replace(' ', '-')}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for i, p in zip(table.keep, chosen, strict=True):
                row = {"id": decoded.ids[i], "text": decoded.groups[i].texts[p]}
                f.write(json.dumps(row) + "\n")
    kw["log"](
        f"{split}, {len(table.keep)} records -> {out}:\n"
        + "\n".join(_summary(n, p, table, decoded) for n, p in picks.items())
    )
