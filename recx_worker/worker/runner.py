"""The worker loop: poll, micro-batch, process on a side thread, checkpoint, shut down cleanly.

Threads:
- the polling thread (``Worker.run``) alone uses the consumer: it polls continuously, so
  ``max.poll.interval.ms`` is never exceeded however long a batch takes; it pauses all
  partitions while ``max_buffered`` fetched events wait, and resumes below that;
- one processing thread runs validate -> enrich -> explain -> deliver for one micro-batch
  at a time (up to ``max_batch`` events or ``max_wait_ms``, across partitions). In
  at-least-once mode it processes the next batch while the broker acknowledges the previous
  one (``PIPELINE_DEPTH`` batches handed over at once); a batch's outputs are sent only once the
  previous batch's are all acknowledged, so outputs keep their order, and offsets are still
  committed only after their outputs were acknowledged. With ``worker.core_processes`` the
  core runs in child processes (``core_process``): a batch goes to them as soon as it is cut
  and the processing thread only waits for its result and delivers it;
- kafka-python's IO thread runs the rebalance listener, which must not block: on
  revocation it abandons the unfinished batch, commits the done prefix asynchronously (the
  request reaches the coordinator before our JoinGroup) and forgets buffered events; every
  assigned partition is then re-positioned at the group's committed offset (kafka-python
  keeps the old position of a partition assigned again, which could skip the abandoned
  events). In exactly-once mode that waits until an abandoned transaction is resolved.

The worker is handed its parts: the Kafka clients (``KafkaClients``, or fakes in tests), the
pipeline factory and the metrics; flow control (``FlowControl``) and lag (``LagMeter``) are
small objects of their own. ``/readyz`` is true once the explainers are warm and the group has
given this worker its (first) assignment.
"""

from __future__ import annotations

import collections
import gc
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from recx_worker.metrics import Heartbeat, MetricsServer, WorkerMetrics
from recx_worker.worker.checkpoint import Batch, Checkpoint, Delivery, FatalDeliveryError
from recx_worker.worker.clients import (
    KafkaClients,
    join_lost,
    producer_client,
    wait_for_partitions,
)
from recx_worker.worker.flow import FlowControl
from recx_worker.worker.lag import LagMeter
from recx_worker.worker.records import InRecord, OutRecord, dead_letter_record

if TYPE_CHECKING:
    from recx_worker.config import Settings
    from recx_worker.worker.pipeline import Pipeline

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
#: Batches handed to the processing thread at once in at-least-once mode: one awaiting its
#: acknowledgement, one being processed, one waiting (exactly-once: one transaction at a time).
PIPELINE_DEPTH = 3
# How long a starting worker waits for its input topic's partitions before it subscribes anyway.
TOPIC_WAIT_S = 30.0
#: A worker waiting this long for an assignment (from subscribing or a revocation) subscribes
#: again if kafka-python lost the rebalance (``clients.join_lost``) ...
LOST_JOIN_CHECK_S = 2.0
#: ... and in any case after this long (or three session timeouts, if longer).
ASSIGNMENT_OVERDUE_S = 30.0
_IDLE = object()  # the processing thread's "no new batch yet" marker


