"""The evidence API: what in a user's history and in an item's reviews supports a recommendation.

Everything a request needs is precomputed when the store opens (item vectors, top features,
snippets, train histories), so :meth:`EvidenceStore.evidence` is a few dictionary look-ups and
one small matrix-vector product: no model call on the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from recx_worker.events import Evidence, HistoryEntry, SupportingItem
from recx_worker.features import Lexicon
from recx_worker.prepared import PreparedData
from recx_worker.retrieval.index import ItemIndex, build_item_index, data_checksum

log = logging.getLogger(__name__)

#: (item ids, ratings, their vector rows): a history's catalog items
_History = tuple[list[str], list[float | None], np.ndarray]

#: Distinct event histories whose catalog items a store keeps (LRU; ids and rows only, a
#: few kB each): a recommender sends the same user, with the same history, for each item
#: of a top-N list.
HISTORY_CACHE = 4096

ITEM_FEATURES = 8
SUPPORT_FEATURES = 5
USER_FEATURES = 5

#: a ``SupportingItem`` from a dict (pydantic's validator itself: no ``__init__`` overhead)
_supporting_item = SupportingItem.__pydantic_validator__.validate_python


class UnknownItemError(LookupError):
    """The recommended item is not in the catalog the store was built from."""

    def __init__(self, item_id: str):
        super().__init__(f"unknown item {item_id!r}: not in the prepared catalog")
        self.item_id = item_id


class EvidenceStore:
    """Item vectors + profiles + train histories, answering evidence requests."""

    def __init__(self, data: PreparedData, index: ItemIndex):
        self.data = data
        self.index = index
        self.lexicon: Lexicon = data.lexicon
        profiles = data.item_profiles
        missing = set(profiles) - set(index.rows)
        if missing:
            raise ValueError(
                f"the index lacks {len(missing)} catalog items (e.g. {sorted(missing)[:3]}); "
                "rebuild it with `recx index build`"
            )
        self._vectors = index.vectors
        self._rows = index.rows
        self._item_features = {i: p.feature_names(ITEM_FEATURES) for i, p in profiles.items()}
        self._item_feature_sets = {i: frozenset(p.feature_names()) for i, p in profiles.items()}
        self._support_features = {
            i: tuple(f[:SUPPORT_FEATURES]) for i, f in self._item_features.items()
        }
        self._snippets = {i: (p.snippets[0] if p.snippets else None) for i, p in profiles.items()}
        self._empty: _History = ([], [], np.zeros(0, dtype=np.int64))
        self._histories: dict[str, _History] = {}
        self._user_features: dict[str, list[str]] = {}
        for user_id, history in data.user_histories.items():
            pairs = tuple((h.item_id, h.rating) for h in history.items)
            self._histories[user_id] = self._known(pairs)
            self._user_features[user_id] = [f.feature for f in history.features]
        self._event_history = lru_cache(maxsize=HISTORY_CACHE)(self._known)

    @classmethod
    def open(cls, data_dir: Path, index_dir: Path | None = None, embedder=None) -> EvidenceStore:
        """Open ``data_dir`` with the item vectors of ``index_dir``.

        Without ``index_dir``, the default index directory is used when it was built from this
        very data (same checksum); otherwise the vectors are computed in memory with
        ``embedder`` (default all-MiniLM-L6-v2).
        """
        data = PreparedData(data_dir)
        if index_dir is not None:
            index = ItemIndex.load(index_dir)
            if index.manifest.get("data_checksum") != data_checksum(data.root):
                log.warning("index %s was built from other data than %s", index_dir, data_dir)
            return cls(data, index)
        from recx_worker.config import PathSettings

        default = PathSettings().index_dir
        if (default / "manifest.json").exists():
            index = ItemIndex.load(default)
            if index.manifest.get("data_checksum") == data_checksum(data.root):
                return cls(data, index)
        if embedder is None:
            from recx_worker.retrieval.embedder import default_embedder

            embedder = default_embedder()
        return cls(data, build_item_index(data, embedder))

    def knows_item(self, item_id: str) -> bool:
        return item_id in self._item_features

    def _known(self, pairs: tuple[tuple[str, float | None], ...]) -> _History:
        """The catalog items among ``pairs`` (see ``_History``); the latest rating wins for
        repeated items."""
        merged = {item: rating for item, rating in pairs if item in self._item_features}
        ids = list(merged)
        rows = np.fromiter((self._rows[i] for i in ids), dtype=np.int64, count=len(ids))
        return ids, list(merged.values()), rows

    def _history(self, user_id: str, history: Iterable[HistoryEntry] | None) -> _History:
        if not history:  # None or an event without history: the user's train history
            return self._histories.get(user_id, self._empty)
        return self._event_history(tuple((entry.item_id, entry.rating) for entry in history))

    def evidence(
        self,
        user_id: str,
        item_id: str,
        history: list[HistoryEntry] | None = None,
        k: int = 3,
        exclude_items: set[str] | None = None,
    ) -> Evidence:
        """The top-``k`` supporting history items, the item's features and snippet, and the
        features this user writes about that the item has. Raises :class:`UnknownItemError`."""
        row = self._rows.get(item_id)
        if row is None or item_id not in self._item_features:
            raise UnknownItemError(item_id)
        ids, ratings, rows = self._history(user_id, history)
        supporting: list[SupportingItem] = []
        if ids and k > 0:
            sims = (self._vectors[rows] @ self._vectors[row]).tolist()
            # never the recommended item itself; best first, ties in history order (a stable
            # sort: histories are a few items, for which Python's sort beats numpy's calls)
            picked = [
                j
                for j, item in enumerate(ids)
                if item != item_id and not (exclude_items and item in exclude_items)
            ]
            picked.sort(key=sims.__getitem__, reverse=True)
            supporting = [
                _supporting_item(  # validated: faster than model_construct; lists are new
                    {
                        "item_id": ids[j],
                        "similarity": round(sims[j], 4),
                        "rating": ratings[j],
                        "features": self._support_features[ids[j]],
                    }
                )
                for j in picked[:k]
            ]
        has = self._item_feature_sets[item_id]
        user_features = [f for f in self._user_features.get(user_id, ()) if f in has]
        # built, not validated: every value comes from the prepared data the store checked
        # when it opened, in the types the model declares (lists copied: never shared)
        return Evidence.model_construct(
            supporting_items=supporting,
            item_features=list(self._item_features[item_id]),
            item_snippet=self._snippets[item_id],
            user_features=user_features[:USER_FEATURES],
        )

    def neighbours(self, item_id: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` items most similar to ``item_id`` (itself excluded), best first."""
        row = self._rows.get(item_id)
        if row is None:
            raise UnknownItemError(item_id)
        return self.index_neighbours(self.index, item_id, k)

    @staticmethod
    def index_neighbours(index: ItemIndex, item_id: str, k: int) -> list[tuple[str, float]]:
        row = index.rows.get(item_id)
        if row is None:
            raise UnknownItemError(item_id)
        sims, rows = index.search(index.vectors[row : row + 1], k + 1)
        out = [
            (index.ids[r], round(float(s), 4))
            for s, r in zip(sims[0], rows[0], strict=True)
            if r >= 0 and r != row
        ]
        return out[:k]
