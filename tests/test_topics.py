"""`recx topics create` against a real broker: configured partitions, idempotent, logged."""

from __future__ import annotations

import uuid
from pathlib import Path

from kafka.admin import KafkaAdminClient
from typer.testing import CliRunner

from recx_worker.cli import app


def test_topics_create_makes_the_three_topics_once(kafka_bootstrap: str, tmp_path: Path):
    stem = f"topics-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "recx.toml"
    config.write_text(
        "[kafka]\n"
        f'bootstrap_servers = "{kafka_bootstrap}"\n'
        f'input_topic = "{stem}.in"\n'
        f'output_topic = "{stem}.out"\n'
        f'dlq_topic = "{stem}.in.dlq"\n'
        "partitions = 4\n"
        "replication_factor = 1\n"
    )
    runner = CliRunner()
    first = runner.invoke(app, ["topics", "create", "--config", str(config)])
    assert first.exit_code == 0, first.output
    assert f"input topic {stem}.in: created, 4 partitions, replication 1" in first.output
    assert f"dlq topic {stem}.in.dlq: created, 4 partitions" in first.output

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","))
    try:
        described = admin.describe_topics([f"{stem}.in", f"{stem}.out", f"{stem}.in.dlq"])
    finally:
        admin.close()
    assert {t["name"]: len(t["partitions"]) for t in described} == {
        f"{stem}.in": 4,
        f"{stem}.out": 4,
        f"{stem}.in.dlq": 4,
    }

    # Again, asking for more: existing topics are left alone and the shortfall is reported.
    again = runner.invoke(app, ["topics", "create", "--config", str(config), "--partitions", "6"])
    assert again.exit_code == 0, again.output
    assert f"output topic {stem}.out: exists, 4 partitions" in again.output
    assert "fewer partitions than configured (6)" in again.output


def test_topics_create_unreachable_broker_is_one_clear_error(tmp_path: Path):
    result = CliRunner().invoke(
        app,
        ["topics", "create", "--bootstrap", "127.0.0.1:1"],
        env={
            "RECX_KAFKA__CLIENT_OPTIONS": "request_timeout_ms=3000,api_version_auto_timeout_ms=2000"
        },
    )
    assert result.exit_code == 1
    assert "error: cannot create topics on 127.0.0.1:1" in result.output


def test_a_consumer_waits_until_its_metadata_knows_a_fresh_topic(kafka_bootstrap: str):
    """The worker subscribes only once its consumer's metadata lists the input topic's
    partitions (joining earlier got it an empty assignment that was not repaired)."""
    from kafka import KafkaConsumer
    from kafka.admin import NewTopic

    from recx_worker.worker.clients import wait_for_partitions

    topic = f"fresh-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)  # metadata before the topic
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        consumer.topics()
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        assert wait_for_partitions(consumer, topic, timeout_s=30) == {0, 1, 2}
    finally:
        consumer.close()
        admin.close()