class Worker:
    """One ``recx worker`` process (or an in-process instance, for tests)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clients: KafkaClients | None = None,
        pipeline_factory: Callable[[Settings, WorkerMetrics], Pipeline] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.worker
        self.metrics = metrics or WorkerMetrics()
        self.clients = clients or KafkaClients(settings)
        self._pipeline_factory = pipeline_factory
        self.flow = FlowControl(self.cfg.max_buffered)
        self.lag = LagMeter(self.metrics, settings.kafka.input_topic, self.cfg.lag_interval_s)
        self._stop = threading.Event()
        self._warm = False
        self._joined = False  # the group gave this worker an assignment
        # monotonic time since which the worker waits for an assignment; None: it has one
        self._awaiting_since: float | None = None
        self._heartbeat = Heartbeat(max_age_s=60.0)
        self._lock = threading.RLock()  # buffer/epoch/in-flight, shared with the IO thread
        self._buffer: collections.deque[tuple[float, InRecord]] = collections.deque()
        self._epoch = 0
        self._owned: set[TopicPartition] = set()
        self._reposition: set[TopicPartition] = set()
        self._reposition_retry_at = 0.0
        # batches of this epoch handed to the processing thread, in order, until accounted
        self._inflight: collections.deque[Batch] = collections.deque()
        # every batch handed over and not finished yet (abandoned ones too)
        self._handed: collections.deque[Batch] = collections.deque()
        self._depth = 1 if settings.kafka.exactly_once else PIPELINE_DEPTH
        self._work: collections.deque[Batch | None] = collections.deque()  # None: stop
        self._work_ready = threading.Condition()
        self._stop_deadline: float | None = None
        self.metrics_port: int | None = None
        self.consumer: Any = None
        self.producer: Any = None
        self.checkpoint: Checkpoint | None = None
        self.pipeline: Pipeline | None = None

    @property
    def _checkpoint(self) -> Checkpoint:
        """The running worker's checkpoint (set up by ``run``)."""
        assert self.checkpoint is not None, "the worker is not running"
        return self.checkpoint

    # -- public ------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe from signal handlers and other threads)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self._on_signal(signum))

    def ready(self) -> bool:
        """Explainers warm and partitions assigned (an empty assignment counts: the group has
        more members than partitions), the core available (core processes: not being
        restarted), and not shutting down."""
        core_up = self.pipeline is not None and self.pipeline.core_available
        return self._warm and self._joined and core_up and not self._stop.is_set()

    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        server = None
        if self.cfg.metrics_port >= 0:
            server = MetricsServer(
                self.metrics,
                healthy=self._heartbeat.alive,
                ready=self.ready,
                host=self.cfg.metrics_host,
                port=self.cfg.metrics_port,
            ).start()
            self.metrics_port = server.port
            log.info("metrics_listening", port=server.port)
        try:
            return self._run()
        finally:
            if server is not None:
                server.stop()

    # -- setup -------------------------------------------------------------------------
    def _run(self) -> int:
        from recx_worker.plugins import load_plugin_modules
        from recx_worker.worker.pipeline import Pipeline

        load_plugin_modules(self.cfg.plugin_modules)
        factory = self._pipeline_factory or Pipeline.from_settings
        self.pipeline = factory(self.settings, self.metrics)
        self.pipeline.warm_up()
        # The evidence store, caches and models loaded so far live as long as the process:
        # move them out of the garbage collector's reach, so that a full collection (one
        # every few thousand events) does not walk hundreds of thousands of them.
        gc.collect()
        gc.freeze()
        if (batcher := getattr(self.pipeline, "batcher", None)) is not None:
            self.metrics.watch_batcher(batcher)
        self._warm = True
        kafka = self.settings.kafka
        self.producer = self.clients.producer()
        self.consumer = self.clients.consumer()
        self.checkpoint = Checkpoint(
            self.producer, self.consumer, self.cfg, self.metrics, exactly_once=kafka.exactly_once
        )
        if wait_for_partitions(self.consumer, kafka.input_topic, TOPIC_WAIT_S) is None:
            log.warning("input_topic_unknown", topic=kafka.input_topic, waited_s=TOPIC_WAIT_S)
        self._subscribe()
        processor = threading.Thread(target=self._process_loop, name="recx-process", daemon=True)
        processor.start()
        log.info(
            "worker_started",
            worker_id=self.cfg.worker_id,
            group_id=kafka.group_id,
            input_topic=kafka.input_topic,
            exactly_once=kafka.exactly_once,
            static_membership=self.cfg.static_membership,
            producer=producer_client(self.settings),
        )
        code = EXIT_OK
        try:
            self._poll_loop()
        except FatalDeliveryError as exc:
            log.error("worker_fatal", error=str(exc))
            code = EXIT_FATAL
        finally:
            self._warm = False
            self.metrics.ready.set(0)
            self._shutdown(fatal=code != EXIT_OK)
        return code

    # -- polling thread ----------------------------------------------------------------
    def _subscribe(self) -> None:
        self._awaiting_since = time.monotonic()
        self.consumer.subscribe([self.settings.kafka.input_topic], listener=_Listener(self))

    def _check_assignment(self) -> None:
        """Subscribe again when kafka-python lost the rebalance or the assignment is overdue
        (``clients.join_lost``: without this the worker would wait for ever)."""
        if self._awaiting_since is None:
            return
        waited = time.monotonic() - self._awaiting_since
        overdue = max(ASSIGNMENT_OVERDUE_S, 3 * self.cfg.session_timeout_ms / 1000)
        if waited < LOST_JOIN_CHECK_S or (waited < overdue and not join_lost(self.consumer)):
            return
        log.warning("rebalance_lost_resubscribing", waited_s=round(waited, 1))
        self.consumer.unsubscribe()
        self._subscribe()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._heartbeat.beat()
            self._check_assignment()
            busy = bool(self._inflight) or bool(self._buffer)
            room = self.flow.room(self._held())
            polled = self.consumer.poll(timeout_ms=5 if busy else 100, max_records=room)
            self._take(polled)
            self._reposition_assigned()
            self._finish_batch()
            self._maybe_start_batch()  # the next batch computes while the commit blocks
            self._checkpoint.maybe_commit()
            self.flow.apply(self.consumer, self._held(), self._reposition)
            self.lag.maybe_measure(
                self.consumer, self._checkpoint.tracker.last_committed, self._reposition
            )
            front = self._inflight[0] if self._inflight else None
            if front is not None and front.finished.wait(0.005):
                self._finish_batch()  # hand the next batch over before anything else
                self._maybe_start_batch()

    def _take(self, polled: dict[TopicPartition, list[Any]]) -> None:
        if not polled:
            return
        now = time.monotonic()
        with self._lock:
            for tp, records in polled.items():
                if tp not in self._owned or tp in self._reposition:
                    continue  # fetched from a position that is about to be reset
                batch = [InRecord.from_consumer(r) for r in records]
                self._checkpoint.consumed(tp, batch)
                self._buffer.extend((now, r) for r in batch)
                self.metrics.events_in.labels(tp.topic).inc(len(batch))
            self.metrics.in_flight.set(self._checkpoint.tracker.outstanding())

    def _held(self) -> int:
        """Fetched events not finished: buffered, or in a batch handed over (flow control
        bounds these, and with them the at-least-once duplicate window)."""
        self._processing()
        return len(self._buffer) + sum(len(b.records) for b in self._handed)

    def _processing(self) -> int:
        """Batches handed to the processing thread and not finished (polling thread)."""
        while self._handed and self._handed[0].finished.is_set():
            self._handed.popleft()
        return len(self._handed)

    def _maybe_start_batch(self) -> None:
        """Hand a micro-batch over when the buffer holds a full one, or its oldest event
        waited ``max_wait_ms`` and no handed batch is still being computed (a partial batch
        keeps growing meanwhile, so a slow chain still gets large batches)."""
        cfg = self.cfg
        if not self._buffer or self._processing() >= self._depth:
            return
        if len(self._buffer) < cfg.max_batch and (
            any(not b.computed for b in self._handed)
            or (time.monotonic() - self._buffer[0][0]) * 1000 < cfg.max_wait_ms
        ):
            return
        # taken outside our lock: the consumer's own lock may be held by its IO thread
        metadata = self.consumer.group_metadata() if self.settings.kafka.exactly_once else None
        with self._lock:
            take = min(cfg.max_batch, len(self._buffer))
            if not take:
                return
            records = [self._buffer.popleft()[1] for _ in range(take)]
            batch = Batch(records=records, epoch=self._epoch, group_metadata=metadata)
            self._inflight.append(batch)
            self._handed.append(batch)
        self.metrics.batch_size.observe(len(records))
        # a core process starts on it now, while this thread polls and the previous batch
        # is delivered (the core of this process computes it on the processing thread)
        assert self.pipeline is not None
        batch.pending = self.pipeline.submit(records)
        with self._work_ready:
            self._work.append(batch)
            self._work_ready.notify()

    def _finish_batch(self) -> None:
        """Account for the finished batches at the front of the in-flight queue."""
        with self._lock:
            while self._inflight and self._inflight[0].finished.is_set():
                batch = self._inflight.popleft()
                if batch.fatal is not None:
                    raise batch.fatal
                if batch.epoch != self._epoch:
                    continue  # its partitions were revoked meanwhile; the new owner redoes it
                if not batch.delivered:
                    self._rewind(batch)
                    continue
                self._completed(batch)

    def _rewind(self, batch: Batch) -> None:
        """A batch that failed for good (e.g. its transaction was fenced before our member
        saw the rebalance): never let later events of its partitions commit past it; restart
        those partitions at the committed offset (caller holds the lock)."""
        partitions = {r.tp for r in batch.records} & self._owned
        self._reposition |= partitions
        self._buffer = collections.deque((t, r) for t, r in self._buffer if r.tp not in partitions)
        log.warning("batch_not_delivered", partitions=_names(partitions), events=len(batch.records))

    def _completed(self, batch: Batch) -> None:
        """Account for a delivered batch (caller holds the lock)."""
        self._checkpoint.completed(batch)
        counts = collections.Counter((out.kind, out.label) for out in batch.outputs)
        for (kind, label), n in counts.items():  # one increment per label, not per event
            counter = (
                self.metrics.events_out if kind == "explanation" else self.metrics.dead_letters
            )
            counter.labels(label).inc(n)
        for out in batch.outputs:
            if out.source.timestamp_ms is not None:
                latency = batch.acked_at - out.source.timestamp_ms / 1000
                self.metrics.end_to_end.observe(max(latency, 0.0))
        self.metrics.in_flight.set(self._checkpoint.tracker.outstanding())

    # -- rebalance (kafka-python IO thread: local work only, nothing that blocks) ------
    def revoked(self, partitions: set[TopicPartition], *, lost: bool = False) -> None:
        """Account for a finished batch, abandon an unfinished one, commit what is done
        (asynchronously: the request precedes our JoinGroup on the coordinator connection),
        and forget the partitions' buffered events."""
        self.metrics.rebalances.inc()
        self._awaiting_since = time.monotonic()
        with self._lock:
            for batch in self._inflight:
                if batch.finished.is_set() and batch.delivered and not lost:
                    self._completed(batch)
                else:
                    batch.abandoned.set()
            self._inflight.clear()
            self._epoch += 1
            offsets: dict[TopicPartition, int] = {}
            if not lost and not self.settings.kafka.exactly_once:
                offsets = self._checkpoint.tracker.to_commit(partitions)
            self._buffer = collections.deque(
                (t, r) for t, r in self._buffer if r.tp not in partitions
            )
            self._checkpoint.tracker.forget(partitions)
            self._owned -= set(partitions)
            self.metrics.in_flight.set(self._checkpoint.tracker.outstanding())
        if offsets:
            self.consumer.commit_async(
                {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                callback=self._revocation_commit_done,
            )
        log.info("partitions_revoked", partitions=_names(partitions), lost=lost)

    def _revocation_commit_done(self, _offsets: Any, response: Any) -> None:
        if isinstance(response, Exception):
            self.metrics.commit_failures.inc()
            log.warning("revocation_commit_failed", error=f"{type(response).__name__}")
        else:
            self.metrics.commits.inc()

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """New owner: every newly assigned partition restarts at the group's committed offset
        (one this worker kept through the rebalance, never revoked, goes on where it is: no
        other member read it meanwhile, and its done but not yet committed events stay done)."""
        with self._lock:
            self._reposition |= set(partitions) - self._owned
            self._owned |= set(partitions)
        self._awaiting_since = None
        self._joined = True
        self.metrics.ready.set(1 if self.ready() else 0)
        log.info("partitions_assigned", partitions=_names(partitions))

    def _reposition_assigned(self) -> None:
        """Seek re-assigned partitions to their committed offsets (polling thread).

        kafka-python keeps the fetch position of a partition that is revoked and assigned
        again; the committed offset is the truth after a rebalance. In exactly-once mode
        this waits until an abandoned transaction has finished (committed or aborted)."""
        if not self._reposition:
            return
        if self.settings.kafka.exactly_once and self._processing():
            return
        now = time.monotonic()
        if now < self._reposition_retry_at:
            return
        with self._lock:
            todo = set(self._reposition) & self.consumer.assignment()
            self._reposition &= self._owned
        if not todo:
            return
        try:
            # read_committed: waits while a transaction with offsets for them is open
            committed = {tp: self.consumer.committed(tp, timeout_ms=1000) for tp in todo}
        except KafkaError as exc:  # retried on a later loop; the poll loop keeps going
            self._reposition_retry_at = now + 0.5
            log.info("committed_offsets_pending", error=f"{type(exc).__name__}")
            return
        for tp, offset in committed.items():
            if offset is not None:
                self.consumer.seek(tp, offset)
            elif self.cfg.auto_offset_reset == "latest":
                self.consumer.seek_to_end(tp)
            else:
                self.consumer.seek_to_beginning(tp)
        with self._lock:
            self._buffer = collections.deque((t, r) for t, r in self._buffer if r.tp not in todo)
            self._checkpoint.tracker.forget(todo)
            self._checkpoint.tracker.mark_committed(
                {tp: o for tp, o in committed.items() if o is not None}
            )
            self._reposition -= todo

    # -- processing thread -------------------------------------------------------------
    def _process_loop(self) -> None:
        """Process batches in hand-off order. While one batch's outputs await their
        acknowledgement (``sent``), the next batch is processed; its outputs are sent only
        after that acknowledgement, so output order and commit-after-ack both hold."""
        sent: tuple[Batch, Delivery, float] | None = None
        while True:
            with self._work_ready:
                while not self._work and sent is None:
                    self._work_ready.wait()
                batch = self._work.popleft() if self._work else _IDLE
            if isinstance(batch, Batch) and not batch.abandoned.is_set():
                try:
                    batch.outputs = self._outputs(batch.records, batch.pending)
                except FatalDeliveryError as exc:  # the core cannot run: the worker stops
                    batch.fatal = exc
                    batch.abandoned.set()
            if isinstance(batch, Batch):
                batch.computed = True  # the polling thread may hand a partial batch now
            if sent is not None:  # the previous batch: wait for its acknowledgement
                self._settle(*sent)
                if sent[0].fatal is not None and isinstance(batch, Batch):
                    batch.abandoned.set()  # the worker stops: nothing is sent after it
                sent = None
            if batch is None:
                return
            if isinstance(batch, Batch):
                sent = self._send(batch)

    def _send(self, batch: Batch) -> tuple[Batch, Delivery, float] | None:
        """Hand ``batch``'s outputs to the producer; None when the batch is finished already
        (abandoned, delivered in one transaction, or fatal)."""
        t0 = time.perf_counter()
        delivery = None
        try:
            if not batch.abandoned.is_set():
                delivery = self._checkpoint.send(batch)
        except FatalDeliveryError as exc:
            batch.fatal = exc
        if delivery is not None:
            return batch, delivery, t0
        if batch.delivered:
            self.metrics.stage_latency.labels("publish").observe(time.perf_counter() - t0)
        batch.finished.set()
        return None

    def _settle(self, batch: Batch, delivery: Delivery, t0: float) -> None:
        try:
            if self._checkpoint.settle(delivery):
                self.metrics.stage_latency.labels("publish").observe(time.perf_counter() - t0)
        except FatalDeliveryError as exc:
            batch.fatal = exc
        finally:
            batch.finished.set()

    def _outputs(self, records: list[InRecord], pending: Any = None) -> list[OutRecord]:
        """Pipeline outputs (of ``pending``, the records' batch submitted already, if given);
        if the pipeline itself fails, isolate the poison record(s)."""
        assert self.pipeline is not None
        try:
            return pending.result() if pending is not None else self.pipeline.process(records)
        except FatalDeliveryError:
            raise
        except Exception as exc:
            if len(records) == 1:
                return [self._crash_letter(records[0], exc)]
            log.warning("batch_failed_isolating", error=f"{type(exc).__name__}: {exc}")
            return [out for r in records for out in self._outputs([r])]

    def _crash_letter(self, record: InRecord, exc: Exception) -> OutRecord:
        from recx_worker.validation import Rejection

        log.error(
            "processing_error",
            partition=record.partition,
            offset=record.offset,
            error=f"{type(exc).__name__}: {exc}",
        )
        rejection = Rejection("ProcessingError", f"{type(exc).__name__}: {exc}"[:1000])
        return dead_letter_record(
            self.settings.kafka.dlq_topic, record, rejection, worker_id=self.cfg.worker_id
        )

    # -- shutdown ----------------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        if self._stop.is_set():
            return
        self._stop_deadline = time.monotonic() + self.cfg.grace_period_s
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        self.request_stop()

    def _shutdown(self, *, fatal: bool) -> None:
        deadline = self._stop_deadline or time.monotonic() + self.cfg.grace_period_s
        # leave time for the final commit and for leaving the group
        finish_by = deadline - min(5.0, self.cfg.grace_period_s / 3)
        inflight = list(self._inflight)
        if inflight and not fatal:
            inflight[-1].finished.wait(max(finish_by - time.monotonic(), 0))  # in order
            with self._lock:
                self._finish_batch_quietly()
                for batch in list(self._inflight):
                    wait = max(deadline - time.monotonic() - 1, 0)
                    if self._checkpoint.abandon(batch, wait) and batch.epoch == self._epoch:
                        self._completed(batch)  # its transaction committed meanwhile
                    else:
                        log.warning("shutdown_abandoned_batch", events=len(batch.records))
                self._inflight.clear()
        if not fatal and self.checkpoint is not None:
            self.checkpoint.commit()
        remaining = max(deadline - time.monotonic(), 0.5)
        with self._work_ready:
            self._work.append(None)
            self._work_ready.notify()
        if self.consumer is not None:
            try:  # a dynamic member sends LeaveGroup here: its partitions move at once
                self.consumer.close(autocommit=False, timeout_ms=int(remaining * 500))
            except Exception as exc:  # closing must not hide the exit
                log.warning("consumer_close_failed", error=str(exc))
            if not fatal:
                self.clients.leave_group(timeout_s=min(remaining / 2, 5.0))
        if self.producer is not None:
            try:
                self.producer.close(timeout=max(deadline - time.monotonic(), 0.5))
            except Exception as exc:
                log.warning("producer_close_failed", error=str(exc))
        if self.pipeline is not None:
            self.pipeline.close()
        log.info("worker_stopped", worker_id=self.cfg.worker_id)

    def _finish_batch_quietly(self) -> None:
        try:
            self._finish_batch()
        except FatalDeliveryError:
            self._inflight.clear()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards kafka-python's rebalance callbacks (run on its IO thread) to the worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            self.worker.revoked(set(revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.assigned(set(assigned))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        if lost:
            self.worker.revoked(set(lost), lost=True)


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)
