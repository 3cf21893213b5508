"""Enrichment: a validated recommendation plus its evidence becomes an ``ExplainRequest``.

Evidence comes from an ``EvidenceSource`` (the ``EvidenceStore``: item profile, the user's
supporting history found with FAISS). An unknown item cannot be explained faithfully, so it
becomes an ``EnrichFailure`` (dead letter / rejects line); an unknown user is fine (cold
start: item-only evidence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from recx_worker.config import DEFAULT_EVIDENCE_K, DEFAULT_MAX_WORDS
from recx_worker.events import RecommendationEvent
from recx_worker.explainer import EvidenceSource, ExplainRequest


@dataclass(frozen=True, slots=True)
class EnrichFailure:
    """An event that cannot be explained, with a reason naming the field."""

    event: RecommendationEvent
    error_class: str
    reason: str
    field: str | None = None


def enrich(
    events: Iterable[RecommendationEvent],
    store: EvidenceSource,
    max_words: int = DEFAULT_MAX_WORDS,
    *,
    k: int = DEFAULT_EVIDENCE_K,
) -> list[ExplainRequest | EnrichFailure]:
    """One request (or failure) per event, in order."""
    out: list[ExplainRequest | EnrichFailure] = []
    for event in events:
        try:
            evidence = store.evidence(event.user_id, event.item_id, event.history, k=k)
        except LookupError:  # the EvidenceSource contract: an unknown item
            reason = f"unknown item_id {event.item_id!r}: no profile in the prepared data"
            out.append(EnrichFailure(event, "UnknownItem", reason, "item_id"))
            continue
        out.append(ExplainRequest(event, evidence, event.max_words or max_words))
    return out
