"""Per-partition offset tracking: what may be committed without skipping unprocessed events.

An offset is *outstanding* from the moment it is consumed until every output for it has been
acknowledged. The committable offset of a partition is its lowest outstanding offset, or one
past the highest consumed offset when nothing is outstanding, so a commit never passes an
event that is still being processed, whatever order batches finish in.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import TopicPartition

#: After a failed commit, the next try waits at least this long.
COMMIT_RETRY_S = 1.0


@dataclass
class CommitCadence:
    """When an at-least-once loop commits: once ``interval_s`` passed since the last commit,
    or sooner once ``max_waiting`` delivered events wait for one (what a crash makes the loop
    process again stays bounded by count); never sooner than ``COMMIT_RETRY_S`` after a
    failed commit. The worker (``Checkpoint.maybe_commit``) and the bench's consume+produce
    ceiling share it, so they commit alike."""

    interval_s: float
    max_waiting: int
    _next_at: float = 0.0
    _retry_at: float = 0.0

    def due(self, waiting: int, now: float | None = None) -> bool:
        """Whether to commit now, with ``waiting`` delivered events not committed yet."""
        now = time.monotonic() if now is None else now
        if waiting <= 0 or now < self._retry_at:
            return False
        return now >= self._next_at or waiting >= self.max_waiting

    def committed(self, ok: bool, now: float | None = None) -> None:
        """Record a commit's outcome (``ok``: it succeeded)."""
        now = time.monotonic() if now is None else now
        if ok:
            self._next_at = now + self.interval_s
        else:
            self._retry_at = now + COMMIT_RETRY_S


class OffsetTracker:
    """Consumed/done/committed offsets of the partitions this worker owns."""

    def __init__(self) -> None:
        self._outstanding: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def consumed(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """``offsets`` of ``tp`` are outstanding until done."""
        batch = list(offsets)
        if not batch:
            return
        self._outstanding.setdefault(tp, set()).update(batch)
        self._next[tp] = max(self._next.get(tp, 0), max(batch) + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        if tp in self._outstanding:
            self._outstanding[tp].discard(offset)

    def committable(self, tp: TopicPartition) -> int | None:
        """The offset to commit for ``tp`` (the next event to process), None if unknown."""
        if tp not in self._next:
            return None
        outstanding = self._outstanding.get(tp)
        return min(outstanding) if outstanding else self._next[tp]

    def to_commit(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Committable offsets that moved since the last ``mark_committed``."""
        result: dict[TopicPartition, int] = {}
        for tp in self._next if partitions is None else partitions:
            offset = self.committable(tp)
            if offset is not None and offset != self._committed.get(tp):
                result[tp] = offset
        return result

    def uncommitted(self, offsets: dict[TopicPartition, int]) -> int:
        """Events that committing ``offsets`` (from :meth:`to_commit`) would mark done (at
        least 1 per partition: one without a known committed offset counts 1): about as many
        are explained again if the worker dies before it commits."""
        return sum(max(o - self._committed.get(tp, o - 1), 1) for tp, o in offsets.items())

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def last_committed(self, tp: TopicPartition) -> int | None:
        """The offset last committed for ``tp`` (by us, or found when it was assigned)."""
        return self._committed.get(tp)

    def outstanding(self) -> int:
        """Consumed events not yet done (the at-least-once duplicate window)."""
        return sum(len(s) for s in self._outstanding.values())

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop all state of partitions this worker no longer owns."""
        for tp in partitions:
            self._outstanding.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def partitions(self) -> list[TopicPartition]:
        return list(self._next)
