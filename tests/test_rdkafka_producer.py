"""The worker's librdkafka producer (``worker.producer_client = "librdkafka"``) on a real broker:
kafka-python's interface, acknowledged sends, kafka-python's partitions for the same keys."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from recx_worker.config import BadSetting, Settings, load_settings
from recx_worker.worker.clients import KafkaClients, producer_client
from recx_worker.worker.rdkafka import RdKafkaProducer, rdkafka_config, untranslatable

COUNT = 60


def _read(bootstrap: str, topic: str, count: int) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=f"read-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=10_000,
    )
    consumer.subscribe([topic])
    got = []
    for record in consumer:
        got.append(record)
        if len(got) == count:
            break
    consumer.close()
    return got


@pytest.mark.kafka
def test_the_worker_producer_delivers_like_kafka_python(kafka_bootstrap, make_topic) -> None:
    """Through ``KafkaClients.producer()``: every future resolves once the broker acknowledged
    it, values and headers arrive intact, and each key lands on the partition kafka-python's
    producer picks for it (murmur2), so a mixed fleet keeps a user's outputs together."""
    ours, theirs = make_topic(partitions=6), make_topic(partitions=6)
    settings = Settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        worker={"producer_client": "librdkafka", "worker_id": "rd-test"},
    )
    producer = KafkaClients(settings).producer()
    assert isinstance(producer, RdKafkaProducer)
    reference = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","), acks="all")
    keys = [f"user-{i % 17}".encode() for i in range(COUNT)]
    futures = []
    for i, key in enumerate(keys):
        headers = [("event_id", f"e{i}".encode())]
        futures.append(producer.send(ours, value=f"v{i}".encode(), key=key, headers=headers))
        reference.send(theirs, value=f"v{i}".encode(), key=key)
    for future in futures:
        future.get(timeout=30)
        assert future.is_done
    reference.flush()
    reference.close()
    producer.flush(timeout=10)
    producer.close(timeout=10)

    got = _read(kafka_bootstrap, ours, COUNT)
    assert sorted(r.value for r in got) == sorted(f"v{i}".encode() for i in range(COUNT))
    assert all(r.headers == [("event_id", b"e" + r.value[1:])] for r in got)
    placed = {(r.key, r.partition) for r in got}
    assert placed == {(r.key, r.partition) for r in _read(kafka_bootstrap, theirs, COUNT)}


@pytest.mark.kafka
def test_an_unreachable_broker_times_out_and_a_missing_ack_is_no_verdict(make_topic) -> None:
    """A wait that runs out raises ``KafkaTimeoutError`` (the checkpoint keeps waiting: the
    producer still retries); a message the producer gives up on raises a ``KafkaError``."""
    producer = RdKafkaProducer(
        bootstrap_servers=["127.0.0.1:1"], acks="all", **{"message.timeout.ms": 1500}
    )
    future = producer.send("nowhere", value=b"x")
    with pytest.raises(KafkaTimeoutError):
        future.get(timeout=0.2)
    assert not future.is_done
    with pytest.raises(KafkaError) as caught:
        future.get(timeout=20)
    assert not isinstance(caught.value, KafkaTimeoutError) and future.is_done
    producer.send("nowhere", value=b"y")
    with pytest.raises(KafkaTimeoutError, match="1 records not delivered"):
        producer.flush(timeout=0.2)


def test_options_are_translated_or_refused() -> None:
    config = rdkafka_config(
        {
            "bootstrap_servers": ["a:9092", "b:9092"],
            "security_protocol": "SASL_SSL",
            "sasl_plain_username": "u",
            "linger_ms": 5,
            "batch.size": 65536,
        }
    )
    assert config["bootstrap.servers"] == "a:9092,b:9092"
    assert config["security.protocol"] == "SASL_SSL" and config["sasl.username"] == "u"
    assert config["linger.ms"] == 5 and config["batch.size"] == 65536
    assert config["partitioner"] == "murmur2_random"
    with pytest.raises(ValueError, match=r"send_buffer_bytes.*librdkafka property"):
        rdkafka_config({"send_buffer_bytes": 1 << 20})


