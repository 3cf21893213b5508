"""The worker's Kafka clients, built from settings in one place.

``Worker`` asks a ``KafkaClients`` for its consumer and producer instead of building them, so
tests hand it fakes of the Kafka client (``tests/fake_kafka.py``) and run the rebalance paths
without a broker.

Recovery (docs/worker.md, "Recovery"): session and heartbeat come from ``worker.*``;
``worker.static_membership`` gives the consumer a ``group.instance.id`` (``recx-<worker_id>``)
so a replacement with the same id takes its partitions back at once, without waiting for the
dead member's session to expire. A static member does not send LeaveGroup when it closes
(kafka-python, like the Java client, leaves that to the session timeout), so ``leave_group``
removes it by instance id on a clean exit: partitions move at once then too.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from recx_worker.config import Settings

log = structlog.get_logger(__name__)


def wait_for_partitions(
    consumer: Any, topic: str, timeout_s: float, interval_s: float = 0.2
) -> set[int] | None:
    """The partitions of ``topic`` once the consumer's metadata knows them (it fetches
    metadata while asking), or ``None`` after ``timeout_s``.

    A consumer that joins its group before its metadata holds a freshly created topic is
    assigned nothing ("No partition metadata for topic"), and kafka-python 3.0 was seen not
    to rejoin for minutes after the metadata arrived: subscribe only once this returns.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = consumer.partitions_for_topic(topic)
        if found or time.monotonic() >= deadline:
            return set(found) if found else None
        time.sleep(interval_s)


def join_lost(consumer: Any) -> bool:
    """kafka-python 3.0.12 lost this consumer's rebalance: its JoinGroup -> SyncGroup attempt
    finished but the assignment was never applied, and it will not try again.

    The consumer's ``poll`` runs the join on the client's IO thread and gives up waiting when
    the poll's timeout ends (5 ms while the worker is busy). When the consumer is the group
    leader and the rejoin was caused by a metadata change, computing the new assignment already
    makes ``need_rejoin()`` false, so no later poll awaits the finished attempt: the consumer
    keeps no partitions, sends no heartbeats and the group goes empty (reproduced in about one
    start in four against a freshly created topic). Reads the coordinator's private state;
    False wherever that state is not there (another kafka-python version).
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or not getattr(coordinator, "rejoining", False):
        return False
    task = getattr(coordinator, "_join_task", False)
    if task is False or (task is not None and not getattr(task, "is_done", False)):
        return False  # unknown internals, or the attempt is still running
    return not coordinator.need_rejoin()


def group_instance_id(settings: Settings) -> str | None:
    """The consumer's ``group.instance.id``, or None for a dynamic member."""
    return f"recx-{settings.worker.worker_id}" if settings.worker.static_membership else None


def producer_client(settings: Settings) -> str:
    """The output producer ``worker.producer_client`` names; ``auto``: librdkafka, except
    kafka-python's for exactly-once (its transactions take the consumer's group metadata)
    and where ``kafka.client_options`` or ``worker.producer_options`` hold a kafka-python
    option librdkafka has no property for (a configuration written for kafka-python keeps
    working as it did)."""
    choice = settings.worker.producer_client
    if choice != "auto":
        return choice
    if settings.kafka.exactly_once:
        return "kafka-python"
    from recx_worker.worker.rdkafka import untranslatable

    options = settings.kafka.client_options | settings.worker.producer_options
    return "kafka-python" if untranslatable(options) else "librdkafka"


class KafkaClients:
    """Creates the consumer and producer one ``recx worker`` uses (kafka-python)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def consumer(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(**self.consumer_config())

    def consumer_config(self) -> dict[str, Any]:
        kafka, cfg = self.settings.kafka, self.settings.worker
        config: dict[str, Any] = {
            **kafka.client_config(),
            "client_id": f"recx-{cfg.worker_id}",
            "group_id": kafka.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": cfg.auto_offset_reset,
            "isolation_level": "read_committed",
            "max_poll_records": cfg.max_poll_records,
            "max_poll_interval_ms": cfg.max_poll_interval_ms,
            "session_timeout_ms": cfg.session_timeout_ms,
            "heartbeat_interval_ms": cfg.heartbeat_interval_ms,
            "metadata_max_age_ms": cfg.metadata_max_age_ms,
        }
        if (instance := group_instance_id(self.settings)) is not None:
            config["group_instance_id"] = instance
        return config | cfg.consumer_options

    def producer(self) -> Any:
        """The output producer (``worker.producer_client``): idempotent, ``acks=all``."""
        kafka, cfg = self.settings.kafka, self.settings.worker
        if producer_client(self.settings) == "librdkafka":
            from recx_worker.worker.rdkafka import RdKafkaProducer

            return RdKafkaProducer(**self._rdkafka_options())
        from kafka import KafkaProducer

        options: dict[str, Any] = {
            **kafka.client_config(),
            **self._producer_basics(),
            **cfg.producer_options,
        }
        if kafka.exactly_once:
            options["transactional_id"] = f"recx-{kafka.group_id}-{cfg.worker_id}"
            options["transaction_timeout_ms"] = cfg.transaction_timeout_ms
        producer = KafkaProducer(**options)
        if kafka.exactly_once:
            producer.init_transactions()  # fences a previous instance with the same id
        return producer

    def check_producer(self) -> None:
        """Raise ``ValueError`` now for producer options the chosen client cannot take (a
        kafka-python name for librdkafka), instead of after the worker warmed up."""
        if producer_client(self.settings) == "librdkafka":
            from recx_worker.worker.rdkafka import rdkafka_config

            rdkafka_config(self._rdkafka_options())

    def _producer_basics(self) -> dict[str, Any]:
        cfg = self.settings.worker
        return {
            "client_id": f"recx-{cfg.worker_id}",
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": cfg.linger_ms,
        }

    def _rdkafka_options(self) -> dict[str, Any]:
        """The connection, ``kafka.client_options`` (translated to librdkafka properties: a
        client certificate must not be dropped) and the producer's own options."""
        return {
            **self.settings.kafka.client_config(),
            **self._producer_basics(),
            **self.settings.worker.producer_options,
        }

    def leave_group(self, timeout_s: float) -> None:
        """After ``consumer.close()``: a static member leaves by instance id (dynamic members
        already left in ``close``). Best effort: the session timeout is the fallback."""
        instance = group_instance_id(self.settings)
        if instance is None:
            return
        from kafka.admin import KafkaAdminClient, MemberToRemove
        from kafka.errors import KafkaError

        group = self.settings.kafka.group_id
        try:
            admin = KafkaAdminClient(
                **self.settings.kafka.client_config(),
                client_id=f"recx-{self.settings.worker.worker_id}-leave",
                request_timeout_ms=max(int(timeout_s * 1000), 1000),
            )
        except KafkaError as exc:
            log.warning("leave_group_failed", group_id=group, error=f"{type(exc).__name__}")
            return
        try:
            results = admin.remove_group_members(
                group, [MemberToRemove(group_instance_id=instance, reason="recx worker exit")]
            )
            errors = {str(k): v.__name__ for k, v in results.items() if v.__name__ != "NoError"}
            log.info("left_group", group_id=group, group_instance_id=instance, errors=errors)
        except KafkaError as exc:
            log.warning("leave_group_failed", group_id=group, error=f"{type(exc).__name__}: {exc}")
        finally:
            admin.close()
