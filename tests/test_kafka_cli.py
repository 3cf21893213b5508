"""`recx kafka up|status|down` as a user runs it, including on a machine without Java/Maven."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from recx_worker.devtools.kafka_local.cluster import free_ports, port_in_use

BIN = Path(sys.executable).parent
RECX = [str(BIN / "recx")] if (BIN / "recx").exists() else [sys.executable, "-m", "recx_worker.cli"]


def recx(*args: str, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run(
        [*RECX, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a machine without java, mvn, KAFKA_HOME and a Kafka jar cache."""
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_HOME", "JAVA_HOME"}}
    env["PATH"] = str(BIN)
    env["RECX_KAFKA_CACHE"] = str(tmp_path / "empty-cache")
    assert shutil.which("java", path=env["PATH"]) is None
    assert shutil.which("mvn", path=env["PATH"]) is None
    return env | extra


def test_up_without_java_or_maven_explains_what_is_missing(tmp_path) -> None:
    result = recx("kafka", "up", "--data-dir", str(tmp_path / "k"), env=bare_env(tmp_path))
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in message
    assert "Java" in message and "Maven" in message
    assert "KAFKA_HOME" in message and "RECX_KAFKA__BOOTSTRAP_SERVERS" in message
    assert not (tmp_path / "k" / "node-1").exists(), "nothing should be started or formatted"


def test_up_with_kafka_home_but_no_java_names_java(tmp_path) -> None:
    home = tmp_path / "kafka_2.13-4.1.1"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "kafka_2.13-4.1.1.jar").touch()
    env = bare_env(tmp_path, KAFKA_HOME=str(home))
    result = recx("kafka", "up", "--data-dir", str(tmp_path / "k"), env=env)
    message = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in message
    assert "Java" in message and "Maven" not in message


def test_kafka_home_that_is_not_a_distribution_is_rejected(tmp_path) -> None:
    if shutil.which("java") is None:
        pytest.fail("java is required on this machine for the Kafka tests")
    env = {**os.environ, "KAFKA_HOME": str(tmp_path)}
    result = recx("kafka", "up", "--data-dir", str(tmp_path / "k"), env=env)
    assert result.returncode != 0
    assert "not an Apache Kafka distribution" in result.stderr


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def two_free_ports() -> int:
    for _ in range(20):
        (port,) = free_ports(1)
        if port < 65535 and not port_in_use(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.kafka
def test_up_status_down_keeps_data_and_stops_only_its_pid(tmp_path) -> None:
    data_dir = str(tmp_path / "kafka")
    port = two_free_ports()
    up = recx("kafka", "up", "--data-dir", data_dir, "--port", str(port))
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip()
    assert bootstrap == f"127.0.0.1:{port}"
    try:
        status = recx("kafka", "status", "--data-dir", data_dir, "--json")
        assert status.returncode == 0, status.stderr
        (node,) = json.loads(status.stdout)["nodes"]
        assert node["alive"] and node["port"] == port
        pid = node["pid"]
        assert "kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")

        producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
        producer.send("cli-check", b"kept").get(timeout=30)
        producer.close()
    finally:
        down = recx("kafka", "down", "--data-dir", data_dir)
    assert down.returncode == 0, down.stderr
    assert not running(pid)
    assert recx("kafka", "status", "--data-dir", data_dir).returncode == 3  # stopped

    again = recx("kafka", "up", "--data-dir", data_dir)  # same dir, stored port, same log
    try:
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == bootstrap
        consumer = KafkaConsumer(
            "cli-check",
            bootstrap_servers=[bootstrap],
            auto_offset_reset="earliest",
            consumer_timeout_ms=15_000,
        )
        values = [r.value for r in consumer]
        consumer.close()
        assert values == [b"kept"]
    finally:
        assert recx("kafka", "down", "--data-dir", data_dir).returncode == 0


@pytest.mark.kafka  # starts a JVM
def test_broker_that_cannot_start_raises_with_its_log(tmp_path) -> None:
    from recx_worker.devtools.kafka_local import KafkaSetupError, LocalKafka

    cluster = LocalKafka(tmp_path / "k", jvm_opts="-XX:+NoSuchJvmFlag")
    with pytest.raises(KafkaSetupError, match="NoSuchJvmFlag"):
        cluster.start()
    assert not any(node.alive for node in cluster.status())