def test_security_options_of_kafka_python_clients_reach_librdkafka() -> None:
    """``kafka.client_options`` written for kafka-python (mutual TLS, timing) become
    librdkafka properties: a client certificate is never dropped on the way."""
    config = rdkafka_config(
        {
            "ssl_certfile": "/certs/client.pem",
            "ssl_keyfile": "/certs/client.key",
            "ssl_password": "secret",
            "ssl_check_hostname": False,
            "request_timeout_ms": 20_000,
            "api_version": (3, 0),  # librdkafka negotiates versions itself
        }
    )
    assert config["ssl.certificate.location"] == "/certs/client.pem"
    assert config["ssl.key.location"] == "/certs/client.key"
    assert config["ssl.key.password"] == "secret"
    assert config["ssl.endpoint.identification.algorithm"] == "none"
    assert config["request.timeout.ms"] == 20_000
    assert "api_version" not in config and "api.version" not in config
    assert untranslatable({"ssl_certfile": "x", "batch.size": 1, "max_block_ms": 5}) == [
        "max_block_ms"
    ]


def test_auto_keeps_kafka_pythons_producer_for_a_configuration_written_for_it(
    monkeypatch,
) -> None:
    """``auto`` (the default) picks kafka-python's producer where a client or producer option
    has no librdkafka property; it translates the rest; ``librdkafka`` named outright
    refuses such an option before the worker starts."""
    monkeypatch.delenv("RECX_CONFIG", raising=False)
    tls = load_settings(kafka={"client_options": {"ssl_certfile": "/c.pem"}})
    assert producer_client(tls) == "librdkafka"
    assert KafkaClients(tls)._rdkafka_options()["ssl_certfile"] == "/c.pem"
    for section, options in (
        ("kafka", {"client_options": {"max_in_flight_requests_per_connection": 1}}),
        ("worker", {"producer_options": {"batch_size": 65536}}),
    ):
        assert producer_client(load_settings(**{section: options})) == "kafka-python"
    named = load_settings(
        kafka={"client_options": {"max_in_flight_requests_per_connection": 1}},
        worker={"producer_client": "librdkafka"},
    )
    with pytest.raises(ValueError, match="max_in_flight_requests_per_connection"):
        KafkaClients(named).check_producer()


def test_auto_picks_librdkafka_except_for_exactly_once(monkeypatch) -> None:
    """``auto``, the default: librdkafka's producer, kafka-python's for exactly-once."""
    monkeypatch.delenv("RECX_CONFIG", raising=False)
    with pytest.raises(BadSetting, match="at-least-once only"):
        load_settings(kafka={"exactly_once": True}, worker={"producer_client": "librdkafka"})
    with pytest.raises(BadSetting, match="producer_client"):
        load_settings(worker={"producer_client": "rdkafka"})
    assert load_settings().worker.producer_client == "auto"  # the default
    assert producer_client(load_settings()) == "librdkafka"
    assert producer_client(load_settings(kafka={"exactly_once": True})) == "kafka-python"
    for exactly_once, picked in ((False, "librdkafka"), (True, "kafka-python")):
        settings = load_settings(
            kafka={"exactly_once": exactly_once}, worker={"producer_client": "auto"}
        )
        assert producer_client(settings) == picked


def test_recx_worker_refuses_a_kafka_python_producer_option_before_starting(
    tmp_path, monkeypatch
) -> None:
    """With the librdkafka producer a kafka-python producer option fails at once (exit 2,
    naming the option and the fix), not after the explainers warmed up."""
    from typer.testing import CliRunner

    from recx_worker.cli import app

    monkeypatch.delenv("RECX_CONFIG", raising=False)
    monkeypatch.setenv("RECX_PATHS__DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECX_WORKER__PRODUCER_CLIENT", "librdkafka")
    monkeypatch.setenv("RECX_WORKER__PRODUCER_OPTIONS", '{"send_buffer_bytes": 1048576}')
    result = CliRunner().invoke(app, ["worker", "--metrics-port", "-1"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "send_buffer_bytes" in said and "librdkafka property" in said
    monkeypatch.setenv("RECX_WORKER__PRODUCER_OPTIONS", '{"batch.size": 65536}')
    KafkaClients(load_settings()).check_producer()  # a librdkafka property passes
