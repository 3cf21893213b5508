"""Flow control: which assigned partitions the consumer should fetch from right now.

The worker keeps polling however long a batch takes (so ``max.poll.interval.ms`` never
expires); this pausing manager stops fetching while ``max_buffered`` fetched events wait, and
keeps partitions that are about to be re-positioned paused, so nothing is fetched from a
position that is about to be reset.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from kafka import TopicPartition


class FlowControl:
    """Pauses and resumes the consumer's partitions (polling thread only)."""

    def __init__(self, max_buffered: int) -> None:
        self.max_buffered = max_buffered

    def room(self, buffered: int) -> int:
        """How many records the next poll may return (at least one: the poll still heartbeats
        the fetcher and delivers rebalance callbacks)."""
        return max(self.max_buffered - buffered, 1)

    def full(self, buffered: int) -> bool:
        return buffered >= self.max_buffered

    def apply(self, consumer: Any, buffered: int, hold: Set[TopicPartition]) -> None:
        """Pause every partition while the buffer is full, else only ``hold``; resume the
        rest."""
        assigned = set(consumer.assignment())
        if not assigned:
            return
        want = assigned if self.full(buffered) else set(hold) & assigned
        paused = set(consumer.paused())
        if to_pause := want - paused:
            consumer.pause(*sorted(to_pause))
        if to_resume := (paused & assigned) - want:
            consumer.resume(*sorted(to_resume))
