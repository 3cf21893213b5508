"""What the worker consumes and produces: input records, output records, dead-letter headers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import TopicPartition

from recx_worker.events import SourceRef
from recx_worker.validation import Rejection, dead_letter

# Provenance headers of every dead letter (Spring Kafka's conventions, recx prefix).
H_ORIGINAL_TOPIC = "recx-dlt-original-topic"
H_ORIGINAL_PARTITION = "recx-dlt-original-partition"
H_ORIGINAL_OFFSET = "recx-dlt-original-offset"
H_ERROR_CLASS = "recx-dlt-exception-class"
H_ERROR_REASON = "recx-dlt-exception-message"
H_WORKER_ID = "recx-dlt-worker-id"
H_ATTEMPTS = "recx-dlt-attempts"
# Set on re-published dead letters by ``recx dlq replay``.
H_REPLAYED_FROM = "recx-replayed-from"
H_EVENT_ID = "recx-event-id"

MAX_HEADER_REASON = 1000


@dataclass(slots=True)
class InRecord:
    """One consumed record, reduced to what the pipeline needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @classmethod
    def from_consumer(cls, record: Any) -> InRecord:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            timestamp_ms=record.timestamp if record.timestamp and record.timestamp > 0 else None,
            headers=list(record.headers or []),
        )


@dataclass(slots=True)
class OutRecord:
    """One output of one input record: an explanation or a dead letter."""

    kind: Literal["explanation", "dead_letter"]
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    label: str  # explainer name (explanations) or error class (dead letters)
    source: InRecord
    event_id: str | None = None


def dead_letter_record(
    topic: str, source: InRecord, rejection: Rejection, *, worker_id: str
) -> OutRecord:
    """The dead-letter topic record for ``source``: the ``DeadLetter`` JSON body (original bytes,
    reason, provenance, attempts) and Spring-style provenance headers."""
    letter = dead_letter(
        source.value,
        rejection,
        worker_id=worker_id,
        source=SourceRef(topic=source.topic, partition=source.partition, offset=source.offset),
        attempts=previous_attempts(source) + 1,
    )
    headers = [
        (H_ORIGINAL_TOPIC, source.topic.encode()),
        (H_ORIGINAL_PARTITION, str(source.partition).encode()),
        (H_ORIGINAL_OFFSET, str(source.offset).encode()),
        (H_ERROR_CLASS, letter.error_class.encode()),
        (H_ERROR_REASON, letter.reason[:MAX_HEADER_REASON].encode()),
        (H_WORKER_ID, letter.worker_id.encode()),
        (H_ATTEMPTS, str(letter.attempts).encode()),
    ]
    return OutRecord(
        kind="dead_letter",
        topic=topic,
        key=source.key,
        value=letter.model_dump_json().encode(),
        headers=headers,
        label=letter.error_class,
        source=source,
    )


def previous_attempts(source: InRecord) -> int:
    """How often this input was dead-lettered before (set by ``recx dlq replay``)."""
    raw = source.header(H_ATTEMPTS)
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0
