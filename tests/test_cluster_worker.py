"""recx workers against the 3-node cluster while the leader of their partitions is SIGKILLed.

Two ``recx worker`` processes (template chain, the product's session and heartbeat defaults)
consume a steady stream from topics with replication factor 3 and ``min.insync.replicas=2``;
the workers' producer is recx's own (``acks=all``, idempotent). One broker leads every
partition of the input, output and dead-letter topics and is also the group's coordinator: it
is SIGKILLed mid-stream (no controlled shutdown) and restarted a few seconds later.

Asserted: every acknowledged input record has an explanation or a dead letter (0 lost);
duplicates within ``duplicate_bound`` and none below the offsets committed before the kill;
both workers still running, no fatal error. Printed (``pytest -s``): when Kafka moved the
leaders, the stall (time from the kill to the first output, longest gap between outputs), and
latencies. All three topics use broker append time (``LogAppendTime``), so the gaps are what
the brokers saw; the publisher keeps its own send times for end-to-end latency.

Sizes: ``RECX_TEST_CLUSTER_EVENTS`` (default 2000) at ``RECX_TEST_CLUSTER_RATE`` events/s
(default 100), the broker down ``RECX_TEST_CLUSTER_DOWN_S`` (default 5) before its restart.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
from kafka import KafkaProducer
from worker_support import (
    Topics,
    WorkerProcess,
    catalog,
    committed_offsets,
    env_int,
    make_events,
    read_topic,
    stop_all,
    wait_for,
    worker_env,
)

from recx_worker.config import WorkerSettings
from recx_worker.devtools.kafka_local import LocalKafka
from recx_worker.worker.records import H_ORIGINAL_OFFSET, H_ORIGINAL_PARTITION

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EVENTS = env_int("RECX_TEST_CLUSTER_EVENTS", 2000)
RATE = env_int("RECX_TEST_CLUSTER_RATE", 100)
DOWN_S = env_int("RECX_TEST_CLUSTER_DOWN_S", 5)
PARTITIONS = 4
WORKERS = 2
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 12  # offsets.topic.num.partitions of the local cluster
Position = tuple[int, int]  # (input partition, offset)


# ----------------------------------------------------------------------- placement
def java_hash(text: str) -> int:
    """Java's ``String.hashCode`` (Kafka places a group by it)."""
    h, units = 0, text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_of(cluster: LocalKafka, group: str) -> int:
    """The broker leading the group's ``__consumer_offsets`` partition (its coordinator):
    partition ``abs(hashCode(group)) % offsets.topic.num.partitions``, as Kafka computes it."""
    h = java_hash(group)
    partition = 0 if h == -(1 << 31) else abs(h) % OFFSETS_PARTITIONS

    def offsets_topic_led() -> bool:
        try:  # the first group request creates the internal topic
            with cluster.admin() as admin:
                admin.list_group_offsets(group)
            return cluster.leader_of(OFFSETS_TOPIC, partition) in (1, 2, 3)
        except Exception:
            return False

    wait_for(offsets_topic_led, 60, "the offsets topic to have a leader")
    return cluster.leader_of(OFFSETS_TOPIC, partition)


def topics_led_by(cluster: LocalKafka, leader: int) -> Topics:
    """Input, output and dead-letter topics (RF 3, min ISR 2) whose every partition has
    ``leader`` as its preferred (so initial) leader; records carry the broker's append time."""
    others = [n for n in (1, 2, 3) if n != leader]
    assignments = {
        p: [leader, *(others if p % 2 == 0 else others[::-1])] for p in range(PARTITIONS)
    }
    run = f"leaderloss-{uuid.uuid4().hex[:6]}"
    topics = Topics(f"{run}.in", f"{run}.out", f"{run}.in.dlq", f"{run}-group")
    configs = {"min.insync.replicas": "2", "message.timestamp.type": "LogAppendTime"}
    specs = {
        name: {"assignments": assignments, "configs": configs}
        for name in (topics.input, topics.output, topics.dlq)
    }
    with cluster.admin() as admin:
        admin.create_topics(specs, timeout_ms=30_000, wait_for_metadata=True)
    return topics


# ----------------------------------------------------------------------- publishing
@dataclass(frozen=True)
class Acked:
    """One input record the broker acknowledged."""

    event_id: str | None  # None: a malformed payload (it must be dead-lettered)
    sent_at: float  # epoch seconds, when the publisher handed it to its producer
    appended_at: float  # the broker's append time
    acked_at: float


