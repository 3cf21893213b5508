"""The checkpoint: the one object that decides when consumed offsets may be committed.

At-least-once: every output of a batch is sent with ``acks=all`` and awaited (failed sends are
retried with exponential backoff, never skipped; a send the producer is still retrying, e.g.
during a leader election, is waited for, not sent twice); only then are the batch's offsets
marked done, and ``commit`` commits the per-partition contiguous prefix of done offsets.

Exactly-once: the outputs and the batch's offsets (``send_offsets_to_transaction`` with the
consumer's group metadata, so a stale member is fenced, KIP-447) go into one Kafka transaction;
a batch whose partitions were revoked before its transaction committed is aborted.

``send``/``settle`` (``deliver`` = both) run on the processing thread; ``commit``/``revoked``
on the polling thread, which alone touches the consumer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from kafka import TopicPartition
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka.structs import OffsetAndMetadata

from recx_worker.worker.offsets import CommitCadence, OffsetTracker
from recx_worker.worker.records import InRecord, OutRecord

if TYPE_CHECKING:
    from recx_worker.config import WorkerSettings
    from recx_worker.metrics import WorkerMetrics

log = structlog.get_logger(__name__)


class FatalDeliveryError(RuntimeError):
    """Delivery cannot continue (fenced by a newer instance, not authorised)."""


@dataclass(eq=False)
class Batch:
    """One micro-batch in flight, from hand-off to the processing thread until checkpointed."""

    records: list[InRecord]
    epoch: int
    group_metadata: Any = None
    abandoned: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    fatal: FatalDeliveryError | None = None
    outputs: list[OutRecord] = field(default_factory=list)
    pending: Any = None  # the pipeline's ``PendingOutputs`` (handed to the core when cut)
    delivered: bool = False
    computed: bool = False  # its outputs are computed (or it was abandoned before)
    acked_at: float = 0.0  # wall clock, for end-to-end latency

    def next_offsets(self) -> dict[TopicPartition, int]:
        """For each partition in the batch, one past its highest offset."""
        result: dict[TopicPartition, int] = {}
        for r in self.records:
            tp = r.tp
            result[tp] = max(result.get(tp, 0), r.offset + 1)
        return result


@dataclass(eq=False)
class Delivery:
    """A batch whose outputs were handed to the producer: the futures to wait for, and the
    outputs whose send failed at once (to be retried)."""

    batch: Batch
    futures: list[tuple[OutRecord, Any]] = field(default_factory=list)
    failed: list[OutRecord] = field(default_factory=list)


class Checkpoint:
    """Flush-then-commit (at-least-once) or transaction-with-offsets (exactly-once)."""

    def __init__(
        self,
        producer: Any,
        consumer: Any,
        settings: WorkerSettings,
        metrics: WorkerMetrics,
        *,
        exactly_once: bool,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.settings = settings
        self.metrics = metrics
        self.exactly_once = exactly_once
        self.tracker = OffsetTracker()
        self._txn_lock = threading.Lock()
        self.cadence = CommitCadence(settings.commit_interval_ms / 1000, settings.max_buffered)

    # -- processing thread -----------------------------------------------------------
    def deliver(self, batch: Batch) -> bool:
        """Send the batch's outputs until the broker acknowledged all; False if abandoned."""
        delivery = self.send(batch)
        return batch.delivered if delivery is None else self.settle(delivery)

    def send(self, batch: Batch) -> Delivery | None:
        """Start delivering ``batch``. At-least-once: every output is handed to the producer
        and the returned ``Delivery`` is what :meth:`settle` waits for (the caller may do
        other work meanwhile). Exactly-once: the whole transaction runs now (None)."""
        if self.exactly_once:
            self._deliver_transaction(batch)
            return None
        if batch.abandoned.is_set():
            return None
        delivery = Delivery(batch)
        self._send_some(batch.outputs, delivery)
        return delivery

    def settle(self, delivery: Delivery) -> bool:
        """Wait for every acknowledgement of a ``send``, re-sending failed outputs with
        exponential backoff (never skipping one); False if the batch was abandoned."""
        batch = delivery.batch
        backoff = self.settings.produce_retry_backoff_ms / 1000
        while True:
            for out, future in delivery.futures:
                try:
                    if not self._acknowledged(out, future, batch.abandoned):
                        return False
                except KafkaError as exc:
                    self._send_failed(out, exc)
                    delivery.failed.append(out)
            if not delivery.failed:
                break
            if batch.abandoned.wait(backoff):
                return False
            backoff = min(backoff * 2, self.settings.produce_retry_backoff_max_ms / 1000)
            retry, delivery.failed, delivery.futures = delivery.failed, [], []
            self._send_some(retry, delivery)
        batch.delivered = True
        batch.acked_at = time.time()
        return True

    def _acknowledged(self, out: OutRecord, future: Any, abandoned: threading.Event) -> bool:
        """Wait for the producer's verdict on one send; False if the batch is abandoned first.

        Our wait running out is no verdict: the producer still holds the record and retries it
        (idempotently) until its ``delivery.timeout.ms``, e.g. while a new partition leader is
        elected. Sending it again would publish a second copy, so the worker keeps waiting and
        re-sends only what the producer gave up on (its error is raised here).
        """
        waited = 0.0
        while True:
            try:
                future.get(timeout=self.settings.produce_timeout_s)
                return True
            except KafkaTimeoutError:
                if getattr(future, "is_done", True):  # resolved: its own outcome decides
                    future.get(timeout=0)  # raises the producer's error (e.g. it expired)
                    return True
            waited += self.settings.produce_timeout_s
            log.warning(
                "produce_slow",
                topic=out.topic,
                partition=out.source.partition,
                offset=out.source.offset,
                waited_s=waited,
            )
            if abandoned.is_set():
                return False

    def _send_some(self, outputs: list[OutRecord], delivery: Delivery) -> None:
        for out in outputs:
            try:
                delivery.futures.append((out, self._send(out)))
            except KafkaError as exc:
                self._send_failed(out, exc)
                delivery.failed.append(out)

    def _send(self, out: OutRecord) -> Any:
        return self.producer.send(out.topic, value=out.value, key=out.key, headers=out.headers)

    def _send_failed(self, out: OutRecord, exc: BaseException) -> None:
        if isinstance(exc, AuthorizationError | ProducerFencedError):
            raise FatalDeliveryError(f"cannot produce to {out.topic}: {exc!r}") from exc
        self.metrics.produce_retries.labels(out.topic).inc()
        log.warning(
            "produce_failed",
            topic=out.topic,
            partition=out.source.partition,
            offset=out.source.offset,
            error=f"{type(exc).__name__}: {exc}",
        )

    def _deliver_transaction(self, batch: Batch) -> None:
        """Run the batch's transaction until committed (``batch.delivered``), abandoned or
        fatal."""
        backoff = self.settings.produce_retry_backoff_ms / 1000
        offsets = {
            tp: OffsetAndMetadata(offset, "", -1) for tp, offset in batch.next_offsets().items()
        }
        while True:
            with self._txn_lock:
                if batch.abandoned.is_set():
                    return
                try:
                    self.producer.begin_transaction()
                    self._forget_stale_txn_offsets()
                    futures = [self._send(out) for out in batch.outputs]
                    self.producer.flush(timeout=self.settings.produce_timeout_s)
                    for future in futures:
                        future.get(timeout=self.settings.produce_timeout_s)
                    self.producer.send_offsets_to_transaction(offsets, batch.group_metadata)
                    self.producer.commit_transaction()
                    batch.delivered = True
                    batch.acked_at = time.time()
                    return
                except (ProducerFencedError, TransactionalIdAuthorizationFailedError) as exc:
                    raise FatalDeliveryError(f"transactional producer fenced: {exc!r}") from exc
                except KafkaError as exc:
                    log.warning("transaction_failed", error=f"{type(exc).__name__}: {exc}")
                    self.metrics.produce_retries.labels("transaction").inc()
                    self._abort()
                    if _is_stale_member(exc):
                        batch.abandoned.set()  # partitions moved on: the new owner redoes it
                        return
            if batch.abandoned.wait(backoff):
                return
            backoff = min(backoff * 2, self.settings.produce_retry_backoff_max_ms / 1000)

    def _abort(self) -> None:
        try:
            self.producer.abort_transaction()
        except KafkaError as exc:
            raise FatalDeliveryError(f"cannot abort the transaction: {exc!r}") from exc
        self._forget_stale_txn_offsets()

    def _forget_stale_txn_offsets(self) -> None:
        """Work around kafka-python 3.0.12: offsets of a rejected TxnOffsetCommit (e.g.
        IllegalGeneration) stay in the transaction manager's pending map and are sent again
        with the *next* transaction's offsets, committing past events whose outputs were
        aborted. No offset commit is pending between transactions, so the map must be empty.
        """
        manager = getattr(self.producer, "_transaction_manager", None)
        pending = getattr(manager, "_pending_txn_offset_commits", None)
        if isinstance(pending, dict) and pending:
            log.warning("stale_txn_offsets_dropped", partitions=len(pending))
            pending.clear()

    # -- polling thread ----------------------------------------------------------------
    def consumed(self, tp: TopicPartition, records: list[InRecord]) -> None:
        """Records fetched from partition ``tp`` are outstanding until done."""
        self.tracker.consumed(tp, [r.offset for r in records])

    def completed(self, batch: Batch) -> None:
        """Mark a delivered batch's offsets done (in exactly-once mode they are committed)."""
        for r in batch.records:
            self.tracker.done(r.tp, r.offset)
        if self.exactly_once:
            self.tracker.mark_committed(batch.next_offsets())
            self.metrics.commits.inc()

    def maybe_commit(self) -> None:
        """The poll loop's commit, when the cadence (``CommitCadence``: at most every
        ``commit_interval_ms``, sooner once ``max_buffered`` delivered events wait) says so."""
        if self.exactly_once:
            return
        offsets = self.tracker.to_commit()
        if self.cadence.due(self.tracker.uncommitted(offsets)):
            self.cadence.committed(self._commit(offsets))

    def commit(self, partitions: list[TopicPartition] | None = None) -> bool:
        """Commit the done prefix of each partition; False (to retry later) on failure."""
        if self.exactly_once:
            return True
        return self._commit(self.tracker.to_commit(partitions))

    def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        if not offsets:
            return True
        t0 = time.perf_counter()
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as exc:
            self.metrics.commit_failures.inc()
            log.warning("commit_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        self.tracker.mark_committed(offsets)
        self.metrics.commits.inc()
        self.metrics.stage_latency.labels("commit").observe(time.perf_counter() - t0)
        return True

    def abandon(self, batch: Batch, lock_wait_s: float) -> bool:
        """Stop ``batch``; True if it was delivered after all.

        In exactly-once mode this first waits (up to ``lock_wait_s``) for a transaction
        commit already under way, so the batch is either committed or certainly aborted.
        """
        if batch.delivered:
            return True
        if self.exactly_once and self._txn_lock.acquire(timeout=max(lock_wait_s, 0.0)):
            try:
                batch.abandoned.set()
            finally:
                self._txn_lock.release()
        else:
            batch.abandoned.set()
        return batch.delivered


def _is_stale_member(exc: BaseException) -> bool:
    from kafka.errors import (
        CommitFailedError,
        FencedInstanceIdError,
        IllegalGenerationError,
        RebalanceInProgressError,
        UnknownMemberIdError,
    )

    stale = (
        CommitFailedError,
        FencedInstanceIdError,
        IllegalGenerationError,
        RebalanceInProgressError,
        UnknownMemberIdError,
    )
    return isinstance(exc, stale) or any(name in repr(exc) for name in ("Generation", "MemberId"))
