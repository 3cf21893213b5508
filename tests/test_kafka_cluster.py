"""3-node KRaft cluster: losing a partition leader mid-stream loses no acknowledged message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


class SteadyProducer(threading.Thread):
    """Sends numbered messages with acks=all until stopped; records what the broker acked."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.topic = topic
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap.split(","),
            acks="all",
            linger_ms=5,
            request_timeout_ms=10_000,
            delivery_timeout_ms=60_000,
        )
        self.acked: dict[int, float] = {}  # message number -> time acknowledged
        self.failed: list[tuple[int, Exception]] = []
        self.stop_event = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            number = self.sent
            future = self.producer.send(self.topic, key=str(number).encode(), value=b"%d" % number)
            future.add_callback(lambda _md, n=number: self.acked.__setitem__(n, time.monotonic()))
            future.add_errback(lambda exc, n=number: self.failed.append((n, exc)))
            self.sent += 1
            time.sleep(0.005)

    def finish(self) -> None:
        self.stop_event.set()
        self.join()
        self.producer.flush(timeout=90)
        self.producer.close()


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return False


def read_all(bootstrap: str, topic: str, partitions: int) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    end = consumer.end_offsets(tps)
    numbers: list[int] = []
    deadline = time.monotonic() + 60
    while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            numbers.extend(int(r.value) for r in records)
    consumer.close()
    return numbers


def test_leader_loss_while_producing_loses_no_acked_message(kafka_cluster, make_topic) -> None:
    topic = make_topic(partitions=3, bootstrap=kafka_cluster.bootstrap, replication_factor=3)
    with kafka_cluster.admin() as admin:
        (info,) = admin.describe_topics([topic])
    assert all(len(p["replica_nodes"]) == 3 for p in info["partitions"])
    leader = kafka_cluster.leader_of(topic, 0)

    producer = SteadyProducer(kafka_cluster.bootstrap, topic)
    producer.start()
    try:
        assert wait_for(lambda: len(producer.acked) >= 100, 60), "nothing acked before the fault"
        kafka_cluster.stop_node(leader, kill=True)  # a crash: no controlled shutdown
        killed_at = time.monotonic()
        survivors = [n for n in (1, 2, 3) if n != leader]

        def failed_over() -> bool:
            try:
                new_leader = kafka_cluster.leader_of(topic, 0)
            except Exception:  # the broker we asked may be the one we killed
                return False
            return new_leader in survivors and any(
                t > killed_at + 1 for t in list(producer.acked.values())
            )

        assert wait_for(failed_over, 60), "no new leader, or production did not resume"
        time.sleep(2)  # keep producing a little under the new leader
    finally:
        producer.finish()
    new_leader = kafka_cluster.leader_of(topic, 0)

    assert new_leader in survivors, f"partition 0 still led by {new_leader}"
    after_fault = [n for n, t in producer.acked.items() if t > killed_at + 1]
    assert after_fault, "production did not continue after leader election"
    assert not producer.failed, f"sends failed: {producer.failed[:3]}"

    survivors_bootstrap = ",".join(kafka_cluster.node(n).bootstrap for n in survivors)
    read = read_all(survivors_bootstrap, topic, partitions=3)
    missing = set(producer.acked) - set(read)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
    assert len(producer.acked) == producer.sent
    first_ack_after = min(t for t in producer.acked.values() if t > killed_at) - killed_at
    print(f"acked {len(producer.acked)} messages; first ack {first_ack_after:.1f} s after the kill")