@dataclass(eq=False)  # a thread must stay hashable
class SteadyPublisher(threading.Thread):
    """Publishes ``events`` at ``rate``/s (acks=all, idempotent) and records every
    acknowledged record by its input position."""

    bootstrap: str
    topic: str
    events: list[tuple[bytes, bytes, str | None]]
    rate: float
    acked: dict[Position, Acked] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        started = time.monotonic()
        try:
            for i, (key, value, event_id) in enumerate(self.events):
                time.sleep(max(started + i / self.rate - time.monotonic(), 0))
                future = producer.send(self.topic, value=value, key=key)
                future.add_callback(self._acked, event_id, time.time())
                future.add_errback(lambda exc: self.failed.append(f"{type(exc).__name__}"))
            producer.flush(timeout=120)
        finally:
            producer.close()

    def _acked(self, event_id: str | None, sent_at: float, metadata) -> None:
        position = (metadata.partition, metadata.offset)
        self.acked[position] = Acked(event_id, sent_at, metadata.timestamp / 1000, time.time())


@dataclass(eq=False)
class LeaderWatch(threading.Thread):
    """Polls the leaders of ``topics`` (through the surviving brokers) until none is
    ``victim``; ``moved_at`` is then when Kafka's failover was first seen."""

    cluster: LocalKafka
    topics: list[str]
    victim: int
    moved_at: float | None = None

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        survivors = ",".join(n.bootstrap for n in self.cluster.nodes if n.node_id != self.victim)
        deadline = time.monotonic() + 120
        with self.cluster.admin(survivors) as admin:
            while self.moved_at is None and time.monotonic() < deadline:
                try:
                    leaders = {
                        p["leader_id"]
                        for topic in admin.describe_topics(self.topics)
                        for p in topic["partitions"]
                    }
                except Exception:  # metadata from a broker that is catching up: ask again
                    leaders = {self.victim}
                if self.victim not in leaders and -1 not in leaders:
                    self.moved_at = time.time()
                time.sleep(0.2)


# ----------------------------------------------------------------------- reading back
@dataclass
class Answers:
    """Outputs read back: which input records they answer, and when each was appended."""

    explained: Counter[str]  # event id -> explanations
    dead_lettered: Counter[Position]  # input position -> dead letters
    first_at: dict[str | Position, float]  # answer key -> append time of its first answer
    last_at: dict[str | Position, float]  # answer key -> append time of its last answer
    append_times: list[float]

    @classmethod
    def read(cls, bootstrap: str, topics: Topics) -> Answers:
        keyed: list[tuple[str | Position, float]] = []
        for record in read_topic(bootstrap, topics.output):
            keyed.append((json.loads(record.value)["event_id"], record.timestamp / 1000))
        for record in read_topic(bootstrap, topics.dlq):
            headers = dict(record.headers)
            position = (int(headers[H_ORIGINAL_PARTITION]), int(headers[H_ORIGINAL_OFFSET]))
            keyed.append((position, record.timestamp / 1000))
        first_at: dict[str | Position, float] = {}
        last_at: dict[str | Position, float] = {}
        for key, at in keyed:
            first_at[key] = min(at, first_at.get(key, at))
            last_at[key] = max(at, last_at.get(key, at))
        return cls(
            explained=Counter(k for k, _ in keyed if isinstance(k, str)),
            dead_lettered=Counter(k for k, _ in keyed if isinstance(k, tuple)),
            first_at=first_at,
            last_at=last_at,
            append_times=sorted(at for _, at in keyed),
        )

    def answered_at(self, position: Position, event_id: str | None) -> float | None:
        """Append time of the first answer to the input record at ``position``."""
        if event_id is not None and event_id in self.first_at:
            return self.first_at[event_id]
        return self.first_at.get(position)

    def unanswered(self, acked: dict[Position, Acked]) -> list[Position]:
        return [p for p, a in acked.items() if self.answered_at(p, a.event_id) is None]

    def redone(self, acked: dict[Position, Acked], since: float = 0.0) -> list[Position]:
        """Input positions answered more than once, the last time after ``since``."""
        return [
            p
            for p, a in acked.items()
            if self.explained.get(a.event_id or "", 0) + self.dead_lettered.get(p, 0) > 1
            and self.last_at.get(a.event_id or "", self.last_at.get(p, 0.0)) > since
        ]

    def duplicates(self) -> int:
        counts = [*self.explained.values(), *self.dead_lettered.values()]
        return sum(counts) - len(counts)

    def longest_gap(self) -> tuple[float, float]:
        """(seconds, start) of the longest pause between consecutive outputs."""
        times = self.append_times
        return max(((b - a, a) for a, b in itertools.pairwise(times)), default=(0.0, 0.0))


