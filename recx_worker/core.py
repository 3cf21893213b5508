"""The explain pipeline without Kafka: input in, ``ChainResult`` ("explained") or ``Rejected`` out.

One input (message bytes, or an already parsed ``RecommendationEvent``) goes
validate -> enrich -> explainer chain (guard and fallback inside) and ends as exactly one of:

- ``ChainResult``: explained; ``result.event`` is the ``ExplanationEvent`` to publish;
- ``Rejected``: not explained, with the error class, reason and field a dead letter carries.

The worker (``recx_worker.worker.pipeline``, adding Kafka records), ``recx explain`` (adding
JSON Lines files) and ``recx eval`` (replaying explainer outputs) all run this one core.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from recx_worker.chain import ChainFailure, ChainResult, ExplainerChain
from recx_worker.config import ChainSettings, ValidationSettings
from recx_worker.enrich import EnrichFailure, enrich
from recx_worker.events import RecommendationEvent, SkippedStage
from recx_worker.explainer import EvidenceSource, ExplainerContext, ExplainRequest
from recx_worker.validation import Rejection, validate_recommendation

if TYPE_CHECKING:
    from recx_worker.config import Settings

Input = bytes | str | RecommendationEvent
StageTimer = Callable[[str, float], None]


@dataclass(slots=True)
class Rejected:
    """An input that gets no explanation: why, and the stages tried (when any were)."""

    rejection: Rejection
    event_id: str | None = None
    skipped: list[SkippedStage] = field(default_factory=list)

    @property
    def error_class(self) -> str:
        return self.rejection.error_class

    @property
    def reason(self) -> str:
        return self.rejection.reason

    @property
    def field(self) -> str | None:
        return self.rejection.field


Outcome = ChainResult | Rejected


class ExplainCore:
    """validate -> enrich -> explain; see the module docstring. Never raises for bad input."""

    def __init__(
        self,
        chain: ExplainerChain,
        evidence: EvidenceSource,
        *,
        chain_settings: ChainSettings | None = None,
        limits: ValidationSettings | None = None,
        on_stage: StageTimer | None = None,
    ) -> None:
        self.chain = chain
        self.evidence = evidence
        self.chain_settings = chain_settings or ChainSettings()
        self.limits = limits or ValidationSettings()
        self.on_stage = on_stage

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        data_dir: Path | None = None,
        index_dir: Path | None = None,
        on_stage: StageTimer | None = None,
    ) -> ExplainCore:
        """The evidence store of ``settings.paths`` (or the given folders; no index manifest
        means embeddings in memory) and the chain named by ``settings.chain``."""
        from recx_worker.retrieval.evidence import EvidenceStore

        data_dir = data_dir or settings.paths.data_dir
        index_dir = index_dir or settings.paths.index_dir
        has_index = index_dir is not None and (Path(index_dir) / "manifest.json").exists()
        store = EvidenceStore.open(data_dir, index_dir if has_index else None)
        chain = ExplainerChain.from_settings(
            settings, ExplainerContext.from_settings(settings, store)
        )
        return cls(
            chain,
            store,
            chain_settings=settings.chain,
            limits=settings.validation,
            on_stage=on_stage,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def warm_up(self) -> dict[str, str]:
        """Warm the chain; returns ``{explainer: why}`` for stages disabled on the way."""
        return self.chain.warm_up()

    def close(self) -> None:
        self.chain.close()

    def __enter__(self) -> ExplainCore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the steps (module functions below, so a caller can run one step alone) -------------
    def admit(self, item: Input) -> RecommendationEvent | Rejected:
        return admit(item, self.limits)

    def requests(self, events: Sequence[RecommendationEvent]) -> list[ExplainRequest | Rejected]:
        return prepare(events, self.evidence, self.chain_settings)

    def explain(self, requests: Sequence[ExplainRequest]) -> list[Outcome]:
        return explain(self.chain, requests)

    def process(self, inputs: Sequence[Input]) -> list[Outcome]:
        """One outcome per input, in order: the whole pipeline for one micro-batch."""
        t0 = time.perf_counter()
        outcomes: list[Outcome | None] = [None] * len(inputs)
        events: list[tuple[int, RecommendationEvent]] = []
        for i, item in enumerate(inputs):
            admitted = self.admit(item)
            if isinstance(admitted, Rejected):
                outcomes[i] = admitted
            else:
                events.append((i, admitted))
        t1 = self._timed("validate", t0)
        requests: list[tuple[int, ExplainRequest]] = []
        for (i, _), request in zip(events, self.requests([e for _, e in events]), strict=True):
            if isinstance(request, Rejected):
                outcomes[i] = request
            else:
                requests.append((i, request))
        t2 = self._timed("enrich", t1)
        for (i, _), outcome in zip(requests, self.explain([r for _, r in requests]), strict=True):
            outcomes[i] = outcome
        self._timed("explain", t2)
        assert all(o is not None for o in outcomes)
        return outcomes  # type: ignore[return-value]

    def _timed(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        if self.on_stage is not None:
            self.on_stage(stage, now - since)
        return now


def admit(item: Input, limits: ValidationSettings) -> RecommendationEvent | Rejected:
    """A parsed event as it is; bytes/text validated (``Rejected`` says what is wrong)."""
    if isinstance(item, RecommendationEvent):
        return item
    parsed = validate_recommendation(
        item, max_bytes=limits.max_message_bytes, max_history=limits.max_history
    )
    return Rejected(parsed) if isinstance(parsed, Rejection) else parsed


def prepare(
    events: Sequence[RecommendationEvent], evidence: EvidenceSource, chain: ChainSettings
) -> list[ExplainRequest | Rejected]:
    """Each event with its evidence, or ``Rejected`` (e.g. an unknown item)."""
    out: list[ExplainRequest | Rejected] = []
    for item in enrich(events, evidence, chain.max_words, k=chain.evidence_k):
        if isinstance(item, EnrichFailure):
            rejection = Rejection(item.error_class, item.reason, item.field)
            out.append(Rejected(rejection, item.event.event_id))
        else:
            out.append(item)
    return out


def explain(chain: ExplainerChain, requests: Sequence[ExplainRequest]) -> list[Outcome]:
    """The chain's answer for each request; no stage answering is ``Rejected``."""
    out: list[Outcome] = []
    for outcome in chain.explain(list(requests)) if requests else []:
        if isinstance(outcome, ChainFailure):
            rejection = Rejection(outcome.error_class, outcome.reason)
            out.append(Rejected(rejection, outcome.request.event.event_id, outcome.skipped))
        else:
            out.append(outcome)
    return out
