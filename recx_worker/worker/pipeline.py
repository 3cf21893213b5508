"""The explain core (``recx_worker.core``) for Kafka records: exactly one output per input record.

An explained record becomes an explanation-topic record, a rejected one a dead-letter record;
stage timings and fallbacks go to the worker's metrics. No Kafka I/O here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from recx_worker.core import ExplainCore, Outcome, Rejected
from recx_worker.worker.records import H_EVENT_ID, InRecord, OutRecord, dead_letter_record

if TYPE_CHECKING:
    from recx_worker.config import Settings
    from recx_worker.metrics import WorkerMetrics

log = structlog.get_logger(__name__)


class Pipeline:
    """Turns consumed records into explanation or dead-letter records."""

    def __init__(self, settings: Settings, core: ExplainCore, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.core = core
        self.metrics = metrics
        core.on_stage = lambda stage, seconds: metrics.stage_latency.labels(stage).observe(seconds)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: WorkerMetrics) -> Pipeline:
        """Open the evidence store and build the explainer chain named by ``settings``."""
        return cls(settings, ExplainCore.open(settings), metrics)

    def warm_up(self) -> None:
        for name, reason in self.core.warm_up().items():
            log.warning("explainer_disabled", explainer=name, reason=reason)

    def close(self) -> None:
        self.core.close()

    def process(self, records: list[InRecord]) -> list[OutRecord]:
        """One output per record, in order; never raises for bad input."""
        outcomes = self.core.process([record.value or b"" for record in records])
        return [self._output(r, o) for r, o in zip(records, outcomes, strict=True)]

    def _output(self, record: InRecord, outcome: Outcome) -> OutRecord:
        kafka = self.settings.kafka
        for skipped in outcome.skipped:
            self.metrics.fallbacks.labels(skipped.explainer, skipped.reason).inc()
        if isinstance(outcome, Rejected):
            out = dead_letter_record(
                kafka.dlq_topic, record, outcome.rejection, worker_id=self.settings.worker.worker_id
            )
            out.event_id = outcome.event_id
            log.warning(
                "dead_letter",
                error_class=outcome.error_class,
                reason=outcome.reason,
                field=outcome.field,
                partition=record.partition,
                offset=record.offset,
            )
            return out
        event = outcome.event
        return OutRecord(
            kind="explanation",
            topic=kafka.output_topic,
            key=event.user_id.encode(),
            value=event.model_dump_json().encode(),
            headers=[(H_EVENT_ID, event.event_id.encode())],
            label=event.explainer,
            source=record,
            event_id=event.event_id,
        )
