"""Consumer lag of the partitions a worker owns, measured every ``lag_interval_s``.

Two numbers per partition: end offset - position (what the broker holds beyond what this
worker has fetched) and end offset - committed (as this worker last committed or found it;
never a blocking offset fetch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Set
from typing import Any

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError

from recx_worker.metrics import WorkerMetrics

log = structlog.get_logger(__name__)

LagRow = tuple[int, int, int | None, int | None]


class LagMeter:
    """Sets ``recx_consumer_lag``/``recx_consumer_committed_lag`` and the assigned count."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        topic: str,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.topic = topic
        self.interval_s = interval_s
        self._clock = clock
        self._next = 0.0

    def maybe_measure(
        self,
        consumer: Any,
        committed: Callable[[TopicPartition], int | None],
        skip: Set[TopicPartition] = frozenset(),
    ) -> list[LagRow] | None:
        """Measure when due; returns the rows set (None when not due or unavailable)."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self.interval_s
        return self.measure(consumer, committed, skip)

    def measure(
        self,
        consumer: Any,
        committed: Callable[[TopicPartition], int | None],
        skip: Set[TopicPartition] = frozenset(),
    ) -> list[LagRow] | None:
        """``skip``: partitions whose position is about to be reset (no true lag yet)."""
        assigned = sorted(consumer.assignment())
        self.metrics.assigned.set(len(assigned))
        if not assigned:
            self.metrics.set_lag(self.topic, [])
            return []
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=2000)
        except KafkaError as exc:
            log.warning("lag_unavailable", error=f"{type(exc).__name__}: {exc}")
            return None
        rows = [
            (tp.partition, ends[tp], _position(consumer, tp), committed(tp))
            for tp in assigned
            if tp in ends and tp not in skip
        ]
        self.metrics.set_lag(self.topic, rows)
        return rows


def _position(consumer: Any, tp: TopicPartition) -> int | None:
    """The next offset this worker will fetch (buffered events count as consumed)."""
    try:
        position: int | None = consumer.position(tp, timeout_ms=1000)
    except KafkaError:
        return None
    return position
