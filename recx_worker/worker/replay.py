"""``recx dlq replay``: re-publish dead letters to the topic they came from.

Reads the dead-letter topic up to its end offsets at the start (letters written during the
replay, e.g. inputs that fail again, wait for the next replay), keeps those matching the
filters, and re-publishes each one's original bytes with its original key. Headers record
where the replayed message came from and how often it was dead-lettered, so a message that
fails again carries ``attempts + 1``. With ``group``, the replay resumes after the last
replayed letter and commits its position once the re-published messages are acknowledged.
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from recx_worker.events import DeadLetter
from recx_worker.worker.records import H_ATTEMPTS, H_ORIGINAL_TOPIC, H_REPLAYED_FROM

if TYPE_CHECKING:
    from recx_worker.config import Settings


class ReplayError(RuntimeError):
    """The replay cannot run (topic missing, broker unreachable)."""


@dataclass
class ReplayFilter:
    """Which dead letters to replay: any of ``reasons`` (substring of the error class or the
    reason, case-insensitive) and any of ``error_classes`` (exact); empty = all."""

    reasons: list[str] = field(default_factory=list)
    error_classes: list[str] = field(default_factory=list)

    def matches(self, letter: DeadLetter) -> bool:
        if self.error_classes and letter.error_class not in self.error_classes:
            return False
        if self.reasons:
            haystack = f"{letter.error_class} {letter.reason}".lower()
            return any(r.lower() in haystack for r in self.reasons)
        return True


@dataclass
class ReplayStats:
    read: int = 0
    matched: int = 0
    republished: int = 0
    unreadable: int = 0  # not a DeadLetter JSON body
    no_original: int = 0  # the original was too large to keep
    by_error_class: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "matched": self.matched,
            "republished": self.republished,
            "unreadable": self.unreadable,
            "no_original": self.no_original,
            "by_error_class": dict(self.by_error_class),
            "targets": dict(self.targets),
        }


def original_bytes(letter: DeadLetter) -> bytes | None:
    """The exact bytes that were dead-lettered, or None when they were not kept."""
    if letter.original_base64 is not None:
        return base64.b64decode(letter.original_base64)
    if letter.original is not None:
        return letter.original.encode("utf-8")
    return None


def replay(
    settings: Settings,
    flt: ReplayFilter,
    *,
    to_topic: str | None = None,
    group_id: str | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    timeout_s: float = 60.0,
) -> ReplayStats:
    """Replay matching dead letters of ``settings.kafka.dlq_topic``; see the module docstring."""
    kafka = settings.kafka
    client = kafka.client_config()
    consumer = KafkaConsumer(
        **client,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = None if dry_run else KafkaProducer(**client, acks="all", enable_idempotence=True)
    stats = ReplayStats()
    try:
        partitions = consumer.partitions_for_topic(kafka.dlq_topic)
        if not partitions:
            raise ReplayError(f"dead-letter topic {kafka.dlq_topic!r} does not exist")
        tps = [TopicPartition(kafka.dlq_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        if group_id is None:
            consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        done_offsets: dict[TopicPartition, int] = {}
        full = False  # --limit reached: stop, so --group resumes after the last replayed
        while not full and not _caught_up(consumer, tps, ends):
            if time.monotonic() > deadline:
                raise ReplayError(f"timed out after {timeout_s:.0f} s reading {kafka.dlq_topic}")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    full = limit is not None and stats.republished >= limit
                    if full or record.offset >= ends[tp]:
                        break
                    done_offsets[tp] = record.offset + 1
                    _one(record, flt, producer, kafka.input_topic, to_topic, stats, dry_run)
        if producer is not None:
            producer.flush()
        if group_id is not None and not dry_run and done_offsets:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in done_offsets.items()})
    finally:
        consumer.close(autocommit=False)
        if producer is not None:
            producer.close()
    return stats


def _caught_up(consumer: Any, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
    return all(consumer.position(tp) >= ends[tp] for tp in tps)


def _one(
    record: Any,
    flt: ReplayFilter,
    producer: Any,
    default_topic: str,
    to_topic: str | None,
    stats: ReplayStats,
    dry_run: bool,
) -> None:
    stats.read += 1
    try:
        letter = DeadLetter.model_validate_json(record.value or b"")
    except (ValidationError, json.JSONDecodeError):
        stats.unreadable += 1
        return
    if not flt.matches(letter):
        return
    stats.matched += 1
    raw = original_bytes(letter)
    if raw is None:
        stats.no_original += 1
        return
    headers = dict(record.headers or [])
    source_topic = letter.source.topic if letter.source is not None else None
    topic = to_topic or source_topic or _decode(headers.get(H_ORIGINAL_TOPIC)) or default_topic
    stats.by_error_class[letter.error_class] += 1
    stats.targets[topic] += 1
    if dry_run:
        return
    producer.send(
        topic,
        value=raw,
        key=record.key,
        headers=[
            (H_REPLAYED_FROM, f"{record.topic}:{record.partition}:{record.offset}".encode()),
            (H_ATTEMPTS, str(letter.attempts).encode()),
        ],
    )
    stats.republished += 1


def _decode(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None
