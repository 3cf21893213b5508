"""Shared pytest fixtures: a real local Apache Kafka (KRaft) for integration tests.

- ``kafka_bootstrap`` (session, str): a single broker started once per session, or the
  existing cluster named by ``RECX_TEST_BOOTSTRAP``.
- ``kafka_broker`` (``LocalKafka``): that single broker, for tests that restart it.
- ``kafka_cluster`` (``LocalKafka``, 3 nodes): for tests marked ``cluster``/``slow``.
- ``make_topic(partitions=..)``: creates a uniquely named topic and returns its name.

A broker that cannot start fails the tests that need it (never a silent skip).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from recx_worker.devtools.kafka_local import KafkaSetupError, LocalKafka

EXTERNAL_BOOTSTRAP = os.environ.get("RECX_TEST_BOOTSTRAP")
# How long a broker may take to start (or restart) before its test fails: raise it on a
# machine so busy that a JVM needs minutes.
STARTUP_S = float(os.environ.get("RECX_TEST_KAFKA_STARTUP_S", 120))
KAFKA_FIXTURES = {"kafka_bootstrap", "kafka_broker", "make_topic"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the Kafka fixtures they use, so ``-m "not cluster"`` etc. work."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)
        if "kafka_cluster" in used:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)


def _start(cluster: LocalKafka, what: str) -> LocalKafka:
    try:
        return cluster.start()
    except KafkaSetupError as exc:
        pytest.fail(f"Could not start the {what} for the tests:\n{exc}", pytrace=False)


def _heal(cluster: LocalKafka) -> None:
    """Restart nodes a test left stopped, so the next test sees a whole cluster."""
    for node in cluster.status():
        if not node.alive:
            cluster.start_node(node.node_id)


@pytest.fixture(scope="session")
def _kafka_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka | None]:
    if EXTERNAL_BOOTSTRAP:
        yield None
        return
    broker = _start(
        LocalKafka(tmp_path_factory.mktemp("kafka-1node"), nodes=1, startup_timeout_s=STARTUP_S),
        "Kafka broker",
    )
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(_kafka_single: LocalKafka | None) -> str:
    """``host:port`` of a running Kafka (the session broker or ``RECX_TEST_BOOTSTRAP``)."""
    if _kafka_single is None:
        assert EXTERNAL_BOOTSTRAP
        return EXTERNAL_BOOTSTRAP
    return _kafka_single.bootstrap


@pytest.fixture
def kafka_broker(_kafka_single: LocalKafka | None) -> Iterator[LocalKafka]:
    """The session's single broker as an object (``stop_node(1)``/``start_node(1)``)."""
    if _kafka_single is None:
        pytest.skip("RECX_TEST_BOOTSTRAP names an external cluster; this test restarts brokers")
    yield _kafka_single
    _heal(_kafka_single)


@pytest.fixture(scope="session")
def _kafka_three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    cluster = LocalKafka(
        tmp_path_factory.mktemp("kafka-3node"), nodes=3, startup_timeout_s=STARTUP_S
    )
    yield _start(cluster, "3-node Kafka cluster")
    # All three get SIGTERM at once; the last broker's controlled shutdown can find no
    # controller left and wait for the grace: its data is thrown away, so 5 s, not 30 s.
    cluster.stop(grace_s=5)


@pytest.fixture
def kafka_cluster(_kafka_three: LocalKafka) -> LocalKafka:
    """A 3-node KRaft cluster (RF 3, min ISR 2); nodes a test stopped are restarted first."""
    _heal(_kafka_three)
    return _kafka_three


@pytest.fixture
def make_topic(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``make_topic(partitions=1, *, bootstrap=None, replication_factor=-1, configs=None)``.

    Creates a fresh topic named after the test (on ``kafka_bootstrap`` unless ``bootstrap`` is
    given, e.g. ``kafka_cluster.bootstrap``) and waits until every partition has a leader.
    """
    from kafka.admin import KafkaAdminClient

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]

    def create(
        partitions: int = 1,
        *,
        bootstrap: str | None = None,
        replication_factor: int = -1,
        configs: dict[str, str] | None = None,
        prefix: str | None = None,
    ) -> str:
        servers = bootstrap or request.getfixturevalue("kafka_bootstrap")
        name = f"{prefix or stem}-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=servers.split(","), client_id="recx-tests")
        try:
            spec = {"num_partitions": partitions, "replication_factor": replication_factor}
            admin.create_topics(
                {name: spec | {"configs": configs or {}}}, timeout_ms=30_000, wait_for_metadata=True
            )
        finally:
            admin.close()
        return name

    return create


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def worker_data(tmp_path_factory) -> tuple[Path, Path]:
    """A prepared-data directory and its index from the tiny review fixture (built once)."""
    from worker_support import prepared_tiny

    return prepared_tiny(tmp_path_factory.getbasetemp() / "worker-data")
