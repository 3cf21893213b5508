"""``recx feedback``: consume explanations and feedback (one group), dead-letter bad feedback,
apply each poll to the ``FeedbackStore`` with its offsets, serve Prometheus metrics.

Both topics are keyed by user id; the store holds the offsets, so on every assignment the
consumer seeks to the store's position (Kafka's committed offsets are also written, best
effort, for lag monitoring only). Dead letters are acknowledged before the batch is applied.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from pydantic import ValidationError

from recx_worker.config import Settings
from recx_worker.events import ExplanationEvent
from recx_worker.feedback.store import Consumed, FeedbackStore
from recx_worker.validation import Rejection, validate_feedback
from recx_worker.worker.records import InRecord, dead_letter_record

log = structlog.get_logger(__name__)


class FeedbackMetrics:
    """Counters of consumed records by outcome, plus per-arm gauges read from the store."""

    def __init__(self, store_path: Any, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records = Counter(
            "recx_feedback_records",
            "Records applied by the feedback consumer, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store_path))


class _StoreCollector:
    """Reads the store on each scrape (its own connection), so gauges survive restarts."""

    def __init__(self, store_path: Any) -> None:
        self.store_path = store_path

    def collect(self):
        store = FeedbackStore(self.store_path)
        try:
            arms, tallies = store.arm_counts(), store.tallies()
        finally:
            store.close()
        shown = GaugeMetricFamily(
            "recx_experiment_shown",
            "Explanations with feedback, per arm",
            labels=["experiment", "arm"],
        )
        helpful = GaugeMetricFamily(
            "recx_experiment_helpful", "Explanations rated helpful", labels=["experiment", "arm"]
        )
        for arm in arms:
            shown.add_metric([arm.experiment, arm.arm], arm.shown)
            helpful.add_metric([arm.experiment, arm.arm], arm.helpful)
        other = GaugeMetricFamily(
            "recx_feedback_anomalies", "Duplicate, late, orphan, replayed feedback", labels=["kind"]
        )
        for name, n in tallies.items():
            other.add_metric([name], n)
        yield from (shown, helpful, other)


def parse(record: InRecord, settings: Settings) -> ExplanationEvent | Any:
    """An ``ExplanationEvent``, an ``ExplanationFeedback``, or a ``Rejection`` with the reason."""
    if record.topic == settings.feedback.topic:
        return validate_feedback(record.value or b"", max_bytes=settings.feedback.max_message_bytes)
    try:
        return ExplanationEvent.model_validate_json(record.value or b"")
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        return Rejection("InvalidExplanation", f"{first['loc']}: {first['msg']}")


class FeedbackConsumer:
    """The poll loop of ``recx feedback``; ``stop()`` ends it after the current batch."""

    def __init__(self, settings: Settings, *, client_id: str = "recx-feedback") -> None:
        self.settings = settings
        self.client_id = client_id
        self.store: FeedbackStore  # opened by run(), in the thread that uses it
        self.metrics = FeedbackMetrics(settings.feedback.store_path)
        self._stop = threading.Event()
        self.assigned: set[TopicPartition] = set()

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, on_batch: Callable[[dict[str, int]], None] | None = None) -> None:
        kafka = self.settings.kafka
        self.store = FeedbackStore(
            self.settings.feedback.store_path, late_after_s=self.settings.feedback.late_after_s
        )
        consumer = KafkaConsumer(
            **kafka.client_config(),
            client_id=self.client_id,
            group_id=self.settings.feedback.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=[
                RangePartitionAssignor
            ],  # co-partitioned topics stay together
        )
        producer = KafkaProducer(**kafka.client_config(), acks="all", enable_idempotence=True)
        consumer.subscribe(
            [kafka.output_topic, self.settings.feedback.topic],
            listener=_SeekToStore(self, consumer),
        )
        try:
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=500)
                records = [InRecord.from_consumer(r) for batch in polled.values() for r in batch]
                if not records:
                    continue
                done = self._apply(records, producer)
                for outcome, n in done.items():
                    self.metrics.records.labels(outcome).inc(n)
                consumer.commit_async(
                    {
                        tp: OffsetAndMetadata(
                            self.store.next_offset(tp.topic, tp.partition), "", -1
                        )
                        for tp in polled
                    }
                )
                if on_batch is not None:
                    on_batch(done)
        finally:
            consumer.close(autocommit=False)
            producer.close(timeout=10)
            self.store.close()

    def _apply(self, records: list[InRecord], producer: Any) -> dict[str, int]:
        parsed: list[Consumed] = []
        futures = []
        for record in records:
            event = parse(record, self.settings)
            if isinstance(event, Rejection):
                futures.append(producer.send(**self._dead_letter(record, event)))
                event = None
            parsed.append(Consumed(record.topic, record.partition, record.offset, event))
        if futures:
            producer.flush()
            for future in futures:
                future.get(timeout=30)  # acknowledged before the offsets move past it
        return self.store.apply(parsed, dead_letters=len(futures))

    def _dead_letter(self, record: InRecord, rejection: Rejection) -> dict[str, Any]:
        log.warning(
            "feedback_dead_letter", error_class=rejection.error_class, reason=rejection.reason
        )
        out = dead_letter_record(
            self.settings.feedback.dlq_topic, record, rejection, worker_id=self.client_id
        )
        return {"topic": out.topic, "key": out.key, "value": out.value, "headers": out.headers}


class _SeekToStore(ConsumerRebalanceListener):
    def __init__(self, owner: FeedbackConsumer, consumer: KafkaConsumer) -> None:
        self.owner, self.consumer = owner, consumer

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.owner.assigned -= set(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            position = self.owner.store.next_offset(tp.topic, tp.partition)
            if position is not None:
                self.consumer.seek(tp, position)
        self.owner.assigned |= set(assigned)
        log.info(
            "feedback_assigned", partitions=sorted(f"{t.topic}-{t.partition}" for t in assigned)
        )
