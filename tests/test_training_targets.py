"""Training targets in a recommender's voice: negative explanations are no targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from recx_worker.prepared import ExplanationRecord, PreparedData
from recx_worker.sentiment import is_negative
from training.targets import drop_negative

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


def test_build_examples_leaves_out_negative_targets(tmp_path):
    import torch

    from recx_worker.retrieval.embedder import MiniLMEmbedder
    from recx_worker.retrieval.evidence import EvidenceStore
    from recx_worker.retrieval.index import build_item_index
    from training.data.prepare import prepare
    from training.examples import build_examples

    torch.set_num_threads(1)
    prepare(
        FIXTURES / "reviews_tiny.json",
        tmp_path / "data",
        features=FIXTURES / "features_tiny.txt",
        progress=False,
    )
    data = PreparedData(tmp_path / "data")
    build_item_index(data, MiniLMEmbedder()).save(tmp_path / "index")
    store = EvidenceStore.open(tmp_path / "data", tmp_path / "index")

    every = build_examples(store, data, "train", negative_threshold=None)
    kept = build_examples(store, data, "train")
    negative = {e.record_id for e in every if is_negative(e.target)}
    assert negative, "the fixture should hold a negative explanation"
    assert {e.record_id for e in kept} == {e.record_id for e in every} - negative
    assert not any(is_negative(e.target) for e in kept)