def duplicate_bound(rate: float, stall_s: float) -> int:
    """At-least-once re-delivers only what was published but not yet committed when a
    partition is read again (a rebalance, or a commit that failed for good); the idempotent
    producer keeps its own retries from duplicating. Commits and produces go through the same
    lost broker, so that window is what each worker holds (its fetched buffer and the
    micro-batch in flight), what was delivered since the last commit (one
    ``commit_interval_ms``) and what arrives while both stall: ``workers x (max_buffered +
    max_batch) + rate x (commit interval + stall)``. (The test also checks the sharper
    property: no duplicate lies below the offsets committed before the kill.)"""
    defaults = WorkerSettings.model_fields
    held = defaults["max_batch"].default + defaults["max_buffered"].default
    interval_s = defaults["commit_interval_ms"].default / 1000
    return int(WORKERS * held + rate * (interval_s + stall_s))


def _after(events: list[dict], since: float) -> Counter[str]:
    """Counts of the worker log events named after ``since`` (epoch seconds)."""
    from datetime import datetime

    return Counter(
        str(e.get("event"))
        for e in events
        if "timestamp" in e
        and datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00")).timestamp() >= since
    )


@dataclass(frozen=True)
class Stall:
    """What the leader loss cost, in seconds (from broker append times and the kill)."""

    failover_s: float  # until no partition of the three topics was led by the victim
    first_output_s: float  # until the first output appended after the kill
    longest_gap_s: float  # the longest pause between consecutive outputs
    gap_from_s: float  # where that pause began, relative to the kill
    first_input_ack_s: float  # until the publisher's first acknowledgement after the kill
    in_worker: list[float]  # input append -> first answer's append, per event
    in_worker_before: list[float]  # the same, for events appended > 5 s before the kill
    end_to_end: list[float]  # publisher send -> first answer's append, per event

    @classmethod
    def measure(
        cls, acked: dict[Position, Acked], answers: Answers, killed_at: float, moved: float | None
    ) -> Stall:
        after = [t for t in answers.append_times if t > killed_at]
        acks = [a.acked_at for a in acked.values() if a.acked_at > killed_at]
        gap, gap_at = answers.longest_gap()
        answered = {p: answers.answered_at(p, a.event_id) or math.nan for p, a in acked.items()}
        return cls(
            failover_s=(moved or math.nan) - killed_at,
            first_output_s=after[0] - killed_at if after else math.inf,
            longest_gap_s=gap,
            gap_from_s=gap_at - killed_at,
            first_input_ack_s=min(acks, default=math.nan) - killed_at,
            in_worker=[answered[p] - a.appended_at for p, a in acked.items()],
            in_worker_before=[
                answered[p] - a.appended_at
                for p, a in acked.items()
                if a.appended_at < killed_at - 5
            ],
            end_to_end=[answered[p] - a.sent_at for p, a in acked.items()],
        )

    def report(self) -> str:
        def p50_max(values: list[float]) -> str:
            ordered = sorted(values) or [math.nan]
            return f"p50 {ordered[len(ordered) // 2]:.2f} s, max {ordered[-1]:.1f} s"

        return (
            f"  Kafka moved the leaders {self.failover_s:.1f} s after the kill; first output "
            f"{self.first_output_s:.1f} s after it; longest output gap {self.longest_gap_s:.1f} s "
            f"(from {self.gap_from_s:+.1f} s); the publisher's first ack after the kill "
            f"{self.first_input_ack_s:.1f} s\n"
            f"  in-worker latency (input append -> output append) {p50_max(self.in_worker)} "
            f"(before the kill: {p50_max(self.in_worker_before)}); end-to-end (send -> output) "
            f"{p50_max(self.end_to_end)}"
        )


def _balanced(workers: list[WorkerProcess]) -> bool:
    """Every worker holds its share of the partitions and no rebalance is under way."""
    for worker in workers:
        assigned = worker.events_named("partitions_assigned")
        revoked = worker.events_named("partitions_revoked")
        if not assigned or len(assigned[-1]["partitions"]) != PARTITIONS // len(workers):
            return False
        if revoked and revoked[-1]["timestamp"] > assigned[-1]["timestamp"]:
            return False
    return True


