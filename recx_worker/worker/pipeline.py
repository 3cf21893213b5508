"""validate -> enrich -> explain for one micro-batch: exactly one output per input record."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

from recx_worker.chain import ChainResult, ExplainerChain, explanation_event
from recx_worker.enrich import EnrichFailure, enrich
from recx_worker.events import SourceRef
from recx_worker.validation import make_dead_letter, validate_recommendation
from recx_worker.worker.records import (
    H_EVENT_ID,
    InRecord,
    OutRecord,
    dead_letter_record,
    previous_attempts,
)

if TYPE_CHECKING:
    from recx_worker.config import Settings
    from recx_worker.metrics import WorkerMetrics

log = structlog.get_logger(__name__)


class Pipeline:
    """Turns consumed records into explanation or dead-letter records (no Kafka I/O here)."""

    def __init__(self, settings: Settings, chain: Any, store: Any, metrics: WorkerMetrics):
        self.settings = settings
        self.chain = chain
        self.store = store
        self.metrics = metrics

    @classmethod
    def from_settings(cls, settings: Settings, metrics: WorkerMetrics) -> Pipeline:
        """Open the evidence store and build the explainer chain named by ``settings``."""
        from recx_worker.retrieval.evidence import EvidenceStore

        store = EvidenceStore.open(settings.paths.data_dir, _existing(settings.paths.index_dir))
        if settings.experiments.enabled:
            from recx_worker.feedback.arms import ArmChains

            return cls(settings, ArmChains.from_settings(settings, store), store, metrics)
        return cls(settings, ExplainerChain.from_settings(settings, store), store, metrics)

    def warm_up(self) -> None:
        disabled = self.chain.warm_up()
        for name, reason in disabled.items():
            log.warning("explainer_disabled", explainer=name, reason=reason)

    def close(self) -> None:
        self.chain.close()

    def process(self, records: list[InRecord]) -> list[OutRecord]:
        """One output per record, in order; never raises for bad input."""
        cfg = self.settings.worker
        dlq = self.settings.kafka.dlq_topic
        out: dict[int, OutRecord] = {}

        def dead(i: int, raw: bytes | None, error_class: str, reason: str, fld: str | None):
            source = records[i]
            letter = make_dead_letter(
                raw,
                error_class=error_class,
                reason=reason,
                field=fld,
                worker_id=cfg.worker_id,
                source=SourceRef(
                    topic=source.topic, partition=source.partition, offset=source.offset
                ),
                attempts=previous_attempts(source) + 1,
            )
            out[i] = dead_letter_record(dlq, letter, source)
            log.warning(
                "dead_letter",
                error_class=error_class,
                reason=reason,
                field=fld,
                partition=source.partition,
                offset=source.offset,
            )

        t0 = time.perf_counter()
        valid: list[tuple[int, Any]] = []
        for i, record in enumerate(records):
            parsed = self._validate(record.value)
            if hasattr(parsed, "error_class"):
                dead(i, record.value, parsed.error_class, parsed.reason, parsed.field)
            else:
                valid.append((i, parsed))
        t1 = time.perf_counter()
        self.metrics.stage_latency.labels("validate").observe(t1 - t0)

        enriched = enrich([event for _, event in valid], self.store, self.settings.chain.max_words)
        requests: list[tuple[int, Any]] = []
        for (i, _), item in zip(valid, enriched, strict=True):
            if isinstance(item, EnrichFailure):
                dead(i, records[i].value, item.error_class, item.reason, item.field)
            else:
                requests.append((i, item))
        t2 = time.perf_counter()
        self.metrics.stage_latency.labels("enrich").observe(t2 - t1)

        outcomes = self.chain.explain([r for _, r in requests]) if requests else []
        t3 = time.perf_counter()
        self.metrics.stage_latency.labels("explain").observe(t3 - t2)
        for (i, _), outcome in zip(requests, outcomes, strict=True):
            for skipped in outcome.skipped:
                self.metrics.fallbacks.labels(skipped.explainer, skipped.reason).inc()
            if isinstance(outcome, ChainResult):
                event = explanation_event(outcome, **self.chain.tags(outcome.request))
                out[i] = OutRecord(
                    kind="explanation",
                    topic=self.settings.kafka.output_topic,
                    key=event.user_id.encode(),
                    value=event.model_dump_json().encode(),
                    headers=[(H_EVENT_ID, event.event_id.encode())],
                    label=outcome.explainer,
                    source=records[i],
                    event_id=event.event_id,
                )
            else:
                dead(i, records[i].value, outcome.error_class, outcome.reason, None)
                out[i].event_id = outcome.request.event.event_id
        return [out[i] for i in range(len(records))]

    def _validate(self, value: bytes | None) -> Any:
        cfg = self.settings.validation
        return validate_recommendation(
            value or b"", max_bytes=cfg.max_message_bytes, max_history=cfg.max_history
        )


def _existing(path: Any) -> Any:
    """``path`` if it holds an index manifest, else None (the store then embeds in memory)."""
    from pathlib import Path

    return path if path is not None and (Path(path) / "manifest.json").exists() else None
