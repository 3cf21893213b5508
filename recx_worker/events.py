"""Versioned event contracts: what recx consumes, what it publishes, what it dead-letters.

Versioning rule: within ``schema_version`` 1 only additive, optional changes are allowed
(new optional fields with defaults). Removing/renaming a field or tightening a type needs
``schema_version`` 2 and a new ``schemas/*.v2.json`` file. ``recx schemas write`` regenerates
the JSON Schema files; a test fails when the files and these models drift.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1

# Limits (also enforced by validation; see recx_worker.validation)
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 512


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class HistoryEntry(_Model):
    """One item the user interacted with before the recommendation."""

    item_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="The item")
    rating: float | None = Field(default=None, ge=0, le=5, description="The user's stars, 0-5")
    timestamp: datetime | None = Field(default=None, description="When the user had it")


class RecommendationContext(_Model):
    """Where the recommendation is shown (hints for the wording)."""

    locale: str | None = Field(default=None, max_length=32, description="e.g. en-GB")
    surface: str | None = Field(default=None, max_length=64, description="e.g. home, e-mail")


class RecommendationEvent(_Model):
    """``user_id`` was recommended ``item_id``; recx explains why."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"$id": "https://recx.dev/schemas/recommendation-event.v1.json"},
    )

    schema_version: Literal[1] = Field(1, description="Version of this schema")
    event_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Idempotency key")
    user_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Who was recommended")
    item_id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="What was recommended")
    history: list[HistoryEntry] = Field(
        default_factory=list,
        description="Recent history (empty: the user's history in the prepared data is used)",
    )
    score: float | None = Field(default=None, description="The recommender's score (finite)")
    rank: int | None = Field(default=None, ge=0, description="Position in the recommendations")
    source_model: str | None = Field(
        default=None, max_length=MAX_ID_CHARS, description="Which recommender produced it"
    )
    timestamp: datetime = Field(default_factory=utc_now, description="When it was recommended")
    context: RecommendationContext = Field(
        default_factory=RecommendationContext, description="Where it is shown"
    )
    style: str | None = Field(default=None, max_length=64, description="Requested style")
    max_words: int | None = Field(default=None, ge=3, le=60, description="Requested length")

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("score must be a finite number (NaN and infinity are rejected)")
        return value

    @field_validator("event_id", "user_id", "item_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class SupportingItem(_Model):
    """A history item that supports the recommendation, with its similarity to the item."""

    item_id: str = Field(description="A history item of the user")
    similarity: float = Field(description="Cosine similarity of its embedding to the item's")
    rating: float | None = Field(default=None, description="The user's stars for it")
    features: list[str] = Field(
        default_factory=list, description="Its features (that the user wrote about)"
    )


class Evidence(_Model):
    """What supports an explanation: the facts an explainer may use, and nothing else."""

    supporting_items: list[SupportingItem] = Field(
        default_factory=list, description="The user's most similar history items, best first"
    )
    item_features: list[str] = Field(
        default_factory=list, description="Item's real features, most mentioned first"
    )
    item_snippet: str | None = Field(default=None, description="A review sentence of the item")
    user_features: list[str] = Field(
        default_factory=list, description="Features the user cares about that the item has"
    )

    def allowed_features(self) -> set[str]:
        """Features an explanation may mention without being ungrounded."""
        allowed = set(self.item_features) | set(self.user_features)
        for item in self.supporting_items:
            allowed.update(item.features)
        return allowed


SkipReason = Literal[
    "error", "declined", "timeout", "deadline_skipped", "guard_rejected", "unavailable"
]


class SkippedStage(_Model):
    """A chain stage that did not answer, and why."""

    explainer: str
    reason: SkipReason = Field(
        description="error: the explainer raised (a crash); declined: it returned an "
        "ExplainFailure for this request; timeout: it missed its deadline; deadline_skipped: "
        "the deadline batcher measured it could not answer in time; guard_rejected: "
        "its text failed the guard; unavailable: it was disabled or still busy"
    )
    detail: str = ""


class ExplanationEvent(_Model):
    """The explanation published for one recommendation event."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"$id": "https://recx.dev/schemas/explanation-event.v1.json"},
    )

    schema_version: Literal[1] = 1
    event_id: str = Field(description="event_id of the recommendation")
    user_id: str
    item_id: str
    text: str
    explainer: str
    explainer_version: str
    model: str | None = None
    adapter_version: str | None = None
    evidence: Evidence
    mentioned_features: list[str] = Field(default_factory=list)
    grounded: bool
    latency_ms: float
    skipped: list[SkippedStage] = Field(default_factory=list)
    recommended_at: datetime | None = None
    created_at: datetime = Field(default_factory=utc_now)


class SourceRef(_Model):
    topic: str
    partition: int
    offset: int


class DeadLetter(_Model):
    """An input that could not be explained, with its provenance and a precise reason."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"$id": "https://recx.dev/schemas/dead-letter.v1.json"},
    )

    schema_version: Literal[1] = 1
    original: str | None = Field(
        description="Original bytes decoded as UTF-8 (invalid bytes escaped); None if too big"
    )
    original_base64: str | None = Field(default=None, description="Set when bytes are not UTF-8")
    source: SourceRef | None = None
    error_class: str
    reason: str
    field: str | None = Field(default=None, description="The failing field, where one exists")
    attempts: int = 1
    worker_id: str
    failed_at: datetime = Field(default_factory=utc_now)


ALL_SCHEMAS: dict[str, type[BaseModel]] = {
    "recommendation-event.v1.json": RecommendationEvent,
    "explanation-event.v1.json": ExplanationEvent,
    "dead-letter.v1.json": DeadLetter,
}
