"""Training targets in a recommender's voice: negative explanations are no targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from recx_worker.prepared import ExplanationRecord, PreparedData
from recx_worker.sentiment import is_negative
from training.targets import drop_negative, read_targets, replace_targets

FIXTURES = Path(__file__).parent / "fixtures"


def record(i: int, text: str) -> ExplanationRecord:
    return ExplanationRecord(
        record_id=f"r{i}", user_id="u", item_id="i", rating=4.0, feature="tuner", explanation=text
    )


def test_drop_negative_keeps_praise_and_neutral_text_in_order():
    records = [
        record(0, "The tuner is accurate and easy to read."),
        record(1, "The tuner broke after a week, a waste of money."),
        record(2, "The tuner clips onto the headstock."),
        record(3, "Sadly the tuner is not as good as the old one."),
    ]
    got = drop_negative(records)
    assert [r.record_id for r in got.kept] == ["r0", "r2"]
    assert [r.record_id for r in got.dropped] == ["r1", "r3"]
    assert got.dropped_share == pytest.approx(0.5)
    assert drop_negative(records, None).kept == records
    assert drop_negative(records, threshold=-0.99).dropped == []
    assert drop_negative([]).dropped_share == 0.0


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The tiny review fixture prepared and indexed: (data, evidence store)."""
    import torch

    from recx_worker.retrieval.embedder import MiniLMEmbedder
    from recx_worker.retrieval.evidence import EvidenceStore
    from recx_worker.retrieval.index import build_item_index
    from training.data.prepare import prepare

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("prepared")
    prepare(
        FIXTURES / "reviews_tiny.json",
        root / "data",
        features=FIXTURES / "features_tiny.txt",
        progress=False,
    )
    data = PreparedData(root / "data")
    build_item_index(data, MiniLMEmbedder()).save(root / "index")
    return data, EvidenceStore.open(root / "data", root / "index")


def test_build_examples_leaves_out_negative_targets(prepared):
    from training.examples import build_examples

    data, store = prepared
    every = build_examples(store, data, "train", negative_threshold=None)
    kept = build_examples(store, data, "train")
    negative = {e.record_id for e in every if is_negative(e.target)}
    assert negative, "the fixture should hold a negative explanation"
    assert {e.record_id for e in kept} == {e.record_id for e in every} - negative
    assert not any(is_negative(e.target) for e in kept)


def test_read_targets_keeps_answered_lines_and_names_a_bad_one(tmp_path):
    good = tmp_path / "teacher.jsonl"
    good.write_text(
        '{"record_id": "r1", "explanation": " The tuner is accurate. "}\n'
        "\n"
        '{"record_id": "r2", "explanation": null}\n'
        '{"record_id": 3, "explanation": "The strings ring."}\n',
        encoding="utf-8",
    )
    assert read_targets(good) == {"r1": "The tuner is accurate.", "3": "The strings ring."}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"record_id": "r1", "explanation": "ok"}\n{"record_id": "r2"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        read_targets(bad)


def test_replace_targets_keeps_only_named_records_with_the_new_text():
    records = [record(0, "The tuner is fine."), record(1, "Strings."), record(2, "Cable.")]
    got = replace_targets(records, {"r2": "The cable is sturdy.", "r0": "The tuner is great."})
    assert [(r.record_id, r.explanation) for r in got] == [
        ("r0", "The tuner is great."),
        ("r2", "The cable is sturdy."),
    ]
    assert records[0].explanation == "The tuner is fine."  # the originals are untouched


def test_build_examples_trains_on_given_targets_and_filters_them(prepared):
    from training.examples import build_examples

    data, store = prepared
    every = build_examples(store, data, "train", negative_threshold=None)
    first, second = every[0].record_id, every[1].record_id
    targets = {
        first: "The sound is warm and clear.",
        second: "The strings broke at once, a waste of money.",  # negative: no target
        "not-a-record": "Ignored.",
    }
    got = build_examples(store, data, "train", targets=targets)
    assert [(e.record_id, e.target) for e in got] == [(first, "The sound is warm and clear.")]
    assert got[0].prompt == every[0].prompt  # the same evidence, only the target differs


def test_the_teacher_answers_exactly_the_records_the_student_trains_on(prepared):
    from training.examples import build_examples, training_records

    data, store = prepared
    train = data.split("train")
    for limit in (None, 3):
        answered = [r.record_id for r in training_records(store, train, limit, 5)]
        trained = [e.record_id for e in build_examples(store, data, "train", limit, seed=5)]
        assert answered == trained and answered
    assert len(training_records(store, train, 3, 5)) == 3
