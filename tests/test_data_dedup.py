"""Deduplication and the leakage check of ``recx data prepare`` on small real-shaped reviews."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recx_worker.prepared import ExplanationRecord, PreparedData
from training.data.dedup import LeakageError, check_leakage, deduplicate, find_leaks
from training.data.prepare import prepare

FEATURES = ["tuner", "display", "strings", "tone", "strap", "cable", "capo"]
SENTENCES = {
    "tuner": "The tuner is accurate and the display is easy to read",
    "strings": "These strings have a warm tone and stay in tune",
    "strap": "The strap is comfortable and the leather feels solid",
    "cable": "This cable is quiet with no hum at all",
    "capo": "The capo holds the strings evenly without buzz",
}


def review(user: str, item: str, feature: str, n: int, rating: float = 5.0, **extra) -> dict:
    text = f"{SENTENCES[feature]} {'on my ' + item.lower()} number {n}. Shipped fast."
    return {
        "reviewerID": user,
        "asin": item,
        "reviewerName": "A Reviewer",
        "helpful": [0, 0],
        "reviewText": extra.get("text", text),
        "overall": rating,
        "summary": extra.get("summary", f"Review {user} {item}"),
        "unixReviewTime": 1_300_000_000 + n,
        "reviewTime": "01 01, 2012",
    }


def corpus() -> list[dict]:
    """Six users x six items, every user reviews every item once, plus planted copies."""
    items = {"T1": "tuner", "S1": "strings", "P1": "strap", "C1": "cable", "K1": "capo"}
    rows = []
    n = 0
    for u in range(8):
        for item, feature in items.items():
            n += 1
            rows.append(review(f"U{u}", item, feature, n))
    exact = dict(rows[3])  # the same row twice
    copy = dict(rows[5], asin="T2")  # U1's tuner review copied onto a variant item T2
    rows += [exact, copy]
    for u in range(8):  # T2 is a real item too
        n += 1
        rows.append(review(f"U{u}", "T2", "tuner", n))
    return rows


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, PreparedData, list[dict]]:
    root = tmp_path_factory.mktemp("dedup")
    rows = corpus()
    path = root / "reviews.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    features = root / "features.txt"
    features.write_text("\n".join(FEATURES) + "\n", encoding="utf-8")
    prepare(path, root / "out", features=features, progress=False)
    return path, PreparedData(root / "out"), rows


def test_exact_rows_and_cross_item_copies_are_counted_and_dropped(planted) -> None:
    _, data, _ = planted
    dedup = data.stats["dedup"]
    assert dedup["reviews"] == {"exact_rows": 1, "cross_item_copies": 1}
    assert dedup["dropped"]["exact"] == 1
    assert dedup["dropped"]["cross-item"] == 1
    assert data.manifest["dedup"] == dedup
    kept = [r for name in ("train", "valid", "test") for r in data.split(name)]
    ids = [r.record_id for r in kept]
    assert len(ids) == len(set(ids))
    # No two kept records share user and review sentence.
    pairs = [(r.user_id, r.explanation.lower()) for r in kept]
    assert len(pairs) == len(set(pairs))
    # One of each planted pair is left (lines 4 and 41: same row; 6 and 42: copied review).
    assert len({"r0000004", "r0000041"} & set(ids)) == 1
    assert len({"r0000006", "r0000042"} & set(ids)) == 1


def test_prepared_split_has_no_leak(planted) -> None:
    _, data, _ = planted
    splits = {name: data.split(name) for name in ("train", "valid", "test")}
    assert find_leaks(splits) == []
    assert data.manifest["split"]["leakage_check"] == "passed"


def record(rid: str, user: str, item: str, text: str) -> ExplanationRecord:
    return ExplanationRecord(
        record_id=rid, user_id=user, item_id=item, rating=5, feature="tuner", explanation=text
    )


def test_a_leaking_split_is_refused() -> None:
    train = [record("r1", "u1", "i1", "The tuner is accurate."), record("r2", "u2", "i2", "x y z")]
    # Same user and sentence (case and punctuation aside) on another item.
    test = [record("r3", "u1", "i2", "the tuner is ACCURATE")]
    with pytest.raises(LeakageError, match=r"1 valid/test records .*test r3 shares user"):
        check_leakage({"train": train, "valid": [], "test": test})
    # Same item and sentence by another user.
    valid = [record("r4", "u2", "i1", "The tuner is accurate!")]
    with pytest.raises(LeakageError, match="valid r4 shares item and sentence"):
        check_leakage({"train": train, "valid": valid, "test": []})


def test_copies_are_dropped_from_test_not_train_and_survivors_keep_their_split() -> None:
    train = [record("r1", "u1", "i1", "The tuner is accurate."), record("r2", "u2", "i2", "ok")]
    test = [
        record("r3", "u1", "i2", "The tuner is accurate."),  # user+sentence copy: dropped
        record("r4", "u2", "i1", "The display is bright."),  # survivor stays in test
    ]
    texts = {"r1": "a", "r2": "b", "r3": "c", "r4": "d"}
    splits, report = deduplicate({"train": train, "valid": [], "test": test}, texts)
    assert [r.record_id for r in splits["train"]] == ["r1", "r2"]
    assert [r.record_id for r in splits["test"]] == ["r4"]
    assert report.as_dict()["dropped"]["user sentence"] == 1
    assert report.as_dict()["dropped_by_split"] == {"train": 0, "valid": 0, "test": 1}
    check_leakage(splits)


def test_a_test_record_whose_item_lost_its_train_record_moves_to_train() -> None:
    train = [record("r1", "u1", "i1", "Great tuner here."), record("r2", "u1", "i2", "b c d")]
    test = [record("r3", "u1", "i2", "The display is bright.")]
    texts = {"r1": "same text", "r2": "same text", "r3": "other"}  # r2 copies r1 onto i2
    splits, report = deduplicate({"train": train, "valid": [], "test": test}, texts)
    assert report.dropped["cross-item"] == 1 and report.moved_to_train == 1
    assert [r.record_id for r in splits["train"]] == ["r1", "r3"] and not splits["test"]
