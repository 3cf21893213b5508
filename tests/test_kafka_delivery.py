"""Delivery guarantees of the local single broker: nothing lost, key order, restart survival."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.kafka


def produce_keyed(bootstrap: str, topic: str, count: int, keys: int) -> list[tuple[str, int]]:
    """Send ``count`` messages ``key:seq`` with acks=all; return (key, seq) in send order."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5)
    sent, futures, seq = [], [], defaultdict(int)
    for i in range(count):
        key = f"user-{i % keys}"
        futures.append(producer.send(topic, key=key.encode(), value=f"{key}:{seq[key]}".encode()))
        sent.append((key, seq[key]))
        seq[key] += 1
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # raises unless the broker acknowledged the record
    producer.close()
    return sent


def group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=60_000,
    )


def consume_and_commit(consumer: KafkaConsumer, want: int, timeout_s: float = 60) -> list:
    """Poll until ``want`` records arrived, committing after each processed batch."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while len(records) < want and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500, max_records=100)
        for partition_records in batch.values():
            records.extend(partition_records)
        if batch:
            consumer.commit()
    return records


def test_keyed_messages_none_lost_per_key_order(kafka_bootstrap, make_topic) -> None:
    topic = make_topic(partitions=4)
    sent = produce_keyed(kafka_bootstrap, topic, count=1000, keys=37)

    consumer = group_consumer(kafka_bootstrap, topic, f"g-{uuid.uuid4().hex[:8]}")
    records = consume_and_commit(consumer, want=1000)
    assert consumer.poll(timeout_ms=1000) == {}, "more records than were produced"
    partitions = [TopicPartition(topic, p) for p in range(4)]
    committed = {tp.partition: consumer.committed(tp) for tp in partitions}
    consumer.close()

    received = [(r.key.decode(), int(r.value.decode().split(":")[1])) for r in records]
    assert len(received) == 1000
    assert sorted(received) == sorted(sent), "messages lost or duplicated"
    by_key: dict[str, list[int]] = defaultdict(list)
    partitions_of_key: dict[str, set[int]] = defaultdict(set)
    for record, (key, seq) in zip(records, received, strict=True):
        by_key[key].append(seq)
        partitions_of_key[key].add(record.partition)
    assert all(seqs == sorted(seqs) for seqs in by_key.values()), "per-key order broken"
    assert all(len(p) == 1 for p in partitions_of_key.values()), "a key spans partitions"
    assert len({r.partition for r in records}) == 4, "keys did not spread over the 4 partitions"
    # Manual commits reached the broker: committed offsets account for every record.
    assert sum(committed.values()) == 1000


def test_broker_restart_keeps_messages_and_committed_offsets(kafka_broker, make_topic) -> None:
    bootstrap = kafka_broker.bootstrap
    topic = make_topic(partitions=2)
    produce_keyed(bootstrap, topic, count=300, keys=11)
    group = f"g-{uuid.uuid4().hex[:8]}"
    partitions = [TopicPartition(topic, p) for p in range(2)]

    first = group_consumer(bootstrap, topic, group)
    before = consume_and_commit(first, want=120)
    committed = {tp: first.committed(tp) or 0 for tp in partitions}
    first.close(autocommit=False)
    assert sum(committed.values()) == len(before) and 0 < len(before) < 300

    old_pid = kafka_broker.status()[0].pid
    kafka_broker.stop_node(1)
    assert not kafka_broker.is_alive(1)
    kafka_broker.start_node(1)
    assert kafka_broker.status()[0].pid != old_pid

    second = group_consumer(bootstrap, topic, group)
    assert {tp: second.committed(tp) for tp in partitions} == committed
    after = consume_and_commit(second, want=300 - len(before))
    assert second.poll(timeout_ms=1000) == {}, "consumer re-read records it had committed"
    second.close()
    for tp in partitions:
        offsets = [r.offset for r in after if r.partition == tp.partition]
        if offsets:  # resumes exactly at the committed offset, no gap, no repeat
            assert offsets == list(range(committed[tp], committed[tp] + len(offsets)))

    seen = {(r.partition, r.offset) for r in before} | {(r.partition, r.offset) for r in after}
    assert len(before) + len(after) == len(seen) == 300
