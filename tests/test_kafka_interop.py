"""We speak plain Kafka: confluent-kafka (librdkafka) and kafka-python read each other's data."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer
from kafka import KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.kafka
COUNT = 50


def test_confluent_kafka_reads_what_kafka_python_wrote(kafka_bootstrap, make_topic) -> None:
    topic = make_topic(partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), acks="all")
    for i in range(COUNT):
        headers = [("origin", b"kafka-python")]
        producer.send(topic, key=f"k{i % 7}".encode(), value=f"v{i}".encode(), headers=headers)
    producer.flush()
    producer.close()

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"interop-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got = []
    for _ in range(120):
        if len(got) == COUNT:
            break
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg)
    consumer.commit(asynchronous=False)
    consumer.close()

    assert sorted(m.value() for m in got) == sorted(f"v{i}".encode() for i in range(COUNT))
    assert all(m.headers() == [("origin", b"kafka-python")] for m in got)
    for m in got:  # same key -> same partition, whichever client's partitioner placed it
        assert m.key() == f"k{int(m.value()[1:]) % 7}".encode()
    assert len({(m.key(), m.partition()) for m in got}) == len({m.key() for m in got})


def test_kafka_python_reads_what_confluent_kafka_wrote(kafka_bootstrap, make_topic) -> None:
    topic = make_topic(partitions=1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for i in range(COUNT):
        producer.produce(topic, key=b"k", value=f"v{i}".encode())
    assert producer.flush(30) == 0

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap.split(","),
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
    )
    values = [r.value for _, r in zip(range(COUNT), consumer, strict=False)]
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(COUNT)]  # one partition: order kept
