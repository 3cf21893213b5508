"""The checkpoint's wait for acknowledgements: a send the producer is still retrying (e.g. while
a partition elects a new leader) is waited for, never sent a second time; only a send the
producer gave up on is sent again. (The broker-level check is tests/test_cluster_worker.py.)"""

from __future__ import annotations

import threading
from typing import Any

from kafka.errors import KafkaTimeoutError

from recx_worker.config import WorkerSettings
from recx_worker.metrics import WorkerMetrics
from recx_worker.worker.checkpoint import Batch, Checkpoint
from recx_worker.worker.records import InRecord, OutRecord


class PendingFuture:
    """A kafka-python send future that stays pending for ``waits`` waits, then resolves."""

    def __init__(self, waits: int = 0, error: Exception | None = None) -> None:
        self.pending_waits = waits
        self.error = error

    @property
    def is_done(self) -> bool:
        return self.pending_waits == 0

    def get(self, timeout: float | None = None) -> Any:
        if self.pending_waits:
            self.pending_waits -= 1
            raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        if self.error is not None:
            raise self.error
        return None


class ScriptedProducer:
    """Hands out the given futures in order and records every send."""

    def __init__(self, *futures: PendingFuture) -> None:
        self.futures = list(futures)
        self.sent: list[bytes] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> Any:
        self.sent.append(value)
        return self.futures.pop(0)


def _batch() -> Batch:
    source = InRecord("in", 0, 7, b"k", b"{}", None)
    out = OutRecord("explanation", "out", b"k", b"explained", [], "template", source)
    batch = Batch(records=[source], epoch=0)
    batch.outputs = [out]
    return batch


def _checkpoint(producer: ScriptedProducer) -> tuple[Checkpoint, WorkerMetrics]:
    metrics = WorkerMetrics()
    settings = WorkerSettings(produce_timeout_s=0.01, produce_retry_backoff_ms=1)
    return Checkpoint(producer, None, settings, metrics, exactly_once=False), metrics


def _retries(metrics: WorkerMetrics) -> float:
    return metrics.registry.get_sample_value("recx_produce_retries_total", {"topic": "out"}) or 0


def test_a_send_still_retried_by_the_producer_is_waited_for_not_sent_twice() -> None:
    producer = ScriptedProducer(PendingFuture(waits=3))  # e.g. an election outlasting 3 waits
    checkpoint, metrics = _checkpoint(producer)
    batch = _batch()
    assert checkpoint.deliver(batch)
    assert batch.delivered
    assert producer.sent == [b"explained"]
    assert _retries(metrics) == 0


def test_a_send_the_producer_gave_up_on_is_sent_again() -> None:
    expired = PendingFuture(error=KafkaTimeoutError("Expiring 1 record(s): delivery timeout"))
    producer = ScriptedProducer(expired, PendingFuture())
    checkpoint, metrics = _checkpoint(producer)
    assert checkpoint.deliver(_batch())
    assert producer.sent == [b"explained", b"explained"]
    assert _retries(metrics) == 1


def test_an_abandoned_batch_stops_waiting() -> None:
    producer = ScriptedProducer(PendingFuture(waits=10**9))
    checkpoint, _ = _checkpoint(producer)
    batch = _batch()
    batch.abandoned = threading.Event()
    threading.Timer(0.05, batch.abandoned.set).start()
    assert not checkpoint.deliver(batch)  # returns although the send never resolved
    assert not batch.delivered
    assert producer.sent == [b"explained"]