# ----------------------------------------------------------------------- the test
@pytest.mark.parametrize(
    ("victim_role", "producer"),
    [
        ("leader", "librdkafka"),  # the default producer (worker.producer_client = "auto")
        ("leader+coordinator", "librdkafka"),
        ("leader+coordinator", "kafka-python"),
    ],
)
def test_leader_of_input_and_output_killed_and_restarted_under_load(
    kafka_cluster, worker_data, tmp_path, victim_role, producer
) -> None:
    """``leader``: the victim leads every partition of the three topics; the group's
    coordinator is another broker. ``leader+coordinator``: it is the coordinator too.
    ``producer``: the workers' ``producer_client``; both get the sharp "no duplicate unless
    something was read again or re-sent" and the bound. Revocations count from the first
    publish on: a rebalance right after the workers looked balanced (kafka-python redoing a
    join it lost) redelivers a few early events."""
    data, index = worker_data
    users, items = catalog(data)
    group = f"leaderloss-{uuid.uuid4().hex[:6]}-group"
    coordinator = coordinator_of(kafka_cluster, group)
    victim = coordinator if victim_role == "leader+coordinator" else coordinator % 3 + 1
    topics = topics_led_by(kafka_cluster, victim)
    topics.group = group
    for topic in (topics.input, topics.output, topics.dlq):
        assert {kafka_cluster.leader_of(topic, p) for p in range(PARTITIONS)} == {victim}

    defaults = WorkerSettings.model_fields
    env = worker_env(
        kafka_cluster.bootstrap,
        topics,
        data,
        index,
        session_timeout_ms=defaults["session_timeout_ms"].default,  # the product's defaults
        heartbeat_interval_ms=defaults["heartbeat_interval_ms"].default,
        # shorter than any failover, so waits for acknowledgements run out during it: the
        # worker must keep waiting for the producer's retries, not send a second copy
        produce_timeout_s=2,
        producer_client=producer,
    )
    workers = [
        WorkerProcess(env, tmp_path / f"w{i}.log", f"w-leaderloss{i}").start()
        for i in range(WORKERS)
    ]
    events = make_events(EVENTS, users, items, malformed_share=0.02)
    publisher = SteadyPublisher(kafka_cluster.bootstrap, topics.input, events, RATE)
    try:
        wait_for(lambda: _balanced(workers), 120, "both workers with their partitions")
        publishing_from = time.time()
        publisher.start()
        wait_for(lambda: len(publisher.acked) >= EVENTS * 0.3, 120, "a steady flow", 0.1)
        committed_at = time.time()
        committed_before = committed_offsets(kafka_cluster.bootstrap, group)
        watch = LeaderWatch(kafka_cluster, [topics.input, topics.output, topics.dlq], victim)
        killed_at = time.time()
        kafka_cluster.stop_node(victim, kill=True)  # a crash: no controlled shutdown
        watch.start()
        time.sleep(DOWN_S)
        kafka_cluster.start_node(victim)
        back_s = time.time() - killed_at
        publisher.join(180)
        watch.join(120)
        assert not publisher.is_alive(), "publishing did not finish"

        def all_answered() -> bool:
            return not Answers.read(kafka_cluster.bootstrap, topics).unanswered(publisher.acked)

        wait_for(all_answered, 180, "an answer for every acknowledged event", interval_s=2)
        answers = Answers.read(kafka_cluster.bootstrap, topics)
        assert [w.alive() for w in workers] == [True] * WORKERS, "a worker died"
        logged = [e for w in workers for e in w.log_events()]
        named = _after(logged, killed_at)
        whole = _after(logged, publishing_from)
    finally:
        stop_all(workers)

    stall = Stall.measure(publisher.acked, answers, killed_at, watch.moved_at)
    bound = duplicate_bound(RATE, stall.longest_gap_s)
    print(
        f"\nleader loss ({victim_role}, {producer} producer): 3 nodes, RF 3, min ISR 2; "
        f"broker {victim} led every input/output/DLQ partition; group coordinator: broker "
        f"{coordinator}; SIGKILL, back after {back_s:.1f} s\n"
        f"  {len(publisher.acked)} events acked at {RATE}/s -> "
        f"{sum(answers.explained.values())} explanations + "
        f"{sum(answers.dead_lettered.values())} dead letters; "
        f"lost={len(answers.unanswered(publisher.acked))}, "
        f"duplicates={answers.duplicates()} (bound {bound})\n{stall.report()}\n"
        f"  worker logs after the kill: produce_failed={named['produce_failed']}, "
        f"produce_slow={named['produce_slow']}, commit_failed={named['commit_failed']}, "
        f"partitions_revoked={named['partitions_revoked']} "
        f"(since the first publish: {whole['partitions_revoked']})"
    )
    assert not publisher.failed, f"publishing failed: {publisher.failed[:3]}"
    assert len(publisher.acked) == EVENTS
    assert not named["worker_fatal"]
    assert stall.first_output_s < float("inf"), "no output after the kill"
    assert answers.duplicates() <= bound
    resent = whole["partitions_revoked"] or whole["produce_failed"] or whole["batch_not_delivered"]
    if not resent:
        # nothing was read again nor sent twice: the idempotent producer's retries, and the
        # worker's waits for them, must not have published a second copy
        assert answers.duplicates() == 0
    # an event answered again after the commit snapshot, below the committed offset (an
    # early rebalance may redo uncommitted events before the snapshot: at-least-once)
    redone = answers.redone(publisher.acked, since=committed_at)
    below = [p for p in redone if p[1] < committed_before.get(p[0], 0)]
    assert not below, f"events committed before the kill were processed again: {below[:5]}"
