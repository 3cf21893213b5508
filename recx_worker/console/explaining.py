"""The console's "explain this" and pairwise modes: every configured explainer answers the same
request on its own (a one-stage chain each), with the evidence. Chains are not thread-safe, so
calls are serialised."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from recx_worker.chain import ChainResult, ExplainerChain
from recx_worker.config import Settings
from recx_worker.core import Rejected, prepare
from recx_worker.events import Evidence, HistoryEntry, RecommendationEvent
from recx_worker.explainer import ExplainerContext


@dataclass(frozen=True, slots=True)
class Answer:
    explainer: str
    text: str | None  # None: this explainer did not answer (see ``why``)
    why: str = ""
    grounded: bool = False
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class SideBySide:
    event: RecommendationEvent
    evidence: Evidence | None
    answers: list[Answer]
    error: str | None = None


class Explainers:
    """One single-stage chain per explainer name, over one evidence store."""

    def __init__(self, settings: Settings, store: Any, names: list[str]) -> None:
        self.store, self.settings = store, settings
        context = ExplainerContext.from_settings(settings, store)
        self.chains = {
            name: ExplainerChain.from_settings(settings, context, explainers=[name])
            for name in names
        }
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings, names: list[str]) -> Explainers:
        from recx_worker.retrieval.evidence import EvidenceStore

        index = settings.paths.index_dir
        store = EvidenceStore.open(
            settings.paths.data_dir, index if (index / "manifest.json").exists() else None
        )
        explainers = cls(settings, store, names)
        for chain in explainers.chains.values():
            chain.warm_up()
        return explainers

    @property
    def names(self) -> list[str]:
        return list(self.chains)

    def close(self) -> None:
        for chain in self.chains.values():
            chain.close()

    def sample_pairs(self, n: int = 20) -> list[tuple[str, str]]:
        """(user, item) pairs to rate without typing ids: from the prepared test split, or the
        valid and train splits where it has too few (a small catalogue)."""
        from recx_worker.prepared import SPLITS, PreparedData

        data = PreparedData(self.settings.paths.data_dir)
        pairs: dict[tuple[str, str], None] = {}
        for split in sorted(SPLITS, key=lambda s: s != "test"):
            pairs |= dict.fromkeys((r.user_id, r.item_id) for r in data.split(split))
            if len(pairs) >= n:
                break
        return list(pairs)[:n]

    def side_by_side(
        self, user: str, item: str, history: list[str] | None = None, event_id: str | None = None
    ) -> SideBySide:
        event = RecommendationEvent(
            event_id=event_id or f"console:{user}:{item}",
            user_id=user,
            item_id=item,
            history=[HistoryEntry(item_id=h) for h in history or []],
        )
        (request,) = prepare([event], self.store, self.settings.chain)
        if isinstance(request, Rejected):
            return SideBySide(event, None, [], error=request.reason)
        answers = []
        with self._lock:
            for name, chain in self.chains.items():
                (outcome,) = chain.explain([request])
                if isinstance(outcome, ChainResult):
                    answers.append(
                        Answer(
                            name, outcome.event.text, grounded=outcome.event.grounded,
                            latency_ms=round(outcome.stage_latency_ms, 1),
                        )
                    )  # fmt: skip
                else:
                    answers.append(Answer(name, None, why=outcome.reason))
        return SideBySide(event, request.evidence, answers)
