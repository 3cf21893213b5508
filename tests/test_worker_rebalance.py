"""The worker's Kafka-facing logic without a broker: the real ``Worker`` over a fake of the
kafka-python clients (tests/fake_kafka.py). Polling, commits, flow control, lag, readiness,
and the rebalance paths: flush+commit before a revocation, buffered records of lost partitions
dropped, stale batches (older epoch) not committed, re-assigned partitions restarted at the
committed offset, and a hand-over between two workers that loses nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from fake_kafka import FakeBroker, FakeClients, FakeConsumer
from kafka import TopicPartition

from recx_worker.config import Settings
from recx_worker.metrics import WorkerMetrics
from recx_worker.worker import runner
from recx_worker.worker.clients import KafkaClients
from recx_worker.worker.flow import FlowControl
from recx_worker.worker.lag import LagMeter
from recx_worker.worker.pipeline import Deferred
from recx_worker.worker.records import InRecord, OutRecord
from recx_worker.worker.runner import Worker

IN, OUT = "recs", "expl"
TP0, TP1 = TopicPartition(IN, 0), TopicPartition(IN, 1)


class EchoPipeline:
    """A stand-in for the explainer pipeline (not under test here): one output per record,
    ``b"out:" + value``; ``gate`` (when set) holds each batch until the test opens it."""

    core_available = True  # as Pipeline's: the worker's /readyz reads it

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.batches: list[list[tuple[int, int]]] = []
        self.entered = threading.Event()

    def warm_up(self) -> None:
        return None

    def close(self) -> None:
        return None

    def submit(self, records: list[InRecord]) -> Deferred[list[OutRecord]]:
        return Deferred(lambda: self.process(records))

    def process(self, records: list[InRecord]) -> list[OutRecord]:
        self.batches.append([(r.partition, r.offset) for r in records])
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        return [
            OutRecord("explanation", OUT, r.key, b"out:" + (r.value or b""), [], "echo", r)
            for r in records
        ]


def settings(**worker) -> Settings:
    base = {"worker_id": "fake", "metrics_port": -1, "max_wait_ms": 0, "lag_interval_s": 0.05}
    return Settings(
        kafka={"input_topic": IN, "output_topic": OUT, "dlq_topic": f"{IN}.dlq"},
        worker=base | worker,
    )


class Running:
    """A ``Worker`` over fake clients, run on a thread."""

    def __init__(self, broker: FakeBroker, pipeline: EchoPipeline, **worker) -> None:
        self.clients = FakeClients(broker)
        self.pipeline = pipeline
        self.worker = Worker(
            settings(**worker),
            clients=self.clients,  # type: ignore[arg-type]
            pipeline_factory=lambda _s, _m: pipeline,  # type: ignore[arg-type,return-value]
        )
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def consumer(self) -> FakeConsumer:
        return self.clients.consumer_made

    def _run(self) -> None:
        self.code = self.worker.run()

    def start(self) -> Running:
        self.thread.start()
        wait(lambda: self.consumer.listener is not None, "subscribed")
        return self

    def stop(self) -> int | None:
        self.worker.request_stop()
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.code


def wait(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def fill(broker: FakeBroker, tp: TopicPartition, n: int) -> None:
    for _ in range(n):
        offset = len(broker.logs.get(tp, []))
        broker.append(tp, f"{tp.partition}-{offset}".encode(), key=b"k")


def outputs(broker: FakeBroker) -> list[bytes]:
    return broker.values(OUT)


@pytest.fixture
def broker() -> FakeBroker:
    b = FakeBroker()
    b.create(IN, 2)
    return b


def test_processes_commits_and_leaves_the_group_on_a_clean_exit(broker) -> None:
    fill(broker, TP0, 30)
    fill(broker, TP1, 20)
    run = Running(broker, EchoPipeline(), max_batch=8).start()
    assert not run.worker.ready()  # warm, but no partitions yet
    broker.assign(run.consumer, {TP0, TP1})
    wait(lambda: broker.committed == {TP0: 30, TP1: 20}, "everything committed")
    assert run.worker.ready()
    assert run.worker.metrics.ready._value.get() == 1
    assert sorted(outputs(broker)) == sorted(
        b"out:" + f"{p}-{o}".encode() for p, n in ((0, 30), (1, 20)) for o in range(n)
    )
    assert max(len(b) for b in run.pipeline.batches) <= 8
    assert run.stop() == 0
    assert run.consumer.closed and run.clients.left  # LeaveGroup (dynamic: in close)
    assert run.clients.producer_made.closed
    assert not run.worker.ready()


def test_revocation_commits_the_done_prefix_and_drops_the_lost_partitions_records(
    broker,
) -> None:
    fill(broker, TP0, 4)
    fill(broker, TP1, 4)
    gate = threading.Event()
    pipeline = EchoPipeline(gate)
    run = Running(broker, pipeline, max_batch=4, max_buffered=64).start()
    try:
        gate.set()
        broker.assign(run.consumer, {TP0})
        wait(lambda: broker.committed.get(TP0) == 4, "p0 done")
        gate.clear()
        pipeline.entered.clear()
        fill(broker, TP0, 8)  # offsets 4..11: one batch in flight (4..7), 8..11 buffered
        fill(broker, TP1, 4)
        broker.assign(run.consumer, {TP0, TP1})
        wait(pipeline.entered.is_set, "a batch in flight")
        wait(lambda: len(run.worker._buffer) >= 4, "records buffered behind it")
        buffered = {r.tp for _, r in run.worker._buffer}
        assert TP0 in buffered
        epoch = run.worker._epoch
        broker.assign(run.consumer, {TP1})  # p0 goes to another member
        wait(lambda: run.worker._epoch == epoch + 1, "the revocation")
        # its buffered records are gone; the in-flight batch is abandoned, not committed
        assert all(r.tp != TP0 for _, r in run.worker._buffer)
        assert run.worker.checkpoint.tracker.committable(TP0) is None
        gate.set()
        wait(lambda: broker.committed.get(TP1) == 8, "p1 processed")
        assert broker.committed[TP0] == 4  # nothing past the abandoned batch was committed
        assert b"out:0-8" not in outputs(broker)  # buffered p0 records never processed here
    finally:
        gate.set()
        run.stop()


def test_revocation_commits_a_finished_batch_before_the_partitions_go(broker) -> None:
    """A batch delivered but not yet committed when its partition is revoked: the revocation
    itself commits it (asynchronously, ahead of the JoinGroup), so the next owner does not
    repeat it."""
    run = Running(broker, EchoPipeline())
    worker = run.worker
    worker.consumer = run.consumer
    from recx_worker.worker.checkpoint import Batch, Checkpoint

    worker.checkpoint = Checkpoint(
        run.clients.producer_made, run.consumer, worker.cfg, worker.metrics, exactly_once=False
    )
    records = [InRecord(IN, 0, o, b"k", b"v", None) for o in range(5)]
    worker.assigned({TP0})
    worker.checkpoint.consumed(TP0, records)
    batch = Batch(records=records, epoch=worker._epoch)
    batch.delivered = True
    batch.finished.set()
    worker._inflight.append(batch)
    worker.revoked({TP0})
    assert run.consumer.async_commits == [{TP0: 5}]
    assert not worker._inflight and TP0 not in worker._owned


def test_lost_partitions_are_not_committed(broker) -> None:
    fill(broker, TP0, 6)
    gate = threading.Event()
    pipeline = EchoPipeline(gate)
    run = Running(broker, pipeline, max_batch=3).start()
    try:
        broker.assign(run.consumer, {TP0})
        wait(pipeline.entered.is_set, "a batch in flight")
        run.consumer.lose_next = True  # e.g. our session expired: another member owns it now
        broker.assign(run.consumer, set())
        wait(lambda: run.worker._epoch == 1, "the loss")
        gate.set()
        time.sleep(0.2)
        assert run.consumer.async_commits == []
        assert broker.committed.get(TP0, 0) == 0  # never past the batch it lost
    finally:
        gate.set()
        run.stop()


def test_a_partition_assigned_again_restarts_at_the_committed_offset(broker) -> None:
    """kafka-python keeps the fetch position of a partition revoked and assigned again; the
    worker must seek to the group's committed offset (another member may have committed
    more, or less: here less, so the abandoned records are redone, not skipped)."""
    fill(broker, TP0, 10)
    gate = threading.Event()
    pipeline = EchoPipeline(gate)
    run = Running(broker, pipeline, max_batch=4).start()
    try:
        broker.assign(run.consumer, {TP0})
        wait(pipeline.entered.is_set, "first batch in flight")
        assert run.consumer.position(TP0) == 10  # all fetched, 0..3 in flight
        broker.assign(run.consumer, set())
        wait(lambda: run.worker._epoch == 1, "revoked")
        broker.committed[TP0] = 2  # what the group committed meanwhile
        broker.assign(run.consumer, {TP0})
        gate.set()
        wait(lambda: broker.committed.get(TP0) == 10, "redone from the committed offset")
        assert (TP0, 2) in run.consumer.seeks
        redone = [o for batch in pipeline.batches[1:] for _, o in batch]
        assert redone[:2] == [2, 3]
    finally:
        gate.set()
        run.stop()


def test_hand_over_between_two_workers_loses_nothing(broker) -> None:
    """Worker A owns both partitions; half-way B joins and takes p1; then A leaves and B takes
    everything. Every record is answered at least once; nothing is committed unanswered."""
    fill(broker, TP0, 200)
    fill(broker, TP1, 200)
    a = Running(broker, EchoPipeline(), max_batch=16, max_buffered=32).start()
    b = Running(broker, EchoPipeline(), max_batch=16, max_buffered=32).start()
    try:
        broker.assign(a.consumer, {TP0, TP1})
        wait(lambda: len(outputs(broker)) >= 100, "A working")
        broker.assign(a.consumer, {TP0})
        wait(lambda: a.consumer.pending_assignment is None, "A revoked p1")
        broker.assign(b.consumer, {TP1})
        wait(lambda: len(outputs(broker)) >= 250, "both working")
        assert a.stop() == 0
        broker.assign(b.consumer, {TP0, TP1})
        wait(lambda: broker.committed == {TP0: 200, TP1: 200}, "everything committed")
        answered = set(outputs(broker))
        assert answered == {b"out:" + f"{p}-{o}".encode() for p in (0, 1) for o in range(200)}
        duplicates = len(outputs(broker)) - len(answered)
        assert duplicates <= 32 + 16  # bounded by what one worker holds uncommitted
    finally:
        b.stop()


def test_flow_control_pauses_when_full_and_holds_partitions_to_reposition(broker) -> None:
    consumer = FakeConsumer(broker)
    consumer._assigned = {TP0, TP1}
    flow = FlowControl(max_buffered=10)
    assert flow.room(3) == 7 and flow.room(50) == 1
    flow.apply(consumer, buffered=10, hold=set())
    assert consumer.paused() == {TP0, TP1}
    flow.apply(consumer, buffered=9, hold={TP1})
    assert consumer.paused() == {TP1}
    flow.apply(consumer, buffered=0, hold=set())
    assert consumer.paused() == set()


def test_lag_meter_reports_position_and_committed_lag(broker) -> None:
    fill(broker, TP0, 10)
    fill(broker, TP1, 4)
    consumer = FakeConsumer(broker)
    consumer._assigned = {TP0, TP1}
    consumer.seek(TP0, 7)
    consumer.seek(TP1, 4)
    metrics = WorkerMetrics()
    now = [0.0]
    meter = LagMeter(metrics, IN, interval_s=5.0, clock=lambda: now[0])
    rows = meter.maybe_measure(consumer, {TP0: 5}.get)
    assert rows == [(0, 10, 7, 5), (1, 4, 4, None)]
    assert meter.maybe_measure(consumer, {TP0: 5}.get) is None  # not due yet
    now[0] = 6.0
    assert meter.maybe_measure(consumer, {TP0: 5}.get, skip={TP1}) == [(0, 10, 7, 5)]
    assert metrics.assigned._value.get() == 2
    assert metrics.lag.labels(IN, "0")._value.get() == 3


def test_consumer_settings_size_recovery_and_static_membership() -> None:
    dynamic = KafkaClients(settings()).consumer_config()
    assert dynamic["session_timeout_ms"] == 8_000 and dynamic["heartbeat_interval_ms"] == 1_000
    # A worker that joined before its topic's metadata arrived gets an empty assignment; it
    # must notice the partitions within seconds, not kafka-python's default 5 minutes.
    assert dynamic["metadata_max_age_ms"] == 10_000
    assert "group_instance_id" not in dynamic
    assert dynamic["enable_auto_commit"] is False
    static = KafkaClients(settings(static_membership=True, worker_id="w7")).consumer_config()
    assert static["group_instance_id"] == "recx-w7"


def test_stop_finishes_the_in_flight_batch_and_commits_it(broker) -> None:
    fill(broker, TP0, 6)
    gate = threading.Event()
    pipeline = EchoPipeline(gate)
    run = Running(broker, pipeline, max_batch=6, grace_period_s=5).start()
    broker.assign(run.consumer, {TP0})
    wait(pipeline.entered.is_set, "a batch in flight")
    run.worker.request_stop()
    threading.Timer(0.3, gate.set).start()
    assert run.stop() == 0
    assert broker.committed == {TP0: 6}
    assert len(outputs(broker)) == 6


def test_exactly_once_revocation_leaves_offsets_to_the_transactions(broker) -> None:
    run = Running(broker, EchoPipeline())
    worker = run.worker
    worker.settings.kafka.exactly_once = True
    worker.consumer = run.consumer
    from recx_worker.worker.checkpoint import Checkpoint

    worker.checkpoint = Checkpoint(
        run.clients.producer_made, run.consumer, worker.cfg, worker.metrics, exactly_once=True
    )
    worker.assigned({TP0})
    worker.checkpoint.consumed(TP0, [InRecord(IN, 0, o, b"k", b"v", None) for o in range(3)])
    worker.revoked({TP0})
    assert run.consumer.async_commits == []  # offsets travel inside each batch's transaction
    assert worker.checkpoint.tracker.committable(TP0) is None


def test_a_rebalance_the_client_lost_is_joined_again(broker, monkeypatch) -> None:
    """kafka-python 3.0.12 can finish a JoinGroup -> SyncGroup attempt that no poll applies
    (``clients.join_lost``): the worker subscribes again and gets its partitions; a worker
    that merely waits for its assignment does not."""
    from types import SimpleNamespace

    monkeypatch.setattr(runner, "LOST_JOIN_CHECK_S", 0.05)
    fill(broker, TP0, 10)
    run = Running(broker, EchoPipeline(), max_batch=8).start()
    time.sleep(0.3)  # waiting, with the client's group state fine
    assert run.consumer.subscribes == 1
    # the state kafka-python 3.0.12 is left in after the lost rebalance
    run.consumer._coordinator = SimpleNamespace(
        rejoining=True, _join_task=None, need_rejoin=lambda: False
    )
    wait(lambda: run.consumer.subscribes == 2, "subscribed again")
    assert run.consumer.topics == [IN] and run.consumer._coordinator is None
    broker.assign(run.consumer, {TP0})
    wait(lambda: broker.committed == {TP0: 10}, "everything committed")
    assert run.consumer.subscribes == 2
    assert run.stop() == 0
