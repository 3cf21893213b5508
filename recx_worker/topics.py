"""Create the worker's topics (input, output, dead-letter) with the configured partitions and
replication (``kafka.partitions``, ``kafka.replication_factor``); ``recx topics create``.

A topic that exists already is left as it is and reported with its partition count, and a
warning when that is fewer than configured (more partitions would re-map keys, so recx never
adds them itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from recx_worker.config import KafkaSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TopicState:
    """One topic after ``ensure_topics``: created now or found, and its partitions."""

    name: str
    role: str
    partitions: int
    replication_factor: int
    created: bool

    def describe(self) -> str:
        action = "created" if self.created else "exists"
        return (
            f"{self.role} topic {self.name}: {action}, {self.partitions} partitions, "
            f"replication {self.replication_factor}"
        )


def _existing(admin: object, names: list[str]) -> dict[str, tuple[int, int]]:
    """``{name: (partitions, replication)}`` for the topics of ``names`` that exist."""
    present = set(admin.list_topics())  # type: ignore[attr-defined]
    wanted = [n for n in names if n in present]
    if not wanted:
        return {}
    found: dict[str, tuple[int, int]] = {}
    for topic in admin.describe_topics(wanted):  # type: ignore[attr-defined]
        parts = topic.get("partitions") or []
        replicas = len(parts[0].get("replica_nodes") or []) if parts else 0
        found[topic["name"]] = (len(parts), replicas)
    return found


def ensure_topics(kafka: KafkaSettings, *, timeout_ms: int = 30_000) -> list[TopicState]:
    """Create the missing input/output/dead-letter topics; report every one (and log it)."""
    from kafka.admin import KafkaAdminClient

    roles = {"input": kafka.input_topic, "output": kafka.output_topic, "dlq": kafka.dlq_topic}
    admin = KafkaAdminClient(**kafka.client_config(), client_id="recx-topics")
    try:
        before = _existing(admin, list(roles.values()))
        missing = [name for name in dict.fromkeys(roles.values()) if name not in before]
        if missing:
            spec = {
                "num_partitions": kafka.partitions,
                "replication_factor": kafka.replication_factor,
            }
            admin.create_topics(
                {name: dict(spec) for name in missing},
                timeout_ms=timeout_ms,
                wait_for_metadata=True,
            )
        after = _existing(admin, list(roles.values()))
    finally:
        admin.close()
    states = []
    for role, name in roles.items():
        partitions, replicas = after.get(name, (0, 0))
        state = TopicState(name, role, partitions, replicas, created=name not in before)
        log.info(
            "topic_created" if state.created else "topic_exists",
            topic=name,
            role=role,
            partitions=partitions,
            replication_factor=replicas,
        )
        if partitions < kafka.partitions:
            log.warning(
                "topic_has_fewer_partitions",
                topic=name,
                partitions=partitions,
                configured=kafka.partitions,
            )
        states.append(state)
    return states
