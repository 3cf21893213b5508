"""Item profiles and user histories, built from TRAIN records only (no test leakage)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from recx_worker.features import Lexicon, words
from recx_worker.prepared import (
    ExplanationRecord,
    FeatureStat,
    HistoryItem,
    ItemProfile,
    UserHistory,
)
from training.data.text import feature_sentiment, sentences

N_SNIPPETS = 3
N_TOP_FOR_SNIPPETS = 8


@dataclass
class TrainReview:
    """A train record plus every feature its review mentions (feature -> sentiment)."""

    record: ExplanationRecord
    score: float
    mentions: dict[str, int] = field(default_factory=dict)


def review_mentions(text: str, lexicon: Lexicon) -> dict[str, int]:
    """Features mentioned anywhere in ``text`` with their summed local sentiment sign."""
    out: dict[str, int] = {}
    for sentence in sentences(text):
        found = lexicon.find(sentence)
        if not found:
            continue
        tokens = words(sentence)
        for feature in found:
            out[feature] = out.get(feature, 0) + feature_sentiment(tokens, feature)
    return {f: (s > 0) - (s < 0) for f, s in out.items()}


def _stats(
    counts: dict[str, int], sentiment: dict[str, int], spread: dict[str, int] | None = None
) -> list[FeatureStat]:
    """Most mentioned first; ties go to the more specific feature (mentioned for fewer
    items/users in ``spread``), then alphabetical."""
    spread = spread or {}
    ranked = sorted(counts, key=lambda f: (-counts[f], spread.get(f, 0), f))
    return [
        FeatureStat(feature=f, count=counts[f], sentiment=round(sentiment[f] / counts[f], 3))
        for f in ranked
    ]


def _snippets(reviews: list[TrainReview], top: set[str]) -> list[str]:
    """Short, opinionated, distinct-feature sentences about the item's main features."""

    def key(r: TrainReview) -> tuple[float, int]:
        bonus = (1.0 if r.record.feature in top else 0.0) + (0.5 if r.record.sentiment else 0.0)
        return (-(r.score + bonus), len(r.record.explanation))

    chosen: list[str] = []
    used: set[str] = set()
    for review in sorted(reviews, key=key):
        text = review.record.explanation
        if review.record.feature in used or text in chosen:
            continue
        chosen.append(text)
        used.add(review.record.feature)
        if len(chosen) == N_SNIPPETS:
            break
    return chosen


def item_profiles(train: Iterable[TrainReview]) -> dict[str, ItemProfile]:
    by_item: dict[str, list[TrainReview]] = defaultdict(list)
    for review in train:
        by_item[review.record.item_id].append(review)
    spread: dict[str, int] = defaultdict(int)  # items whose reviews mention the feature
    for reviews in by_item.values():
        for feature in {f for r in reviews for f in r.mentions}:
            spread[feature] += 1
    profiles: dict[str, ItemProfile] = {}
    for item_id in sorted(by_item):
        reviews = by_item[item_id]
        counts: dict[str, int] = defaultdict(int)
        senti: dict[str, int] = defaultdict(int)
        for review in reviews:
            for feature, sign in review.mentions.items():
                counts[feature] += 1
                senti[feature] += sign
        features = _stats(counts, senti, spread)
        top = {f.feature for f in features[:N_TOP_FOR_SNIPPETS]}
        profiles[item_id] = ItemProfile(
            item_id=item_id,
            n_reviews=len(reviews),
            mean_rating=round(sum(r.record.rating for r in reviews) / len(reviews), 3),
            features=features,
            snippets=_snippets(reviews, top),
        )
    return profiles


def user_histories(train: Iterable[TrainReview]) -> dict[str, UserHistory]:
    by_user: dict[str, list[TrainReview]] = defaultdict(list)
    for review in train:
        by_user[review.record.user_id].append(review)
    histories: dict[str, UserHistory] = {}
    for user_id in sorted(by_user):
        reviews = sorted(
            by_user[user_id], key=lambda r: (r.record.timestamp or 0, r.record.record_id)
        )
        counts: dict[str, int] = defaultdict(int)
        senti: dict[str, int] = defaultdict(int)
        items = []
        for review in reviews:
            for feature, sign in review.mentions.items():
                counts[feature] += 1
                senti[feature] += sign
            items.append(
                HistoryItem(
                    item_id=review.record.item_id,
                    rating=review.record.rating,
                    timestamp=review.record.timestamp,
                    features=list(review.mentions),
                )
            )
        histories[user_id] = UserHistory(
            user_id=user_id, items=items, features=_stats(counts, senti)
        )
    return histories
