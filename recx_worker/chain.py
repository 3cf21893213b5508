"""The fallback chain: ordered explainer stages, a deadline per stage, the guard after each.

Each stage receives only the requests still unanswered. A stage that raises (the whole batch),
misses its deadline, returns an ``ExplainFailure`` for a request, or produces text the guard
rejects, hands that request to the next stage; the result records why each earlier stage did
not answer. Every stage call runs in the stage's own worker thread, so a deadline is a real
wall-clock bound; a stage still busy with a timed-out call is ``unavailable`` until it finishes.
One caller at a time: a chain is not meant to be shared between threads.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from recx_worker.events import ExplanationEvent, SkippedStage
from recx_worker.explainer import Explainer, ExplainFailure, ExplainRequest, Explanation
from recx_worker.guard import Guard

if TYPE_CHECKING:
    from recx_worker.config import Settings

log = structlog.get_logger(__name__)

DEFAULT_DEADLINE_MS = 10_000


class StageTimeout(Exception):
    """A stage missed its deadline (its call keeps running in the stage's thread)."""


@dataclass(slots=True)
class ChainResult:
    """A request answered by one stage, with the stages skipped before it."""

    request: ExplainRequest
    text: str
    explainer: str
    explainer_version: str
    model: str | None
    adapter_version: str | None
    mentioned_features: list[str]
    grounded: bool
    skipped: list[SkippedStage]
    stage_latency_ms: float
    chain_latency_ms: float


@dataclass(slots=True)
class ChainFailure:
    """No stage answered; the caller dead-letters the request."""

    request: ExplainRequest
    skipped: list[SkippedStage]
    chain_latency_ms: float
    error_class: str = "NoExplanation"

    @property
    def reason(self) -> str:
        parts = [f"{s.explainer}: {s.reason} ({s.detail})" for s in self.skipped]
        return "no explainer answered: " + "; ".join(parts)


ChainOutcome = ChainResult | ChainFailure


@dataclass(eq=False)
class Stage:
    """One explainer with its deadline; each call runs in its own daemon thread."""

    explainer: Explainer
    deadline_s: float
    disabled: str | None = None
    _busy: Future | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.explainer.name

    def unavailable(self) -> str | None:
        if self.disabled:
            return self.disabled
        if self._busy is not None:
            if not self._busy.done():
                return "still busy with a batch that missed its deadline"
            self._busy = None
        return None

    def call(self, requests: list[ExplainRequest]) -> list[Any]:
        """``explain_batch`` in a daemon thread; raises StageTimeout past the deadline.

        A daemon thread never keeps the process alive: a stuck model call cannot block exit.
        """
        future: Future = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.explainer.explain_batch(requests))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name=f"recx-{self.name}", daemon=True).start()
        try:
            return future.result(timeout=self.deadline_s)
        except FutureTimeout:
            self._busy = future
            raise StageTimeout(f"no answer within {self.deadline_s * 1000:.0f} ms") from None


