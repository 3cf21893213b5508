"""The evidence API on the tiny fixture with the real all-MiniLM-L6-v2 item vectors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from recx_worker.events import Evidence, HistoryEntry
from recx_worker.retrieval.embedder import MiniLMEmbedder
from recx_worker.retrieval.evidence import EvidenceStore, UnknownItemError
from recx_worker.retrieval.index import build_item_index
from training.data.prepare import prepare

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EvidenceStore:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ev")
    prepare(
        FIXTURES / "reviews_tiny.json",
        root / "data",
        features=FIXTURES / "features_tiny.txt",
        progress=False,
    )
    from recx_worker.prepared import PreparedData

    build_item_index(PreparedData(root / "data"), MiniLMEmbedder()).save(root / "index")
    return EvidenceStore.open(root / "data", root / "index")


def _train_user_with(store: EvidenceStore, n: int = 3) -> str:
    return next(u for u, h in store.data.user_histories.items() if len(h.items) >= n)


def test_known_user_uses_train_history(store: EvidenceStore) -> None:
    user = _train_user_with(store)
    history = {h.item_id: h.rating for h in store.data.user_histories[user].items}
    target = next(iter(history))
    ev = store.evidence(user, target, k=2)
    assert isinstance(ev, Evidence)
    Evidence.model_validate(ev.model_dump())  # a valid event payload
    assert 1 <= len(ev.supporting_items) <= 2
    sims = [s.similarity for s in ev.supporting_items]
    assert sims == sorted(sims, reverse=True)
    for item in ev.supporting_items:
        assert item.item_id != target  # never the recommended item itself
        assert item.rating == history[item.item_id]
        assert item.features and set(item.features) <= set(
            store.data.item_profiles[item.item_id].feature_names()
        )
    profile = store.data.item_profiles[target]
    assert ev.item_features == profile.feature_names(8)
    assert ev.item_snippet in profile.snippets
    assert set(ev.user_features) <= set(profile.feature_names())
    # the store builds evidence without validating it: it must still be what validation
    # gives, and an explainer that edits its evidence must not change the store's
    assert Evidence.model_validate(ev.model_dump()) == ev
    ev.item_features.append("edited")
    for item in ev.supporting_items:
        item.features.append("edited")
    again = store.evidence(user, target, k=2)
    assert "edited" not in again.item_features
    assert all("edited" not in item.features for item in again.supporting_items)


def test_most_similar_history_item_first(store: EvidenceStore) -> None:
    history = [HistoryEntry(item_id=i, rating=4.0) for i in ("C1", "S1", "T2", "GONE")]
    ev = store.evidence("someone-new", "T1", history=history, k=3)
    assert ev.supporting_items[0].item_id == "T2"
    assert "GONE" not in {s.item_id for s in ev.supporting_items}  # unknown: ignored
    assert ev.user_features == []
    ev = store.evidence("someone-new", "T1", history=history, k=3, exclude_items={"T2"})
    assert "T2" not in {s.item_id for s in ev.supporting_items}


def test_unknown_user_gets_empty_history(store: EvidenceStore) -> None:
    ev = store.evidence("never-seen", "S1")
    assert ev.supporting_items == [] and ev.user_features == []
    assert "strings" in ev.item_features


def test_unknown_item_is_an_error(store: EvidenceStore) -> None:
    assert store.knows_item("T1") and not store.knows_item("NOPE")
    with pytest.raises(UnknownItemError, match="NOPE"):
        store.evidence("U1", "NOPE")
    with pytest.raises(UnknownItemError):
        store.neighbours("NOPE")


def test_neighbours(store: EvidenceStore) -> None:
    found = store.neighbours("C1", k=3)
    assert found[0][0] == "C2"
    assert "C1" not in [i for i, _ in found] and len(found) == 3


def test_evidence_is_fast(store: EvidenceStore) -> None:
    user = _train_user_with(store)
    items = list(store.data.item_profiles)
    start = time.process_time()  # CPU time: robust to a busy shared machine
    n = 2000
    for i in range(n):
        store.evidence(user, items[i % len(items)])
    rate = n / (time.process_time() - start)
    assert rate > 1000, rate  # measured ~12,000 calls per CPU-second; see `recx bench evidence`
