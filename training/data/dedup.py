"""Deduplication and the leakage check of ``recx data prepare``.

Review dumps repeat themselves: the same row twice, the same review copied onto every variant
of a product, the same title ("Great strings") written by one user for several items. Left in,
such copies land on both sides of the split and a system that memorises train looks good.

Protocol (applied to the explanation records after the seeded split of *all* records, so a
record that survives keeps its id and its split, and external outputs made on the earlier
split can still be scored on the surviving records):

1. Records are visited train first, then valid, then test, each in line order; the first
   record of a group of copies is kept, so a copy is dropped from valid/test rather than train.
2. A record is dropped when an earlier kept record has the same
   ``exact``: user, item, rating and review text (a duplicate row);
   ``cross-item``: user and review text on another item (a copy onto a variant item);
   ``user sentence``: user and normalised explanation sentence;
   ``item sentence``: item and normalised explanation sentence.
3. A valid/test record whose user or item no longer has a train record moves to train.
4. :func:`check_leakage` then proves no valid/test record shares (user, sentence) or (item,
   sentence) with train, and refuses the split with :class:`LeakageError` if one does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from recx_worker.features import words
from recx_worker.prepared import SPLITS, ExplanationRecord
from training.data.readers import DataInputError, Review

REASONS = ("exact", "cross-item", "user sentence", "item sentence")


class LeakageError(DataInputError):
    """A valid/test record repeats a train record; the message names the first few."""


def normalise(sentence: str) -> str:
    """Lower-cased words joined by single spaces: the form sentences are compared in."""
    return " ".join(words(sentence))


@dataclass
class DedupReport:
    """Dropped records per reason and per split, and records moved to train."""

    dropped: Counter = field(default_factory=Counter)
    dropped_by_split: Counter = field(default_factory=Counter)
    moved_to_train: int = 0

    def as_dict(self) -> dict:
        return {
            "dropped": {reason: self.dropped.get(reason, 0) for reason in REASONS},
            "dropped_total": sum(self.dropped.values()),
            "dropped_by_split": {name: self.dropped_by_split.get(name, 0) for name in SPLITS},
            "moved_to_train": self.moved_to_train,
        }


def deduplicate(
    splits: Mapping[str, Sequence[ExplanationRecord]], review_texts: Mapping[str, str]
) -> tuple[dict[str, list[ExplanationRecord]], DedupReport]:
    """``splits`` without copies (see the module docstring); ``review_texts`` maps a record
    id to the full text of the review it came from."""
    report = DedupReport()
    seen: dict[str, set[tuple]] = {reason: set() for reason in REASONS}
    kept: dict[str, list[ExplanationRecord]] = {}
    for name in SPLITS:
        kept[name] = []
        for record in sorted(splits[name], key=lambda r: r.record_id):
            text = normalise(review_texts[record.record_id])
            sentence = normalise(record.explanation)
            keys = {
                "exact": (record.user_id, record.item_id, record.rating, text),
                "cross-item": (record.user_id, text),
                "user sentence": (record.user_id, sentence),
                "item sentence": (record.item_id, sentence),
            }
            reason = next((r for r in REASONS if keys[r] in seen[r]), None)
            if reason is not None:
                report.dropped[reason] += 1
                report.dropped_by_split[name] += 1
                continue
            for r in REASONS:
                seen[r].add(keys[r])
            kept[name].append(record)
    _reseat_unseen(kept, report)
    return kept, report


def _reseat_unseen(splits: dict[str, list[ExplanationRecord]], report: DedupReport) -> None:
    """Move valid/test records whose user or item lost its last train record into train."""
    users = {r.user_id for r in splits["train"]}
    items = {r.item_id for r in splits["train"]}
    for name in ("valid", "test"):
        stay = []
        for record in splits[name]:
            if record.user_id in users and record.item_id in items:
                stay.append(record)
                continue
            splits["train"].append(record)
            users.add(record.user_id)
            items.add(record.item_id)
            report.moved_to_train += 1
        splits[name] = stay
    splits["train"].sort(key=lambda r: r.record_id)


def review_copies(reviews: Iterable[Review]) -> dict[str, int]:
    """Copies among the raw reviews (whether or not they yield a record): rows repeating an
    earlier (user, item, rating, text), and reviews repeating a user's text on another item."""
    rows: set[tuple] = set()
    texts: dict[tuple[str, str], str] = {}
    exact = cross = 0
    for review in reviews:
        text = normalise(review.text)
        row = (review.user_id, review.item_id, review.rating, text)
        if row in rows:
            exact += 1
            continue
        rows.add(row)
        first_item = texts.setdefault((review.user_id, text), review.item_id)
        cross += first_item != review.item_id
    return {"exact_rows": exact, "cross_item_copies": cross}


def find_leaks(splits: Mapping[str, Sequence[ExplanationRecord]]) -> list[tuple[str, str, str]]:
    """(split, record id, what it shares with train) for every leaking valid/test record."""
    by_user = {(r.user_id, normalise(r.explanation)) for r in splits["train"]}
    by_item = {(r.item_id, normalise(r.explanation)) for r in splits["train"]}
    leaks = []
    for name in ("valid", "test"):
        for record in splits[name]:
            sentence = normalise(record.explanation)
            if (record.user_id, sentence) in by_user:
                leaks.append((name, record.record_id, "user and sentence"))
            elif (record.item_id, sentence) in by_item:
                leaks.append((name, record.record_id, "item and sentence"))
    return leaks


def check_leakage(splits: Mapping[str, Sequence[ExplanationRecord]]) -> None:
    """Raise :class:`LeakageError` when a valid/test record repeats a train record."""
    leaks = find_leaks(splits)
    if leaks:
        shown = "; ".join(f"{name} {rid} shares {what}" for name, rid, what in leaks[:5])
        raise LeakageError(
            f"the split leaks: {len(leaks)} valid/test records repeat a train record "
            f"({shown}{' ...' if len(leaks) > 5 else ''}); refusing to write it"
        )