class ExplainerChain:
    """Explain micro-batches with ordered fallback; see the module docstring."""

    def __init__(self, stages: list[tuple[Explainer, float]], guard: Guard) -> None:
        if not stages:
            raise ValueError("an explainer chain needs at least one stage")
        self.stages = [Stage(explainer, deadline) for explainer, deadline in stages]
        self.guard = guard
        self._warm = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Any,
        *,
        explainers: list[str] | None = None,
        guard: Guard | None = None,
    ) -> ExplainerChain:
        """Stages from ``settings.chain`` (or ``explainers``), created through the plugins."""
        from recx_worker.plugins import create_explainer

        names = explainers or settings.chain.explainers
        stages = []
        for name in names:
            options = settings.chain.options.get(name, {})
            explainer = create_explainer(name, settings=settings, store=store, **options)
            deadline_ms = settings.chain.deadline_ms.get(name, DEFAULT_DEADLINE_MS)
            stages.append((explainer, deadline_ms / 1000))
        return cls(stages, guard or Guard.with_plugins(store.lexicon))

    @property
    def names(self) -> list[str]:
        return [stage.name for stage in self.stages]

    def warm_up(self, *, strict: bool = False) -> dict[str, str]:
        """Warm every stage; a stage that fails is disabled (``strict`` raises instead).

        Returns ``{stage name: error}`` for the disabled stages.
        """
        failed: dict[str, str] = {}
        for stage in self.stages:
            try:
                stage.explainer.warm_up()
            except Exception as exc:
                if strict:
                    raise
                stage.disabled = f"warm-up failed: {type(exc).__name__}: {exc}"
                failed[stage.name] = stage.disabled
                log.warning("explainer_disabled", explainer=stage.name, reason=stage.disabled)
        if len(failed) == len(self.stages):
            raise RuntimeError(f"no explainer in the chain could warm up: {failed}")
        self._warm = True
        return failed

    def close(self) -> None:
        for stage in self.stages:
            try:
                stage.explainer.close()
            except Exception as exc:
                log.warning("explainer_close_failed", explainer=stage.name, error=str(exc))

    def __enter__(self) -> ExplainerChain:
        if not self._warm:
            self.warm_up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tags(self, request: ExplainRequest) -> dict[str, str]:
        """Extra fields of the published event (experiment and arm, for ``ArmChains``)."""
        return {}

    def explain(self, requests: list[ExplainRequest]) -> list[ChainOutcome]:
        """One outcome per request, in order."""
        if not self._warm:
            self.warm_up()
        started = time.perf_counter()
        pending = list(range(len(requests)))
        skipped: list[list[SkippedStage]] = [[] for _ in requests]
        answers: dict[int, tuple[Stage, Explanation, Any, float]] = {}
        for stage in self.stages:
            if not pending:
                break
            if (why := stage.unavailable()) is not None:
                for i in pending:
                    skipped[i].append(
                        SkippedStage(explainer=stage.name, reason="unavailable", detail=why)
                    )
                continue
            batch = [requests[i] for i in pending]
            t0 = time.perf_counter()
            try:
                outcomes = stage.call(batch)
                if not isinstance(outcomes, list) or len(outcomes) != len(batch):
                    got = len(outcomes) if isinstance(outcomes, list) else type(outcomes).__name__
                    raise TypeError(f"returned {got} outcomes for {len(batch)} requests")
            except StageTimeout as exc:
                for i in pending:
                    skipped[i].append(
                        SkippedStage(explainer=stage.name, reason="timeout", detail=str(exc))
                    )
                continue
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"
                log.warning("explainer_failed", explainer=stage.name, error=detail)
                for i in pending:
                    skipped[i].append(
                        SkippedStage(explainer=stage.name, reason="error", detail=detail)
                    )
                continue
            latency_ms = (time.perf_counter() - t0) * 1000
            still: list[int] = []
            for i, outcome in zip(pending, outcomes, strict=True):
                reason, detail = self._judge(requests[i], outcome)
                if reason is None:
                    answers[i] = (stage, outcome, detail, latency_ms)
                else:
                    skipped[i].append(
                        SkippedStage(explainer=stage.name, reason=reason, detail=detail)
                    )
                    still.append(i)
            pending = still
        total_ms = (time.perf_counter() - started) * 1000
        results: list[ChainOutcome] = []
        for i, request in enumerate(requests):
            if i not in answers:
                results.append(ChainFailure(request, skipped[i], total_ms))
                continue
            stage, explanation, verdict, latency_ms = answers[i]
            results.append(
                ChainResult(
                    request=request,
                    text=explanation.text.strip(),
                    explainer=stage.name,
                    explainer_version=stage.explainer.version,
                    model=explanation.model,
                    adapter_version=explanation.adapter_version,
                    mentioned_features=verdict.mentioned_features,
                    grounded=verdict.grounded,
                    skipped=skipped[i],
                    stage_latency_ms=latency_ms,
                    chain_latency_ms=total_ms,
                )
            )
        return results

    def _judge(self, request: ExplainRequest, outcome: Any) -> tuple[str | None, Any]:
        """``(None, verdict)`` when the outcome may be published, else ``(reason, detail)``."""
        if isinstance(outcome, ExplainFailure):
            return "error", f"{outcome.error_class}: {outcome.message}"
        if not isinstance(outcome, Explanation) or not isinstance(outcome.text, str):
            return "error", f"returned {type(outcome).__name__}, not an Explanation"
        verdict = self.guard.check(request, outcome.text.strip())
        if not verdict.ok:
            return "guard_rejected", verdict.reason
        return None, verdict


def explanation_event(
    result: ChainResult,
    *,
    latency_ms: float | None = None,
    experiment: str | None = None,
    arm: str | None = None,
) -> ExplanationEvent:
    """The published event for an answered request; ``latency_ms`` defaults to the chain time."""
    event = result.request.event
    return ExplanationEvent(
        event_id=event.event_id,
        user_id=event.user_id,
        item_id=event.item_id,
        text=result.text,
        explainer=result.explainer,
        explainer_version=result.explainer_version,
        model=result.model,
        adapter_version=result.adapter_version,
        evidence=result.request.evidence,
        mentioned_features=result.mentioned_features,
        grounded=result.grounded,
        latency_ms=round(result.chain_latency_ms if latency_ms is None else latency_ms, 3),
        skipped=result.skipped,
        recommended_at=event.timestamp,
        experiment=experiment,
        arm=arm,
    )
