"""``recx data prepare``: reviews -> explanation records, split, profiles, stats, manifest.

The output directory follows :mod:`recx_worker.prepared`. It is written to a temporary
sibling and renamed into place, so readers never see a half-written directory.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from recx_worker.checksums import sha256_file
from recx_worker.features import Lexicon, words
from recx_worker.prepared import SPLITS, ExplanationRecord, ItemVocabulary
from training.data.dedup import check_leakage, deduplicate, review_copies
from training.data.extract import extract
from training.data.profiles import TrainReview, item_profiles, review_mentions, user_histories
from training.data.readers import DataInputError, Format, ReadReport, Review, read_reviews
from training.data.split import split_indices

VERSION = 2  # 2: deduplication, leakage check, item_vocab.json


@dataclass
class PrepareResult:
    out: Path
    stats: dict
    manifest: dict
    seconds: float
    splits: dict[str, list[ExplanationRecord]] = field(repr=False, default_factory=dict)


def _load_lexicon(features: Path | None, reviews: list[Review]) -> tuple[Lexicon, str]:
    if features is None:
        from training.data.auto_lexicon import build_lexicon

        return build_lexicon(r.text for r in reviews), "auto"
    if not features.exists():
        raise DataInputError(f"features file not found: {features}")
    lexicon = Lexicon.load(features)
    if not len(lexicon):
        raise DataInputError(f"features file has no feature: {features}")
    return lexicon, str(features)


def _write_jsonl(path: Path, rows: list[ExplanationRecord]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(row.model_dump_json() + "\n")


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def prepare(
    reviews_path: Path,
    out: Path,
    features: Path | None = None,
    fmt: Format = "auto",
    seed: int = 42,
    progress: bool = True,
) -> PrepareResult:
    """Run the whole pipeline and write ``out``; raises :class:`DataInputError` on bad input."""
    started = time.perf_counter()
    if features is not None and not Path(features).is_file():
        raise DataInputError(f"features file not found: {features}")
    report = ReadReport()
    reviews = list(
        tqdm(
            read_reviews(reviews_path, fmt, report),
            desc="read",
            unit=" reviews",
            disable=not progress,
        )
    )
    lexicon, lexicon_source = _load_lexicon(features, reviews)

    records: list[ExplanationRecord] = []
    scores: dict[str, float] = {}
    kept: dict[str, Review] = {}
    no_explanation: Counter = Counter()
    for review in tqdm(reviews, desc="extract", unit=" reviews", disable=not progress):
        found = extract(review, lexicon)
        if isinstance(found, str):
            no_explanation[found] += 1
            continue
        records.append(
            ExplanationRecord(
                record_id=f"r{review.line:07d}",
                user_id=review.user_id,
                item_id=review.item_id,
                rating=review.rating,
                timestamp=review.timestamp,
                feature=found.feature,
                sentiment=found.sentiment,
                explanation=found.explanation,
            )
        )
        scores[records[-1].record_id] = found.score
        kept[records[-1].record_id] = review
    if not records:
        raise DataInputError(
            f"{reviews_path}: no review yielded an explanation ({dict(no_explanation)}); "
            "check the feature lexicon"
        )

    # Split all records first, then drop copies: survivors keep their id and their split.
    parts = split_indices(records, seed=seed)
    splits, dedup = deduplicate(
        {name: [records[i] for i in parts[name]] for name in SPLITS},
        {rid: review.text for rid, review in kept.items()},
    )
    check_leakage(splits)
    train = [
        TrainReview(r, scores[r.record_id], review_mentions(kept[r.record_id].text, lexicon))
        for r in tqdm(splits["train"], desc="profiles", unit=" reviews", disable=not progress)
    ]
    profiles = item_profiles(train)
    texts_by_item: dict[str, list[str]] = {}
    for r in splits["train"]:
        review = kept[r.record_id]
        texts_by_item.setdefault(r.item_id, []).extend([review.text, review.title])
    vocabulary = ItemVocabulary.build(texts_by_item)
    histories = user_histories(train)

    stats = _stats(splits, reviews, report, no_explanation, lexicon)
    stats["dedup"] = {
        "reviews": review_copies(reviews),
        "records_before": len(records),
        **dedup.as_dict(),
    }
    manifest = {
        "version": VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "format": fmt,
        "inputs": {"reviews": {"path": str(reviews_path), "sha256": sha256_file(reviews_path)}},
        "lexicon": {"source": lexicon_source, "size": len(lexicon)},
        "split": {
            "ratios": [8, 1, 1],
            "method": "seeded shuffle; first record of each user and item reserved for train",
            "dedup": "after the split, copies dropped (train kept first); see docs/data.md",
            "leakage_check": "passed",
        },
        "dedup": stats["dedup"],
    }
    if features is not None:
        manifest["inputs"]["features"] = {"path": str(features), "sha256": sha256_file(features)}

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SPLITS:
        _write_jsonl(tmp / f"{name}.jsonl", splits[name])
    _write_json(tmp / "item_profiles.json", {k: v.model_dump() for k, v in profiles.items()})
    _write_json(tmp / "user_histories.json", {k: v.model_dump() for k, v in histories.items()})
    lexicon.save(tmp / "lexicon.txt")
    (tmp / "item_vocab.json").write_text(json.dumps(vocabulary.to_json()), encoding="utf-8")
    seconds = round(time.perf_counter() - started, 2)
    stats["seconds"] = seconds
    _write_json(tmp / "stats.json", stats)
    _write_json(tmp / "manifest.json", manifest)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return PrepareResult(out, stats, manifest, seconds, splits)


def _stats(
    splits: dict[str, list[ExplanationRecord]],
    reviews: list[Review],
    report: ReadReport,
    no_explanation: Counter,
    lexicon: Lexicon,
) -> dict:
    records = [r for name in SPLITS for r in splits[name]]
    lengths = [len(words(r.explanation)) for r in records]
    sentiment = Counter({1: "positive", -1: "negative", 0: "unknown"}[r.sentiment] for r in records)
    return {
        "reviews_read": len(reviews),
        "records": len(records),
        "coverage": round(len(records) / len(reviews), 4),
        "splits": {
            name: {
                "records": len(rows),
                "users": len({r.user_id for r in rows}),
                "items": len({r.item_id for r in rows}),
            }
            for name, rows in splits.items()
        },
        "users": len({r.user_id for r in records}),
        "items": len({r.item_id for r in records}),
        "features_in_records": len({r.feature for r in records}),
        "lexicon_size": len(lexicon),
        "mean_explanation_words": round(sum(lengths) / len(lengths), 2),
        "sentiment": dict(sentiment),
        "no_explanation": dict(no_explanation),
        "input": report.as_dict(),
    }
