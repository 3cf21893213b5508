"""An in-memory fake of the kafka-python clients the worker uses (consumer, producer), for
fast tests of the worker's own logic: polling, flow control, rebalances, commits, shutdown.

It fakes the Kafka client, not the worker: ``FakeBroker`` holds partition logs and a group's
committed offsets; ``FakeConsumer`` fetches from them at its positions (pauses respected),
commits to them and runs the rebalance listener's callbacks when the test moves partitions
(``FakeBroker.assign``), on the polling thread before a poll returns - as kafka-python does.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

ConsumerRecord = namedtuple("ConsumerRecord", "topic partition offset key value timestamp headers")


@dataclass
class FakeBroker:
    """Partition logs and one consumer group's committed offsets."""

    logs: dict[TopicPartition, list[ConsumerRecord]] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def create(self, topic: str, partitions: int) -> list[TopicPartition]:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        for tp in tps:
            self.logs.setdefault(tp, [])
        return tps

    def append(self, tp: TopicPartition, value: bytes, key: bytes | None = None) -> int:
        with self.lock:
            log = self.logs.setdefault(tp, [])
            log.append(ConsumerRecord(tp.topic, tp.partition, len(log), key, value, 1, []))
            return len(log) - 1

    def values(self, topic: str) -> list[bytes]:
        with self.lock:
            return [r.value for tp, log in sorted(self.logs.items()) if tp.topic == topic
                    for r in log]  # fmt: skip

    def assign(self, consumer: FakeConsumer, partitions: set[TopicPartition]) -> None:
        """Give ``consumer`` exactly ``partitions`` at its next poll (revoking the others)."""
        consumer.pending_assignment = set(partitions)


class FakeFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return None


class FakeProducer:
    """Appends sent records to the broker's logs; ``fail_next`` makes sends fail."""

    def __init__(self, broker: FakeBroker, partitions: int = 1) -> None:
        self.broker = broker
        self.partitions = partitions
        self.fail_next: list[Exception] = []
        self.closed = False

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> FakeFuture:
        if self.fail_next:
            return FakeFuture(self.fail_next.pop(0))
        partition = hash(key) % self.partitions if key is not None else 0
        self.broker.append(TopicPartition(topic, partition), value, key)
        return FakeFuture()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class FakeConsumer:
    """The subset of ``kafka.KafkaConsumer`` the worker calls."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.listener: Any = None
        self.topics: list[str] = []
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self.pending_assignment: set[TopicPartition] | None = None
        self.lose_next = False  # the next reassignment reports on_partitions_lost
        self.async_commits: list[dict[TopicPartition, int]] = []
        self.sync_commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.closed = False
        self.polls = 0
        self.subscribes = 0
        self._coordinator: Any = None

    # -- group -------------------------------------------------------------------------
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        with self.broker.lock:
            found = {tp.partition for tp in self.broker.logs if tp.topic == topic}
        return found or None

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics = list(topics)
        self.listener = listener
        self.subscribes += 1

    def unsubscribe(self) -> None:
        """Leave the group: kafka-python forgets its group state (``_coordinator`` stands
        for it; a test sets it to mimic a rebalance the client lost)."""
        self.topics = []
        self._coordinator = None

    def _rebalance(self) -> None:
        new, self.pending_assignment = self.pending_assignment, None
        if new is None:
            return
        gone = self._assigned - new
        if gone:
            if self.lose_next:
                self.listener.on_partitions_lost(gone)
            else:
                self.listener.on_partitions_revoked(gone)
        self.lose_next = False
        for tp in gone:
            self._paused.discard(tp)
        added = new - self._assigned
        self._assigned = set(new)
        for tp in added:
            # kafka-python keeps the fetch position of a partition it owned before; a new
            # one starts at the committed offset
            self._position.setdefault(tp, self.broker.committed.get(tp, 0))
        self.listener.on_partitions_assigned(set(new))

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def group_metadata(self) -> Any:
        return None

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True
        self._assigned = set()

    # -- fetching ----------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.polls += 1
        self._rebalance()
        budget = max_records if max_records is not None else 500
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        with self.broker.lock:
            for tp in sorted(self._assigned - self._paused):
                log = self.broker.logs.get(tp, [])
                start = self._position.get(tp, 0)
                take = log[start : start + budget]
                if take:
                    out[tp] = take
                    self._position[tp] = start + len(take)
                    budget -= len(take)
                if budget <= 0:
                    break
        if not out:
            threading.Event().wait(min(timeout_ms, 20) / 1000)
        return out

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self._position.get(tp, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._position[tp] = offset

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.seek(tp, 0)

    def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.seek(tp, len(self.broker.logs.get(tp, [])))

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict:
        with self.broker.lock:
            return {tp: len(self.broker.logs.get(tp, [])) for tp in tps}

    # -- offsets -----------------------------------------------------------------------
    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.broker.committed.get(tp)

    def commit(self, offsets: dict) -> None:
        plain = {tp: o.offset for tp, o in offsets.items()}
        self.sync_commits.append(plain)
        self.broker.committed.update(plain)

    def commit_async(self, offsets: dict, callback: Any = None) -> None:
        plain = {tp: o.offset for tp, o in offsets.items()}
        self.async_commits.append(plain)
        self.broker.committed.update(plain)
        if callback is not None:
            callback(offsets, None)


class FakeClients:
    """What ``Worker(clients=...)`` asks for, over one ``FakeBroker``."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.consumer_made = FakeConsumer(broker)
        self.producer_made = FakeProducer(broker)
        self.left: list[float] = []

    def consumer(self) -> FakeConsumer:
        return self.consumer_made

    def producer(self) -> FakeProducer:
        return self.producer_made

    def leave_group(self, timeout_s: float) -> None:
        self.left.append(timeout_s)
