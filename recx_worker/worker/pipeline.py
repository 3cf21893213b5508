"""The explain core (``recx_worker.core``) for Kafka records: exactly one output per input record.

An explained record becomes an explanation-topic record, a rejected one a dead-letter record;
stage timings and fallbacks go to the worker's metrics. No Kafka I/O here.

The core runs on the caller's thread (``worker.core_processes = 0``) or in child processes
(``recx_worker.worker.core_process``); either way its outcomes are first ``encode``d where the
core ran (the explanation's JSON, what the record and the metrics need of it) and turned into
output records here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import structlog

from recx_worker.core import ExplainCore, Outcome, Rejected
from recx_worker.events import SkippedStage
from recx_worker.worker.records import H_EVENT_ID, InRecord, OutRecord, dead_letter_record

if TYPE_CHECKING:
    from recx_worker.config import Settings
    from recx_worker.metrics import WorkerMetrics
    from recx_worker.worker.core_process import CoreProcess

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class Explained:
    """An explained input, encoded: the ``ExplanationEvent`` JSON and what its record needs
    (small and cheap to pickle, unlike the ``ChainResult`` with its request and evidence)."""

    value: bytes
    key: bytes
    event_id: str
    explainer: str
    skipped: list[SkippedStage] = field(default_factory=list)


Encoded = Explained | Rejected


def encode(outcomes: Sequence[Outcome]) -> list[Encoded]:
    """Each explained outcome as its event's JSON; rejections as they are."""
    out: list[Encoded] = []
    for outcome in outcomes:
        if isinstance(outcome, Rejected):
            out.append(outcome)
            continue
        event = outcome.event
        out.append(
            Explained(
                value=event.model_dump_json().encode(),
                key=event.user_id.encode(),
                event_id=event.event_id,
                explainer=event.explainer,
                skipped=event.skipped,
            )
        )
    return out


class EncodedBatch(Protocol):
    """A micro-batch handed to the core; ``result`` blocks until it is explained."""

    def result(self) -> list[Encoded]: ...


@dataclass(slots=True)
class Deferred(Generic[T]):
    """Work for this process, done on the thread that asks for its result (the core of this
    process; test pipelines' ``submit``)."""

    compute: Callable[[], T]

    def result(self) -> T:
        return self.compute()


@dataclass(slots=True)
class PendingOutputs:
    """A batch of records handed to the core (``Pipeline.submit``); ``result`` gives their
    output records."""

    pipeline: Pipeline
    records: list[InRecord]
    batch: EncodedBatch

    def result(self) -> list[OutRecord]:
        encoded = self.batch.result()
        return [self.pipeline.output(r, e) for r, e in zip(self.records, encoded, strict=True)]


class Pipeline:
    """Turns consumed records into explanation or dead-letter records."""

    def __init__(
        self, settings: Settings, core: ExplainCore | CoreProcess, metrics: WorkerMetrics
    ) -> None:
        self.settings = settings
        self.core = core
        self.metrics = metrics
        core.on_stage = lambda stage, seconds: metrics.stage_latency.labels(stage).observe(seconds)

    @classmethod
    def from_settings(cls, settings: Settings, metrics: WorkerMetrics) -> Pipeline:
        """The explain core named by ``settings``: opened here (the evidence store and the
        explainer chain), or in ``worker.core_processes`` child processes."""
        if settings.worker.core_processes > 0:
            from recx_worker.worker.core_process import CoreProcess

            return cls(settings, CoreProcess(settings), metrics)
        return cls(settings, ExplainCore.open(settings), metrics)

    @property
    def batcher(self) -> Any:
        """The chain's deadline batcher (core processes: the latest snapshot of theirs), whose
        measurements the worker's metrics export; None when the chain has none."""
        if isinstance(self.core, ExplainCore):
            return getattr(self.core.chain, "batcher", None)
        return self.core.batcher

    @property
    def core_available(self) -> bool:
        """The core can take a batch now (core processes: not being restarted)."""
        return isinstance(self.core, ExplainCore) or self.core.available

    def warm_up(self) -> None:
        for name, reason in self.core.warm_up().items():
            log.warning("explainer_disabled", explainer=name, reason=reason)

    def close(self) -> None:
        self.core.close()

    def submit(self, records: list[InRecord]) -> PendingOutputs:
        """Hand ``records`` to the core: a core process starts on them at once (the caller
        polls and delivers meanwhile); the core of this process when the result is asked for."""
        values = [record.value or b"" for record in records]
        batch: EncodedBatch
        if isinstance(self.core, ExplainCore):
            core = self.core
            batch = Deferred(lambda: encode(core.process(values)))
        else:
            batch = self.core.submit(values)
        return PendingOutputs(self, records, batch)

    def process(self, records: list[InRecord]) -> list[OutRecord]:
        """One output per record, in order; never raises for bad input."""
        return self.submit(records).result()

    def output(self, record: InRecord, encoded: Encoded) -> OutRecord:
        """The output record of one input and its encoded outcome (fallbacks counted)."""
        kafka = self.settings.kafka
        for skipped in encoded.skipped:
            self.metrics.fallbacks.labels(skipped.explainer, skipped.reason).inc()
        if isinstance(encoded, Rejected):
            out = dead_letter_record(
                kafka.dlq_topic, record, encoded.rejection, worker_id=self.settings.worker.worker_id
            )
            out.event_id = encoded.event_id
            log.warning(
                "dead_letter",
                error_class=encoded.error_class,
                reason=encoded.reason,
                field=encoded.field,
                partition=record.partition,
                offset=record.offset,
            )
            return out
        return OutRecord(
            kind="explanation",
            topic=kafka.output_topic,
            key=encoded.key,
            value=encoded.value,
            headers=[(H_EVENT_ID, encoded.event_id.encode())],
            label=encoded.explainer,
            source=record,
            event_id=encoded.event_id,
        )
