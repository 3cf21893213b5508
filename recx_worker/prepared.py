"""The prepared-data directory written by ``recx data prepare`` and read by everything else.

Layout of ``DIR`` (all UTF-8; JSON Lines are one object per line)::

    train.jsonl valid.jsonl test.jsonl   ExplanationRecord per line (the split, 8:1:1)
    item_profiles.json                   {item_id: ItemProfile}   (TRAIN split only)
    user_histories.json                  {user_id: UserHistory}   (TRAIN split only)
    lexicon.txt                          the feature lexicon used (one feature per line)
    stats.json                           counts, coverage, mean length, skipped inputs
    manifest.json                        inputs and their sha256, seed, created-at, version
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, Field

from recx_worker.events import HistoryEntry, RecommendationEvent
from recx_worker.features import Lexicon

SPLITS = ("train", "valid", "test")


class ExplanationRecord(BaseModel):
    """One review turned into an explanation: the sentence stating an opinion on ``feature``."""

    record_id: str
    user_id: str
    item_id: str
    rating: float
    timestamp: int | None = None
    feature: str
    sentiment: int = Field(0, description="+1 positive, -1 negative, 0 unknown")
    explanation: str


class FeatureStat(BaseModel):
    feature: str
    count: int
    sentiment: float = Field(0.0, description="Mean sentiment in [-1, 1]")


class ItemProfile(BaseModel):
    item_id: str
    n_reviews: int
    mean_rating: float
    features: list[FeatureStat] = Field(description="Most mentioned first")
    snippets: list[str] = Field(default_factory=list, description="Representative sentences")

    def feature_names(self, top: int | None = None) -> list[str]:
        return [f.feature for f in self.features[:top]]


class HistoryItem(BaseModel):
    item_id: str
    rating: float
    timestamp: int | None = None
    features: list[str] = Field(default_factory=list, description="Features the user wrote about")


class UserHistory(BaseModel):
    user_id: str
    items: list[HistoryItem]
    features: list[FeatureStat] = Field(description="Features the user writes about, most first")


def utc(timestamp: int | None) -> datetime | None:
    """A Unix timestamp as an aware UTC datetime (None stays None)."""
    return datetime.fromtimestamp(timestamp, UTC) if timestamp is not None else None


def recommendation_event(
    record: ExplanationRecord,
    histories: Mapping[str, UserHistory] | None = None,
    *,
    history: int = 0,
    event_id: str | None = None,
    **fields: object,
) -> RecommendationEvent:
    """The recommendation event a prepared record stands for: "its user was recommended its
    item", with up to ``history`` of the user's most recent training items (never the item
    itself, oldest first) when ``histories`` is given. ``fields`` set the event's other fields
    (score, rank, source_model, timestamp...). The one builder that benchmarks, the demo and
    ``recx eval`` share, so their events differ only in what they choose to set."""
    entries: list[HistoryEntry] = []
    user = histories.get(record.user_id) if histories is not None and history > 0 else None
    if user is not None:
        past = sorted(
            (h for h in user.items if h.item_id != record.item_id),
            key=lambda h: h.timestamp or 0,
        )
        entries = [
            HistoryEntry(item_id=h.item_id, rating=h.rating, timestamp=utc(h.timestamp))
            for h in past[-history:]
        ]
    return RecommendationEvent.model_validate(
        {
            "event_id": event_id or record.record_id,
            "user_id": record.user_id,
            "item_id": record.item_id,
            "history": entries,
            **fields,
        }
    )


def read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


class PreparedData:
    """Read access to a prepared-data directory (files are loaded lazily, once)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "train.jsonl").exists():
            raise FileNotFoundError(
                f"{self.root} is not a prepared-data directory (no train.jsonl); "
                "run `recx data prepare` first"
            )

    def split(self, name: str) -> list[ExplanationRecord]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return [ExplanationRecord(**row) for row in read_jsonl(self.root / f"{name}.jsonl")]

    @cached_property
    def item_profiles(self) -> dict[str, ItemProfile]:
        raw = json.loads((self.root / "item_profiles.json").read_text(encoding="utf-8"))
        return {k: ItemProfile(**v) for k, v in raw.items()}

    @cached_property
    def user_histories(self) -> dict[str, UserHistory]:
        raw = json.loads((self.root / "user_histories.json").read_text(encoding="utf-8"))
        return {k: UserHistory(**v) for k, v in raw.items()}

    @cached_property
    def lexicon(self) -> Lexicon:
        return Lexicon.load(self.root / "lexicon.txt")

    @cached_property
    def stats(self) -> dict:
        return json.loads((self.root / "stats.json").read_text(encoding="utf-8"))

    @cached_property
    def manifest(self) -> dict:
        return json.loads((self.root / "manifest.json").read_text(encoding="utf-8"))
