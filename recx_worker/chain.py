"""The fallback chain: ordered explainer stages, a deadline per stage, the guard after each.

Each stage receives only the requests still unanswered. A stage that raises (``error``, the
whole batch), misses its deadline (``timeout``), returns an ``ExplainFailure`` for a request
(``declined``), or produces text the guard rejects (``guard_rejected``), hands that request to
the next stage; the result records why each earlier stage did not answer. An answered request's
result carries the ``ExplanationEvent`` to publish, built here and nowhere else. Every stage
call runs in the stage's own worker thread (kept between calls), so a deadline is a real
wall-clock bound; a stage still busy with a timed-out call is ``unavailable`` until it finishes.
Before a stage runs, the ``DeadlineBatcher`` (recx_worker/batch_sizer.py) may keep for the
next stage the requests it is not measured to answer in time (reason ``deadline_skipped``).
One caller at a time: a chain is not meant to be shared between threads.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from recx_worker.batch_sizer import DeadlineBatcher
from recx_worker.events import ExplanationEvent, SkippedStage, SkipReason
from recx_worker.explainer import (
    Explainer,
    ExplainerContext,
    ExplainFailure,
    ExplainRequest,
    Explanation,
)
from recx_worker.guard import Guard

if TYPE_CHECKING:
    from recx_worker.config import Settings

log = structlog.get_logger(__name__)


class StageTimeout(Exception):
    """A stage missed its deadline (its call keeps running in the stage's thread)."""


@dataclass(slots=True)
class ChainResult:
    """A request answered by one stage: the event to publish (text, explainer, evidence, the
    stages skipped before it, chain latency) and the answering stage's own latency."""

    request: ExplainRequest
    event: ExplanationEvent
    stage_latency_ms: float

    @property
    def skipped(self) -> list[SkippedStage]:
        return self.event.skipped


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


class _StageThread:
    """The one daemon thread a stage's calls run in, one at a time, started on first use.

    A daemon thread never keeps the process alive: a stuck model call cannot block exit. It
    is kept between calls (starting a thread per micro-batch cost more than the template
    explainer's own work); a call that missed its deadline keeps it busy, and the chain does
    not hand the stage another call until that one finished (``Stage.unavailable``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        future: Future[Any] = Future()
        self._jobs.put((future, fn))
        return future

    def stop(self) -> None:
        """Let the thread end once its current call (if any) returns."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


@dataclass(eq=False)
class Stage:
    """One explainer with its deadline; its calls run in the stage's own daemon thread."""

    explainer: Explainer
    deadline_s: float
    disabled: str | None = None
    _busy: Future[list[Any]] | None = field(default=None, repr=False)
    _thread: _StageThread | None = field(default=None, repr=False)

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

    def call(
        self,
        requests: list[ExplainRequest],
        timeout_s: float | None = None,
        on_late: Callable[[float], None] | None = None,
    ) -> list[Any]:
        """``explain_batch`` in the stage's thread; raises StageTimeout past the deadline
        (or ``timeout_s``, when a latency target leaves less). A call that timed out reports
        its real duration to ``on_late`` when it finally returns."""
        started = time.perf_counter()
        if self._thread is None:
            self._thread = _StageThread(f"recx-{self.name}")
        future: Future[list[Any]] = self._thread.submit(
            lambda: self.explainer.explain_batch(requests)
        )
        timeout = self.deadline_s if timeout_s is None else min(timeout_s, self.deadline_s)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            self._busy = future
            if on_late is not None:
                future.add_done_callback(lambda _f: on_late(time.perf_counter() - started))
            raise StageTimeout(f"no answer within {timeout * 1000:.0f} ms") from None

    def close(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None


class _Answer(NamedTuple):
    """The stage that answered a request, its explanation, the guard's verdict, its latency."""

    stage: Stage
    explanation: Explanation
    verdict: Any
    latency_ms: float


class ExplainerChain:
    """Explain micro-batches with ordered fallback; see the module docstring."""

    def __init__(
        self,
        stages: list[tuple[Explainer, float]],
        guard: Guard,
        batcher: DeadlineBatcher | None = None,
    ) -> None:
        if not stages:
            raise ValueError("an explainer chain needs at least one stage")
        self.stages = [Stage(explainer, deadline) for explainer, deadline in stages]
        self.guard = guard
        self.batcher = batcher or DeadlineBatcher()
        self._warm = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        context: ExplainerContext,
        *,
        explainers: list[str] | None = None,
        guard: Guard | None = None,
    ) -> ExplainerChain:
        """Stages from ``settings.chain`` (or ``explainers``), created through the plugins
        (entry points and ``worker.plugin_modules``)."""
        from recx_worker.plugins import create_explainer, load_plugin_modules

        load_plugin_modules(settings.worker.plugin_modules)
        chain = settings.chain
        stages = []
        for name in explainers or chain.explainers:
            explainer = create_explainer(name, context, **chain.options.get(name, {}))
            deadline_ms = chain.deadline_ms.get(name, chain.default_deadline_ms)
            stages.append((explainer, deadline_ms / 1000))
        if guard is None:
            if context.lexicon is None:
                raise ValueError("the chain's guard needs a lexicon (ExplainerContext.lexicon)")
            guard = Guard.for_store(context.evidence, settings, lexicon=context.lexicon)
        target_s = settings.worker.latency_target_ms / 1000 or None
        return cls(stages, guard, DeadlineBatcher(target_s))

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
        self.guard.warm_up()
        self._warm = True
        return failed

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
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

    def explain(self, requests: list[ExplainRequest]) -> list[ChainOutcome]:
        """One outcome per request, in order."""
        if not self._warm:
            self.warm_up()
        started = time.perf_counter()
        pending = list(range(len(requests)))
        skipped: list[list[SkippedStage]] = [[] for _ in requests]
        answers: dict[int, _Answer] = {}
        for position, stage in enumerate(self.stages, start=1):
            if not pending:
                break
            if (why := stage.unavailable()) is not None:
                for i in pending:
                    skipped[i].append(
                        SkippedStage(explainer=stage.name, reason="unavailable", detail=why)
                    )
                continue
            last = position == len(self.stages)  # gets everything left, within its deadline
            budget_s = self.batcher.budget(stage.deadline_s, time.perf_counter() - started)
            deferred: list[int] = []
            if not last:
                take = self.batcher.admit(stage.name, len(pending), budget_s)
                pending, deferred = pending[:take], pending[take:]
                detail = self.batcher.explain(stage.name, budget_s) if deferred else ""
                for i in deferred:
                    skipped[i].append(
                        SkippedStage(explainer=stage.name, reason="deadline_skipped", detail=detail)
                    )
                if not pending:
                    pending = deferred
                    continue
            still = self._run_stage(
                stage, requests, pending, None if last else budget_s, skipped, answers
            )
            pending = sorted(still + deferred)
        total_ms = (time.perf_counter() - started) * 1000
        return [
            self._result(request, answers[i], skipped[i], total_ms)
            if i in answers
            else ChainFailure(request, skipped[i], total_ms)
            for i, request in enumerate(requests)
        ]

    def _run_stage(
        self,
        stage: Stage,
        requests: list[ExplainRequest],
        pending: list[int],
        budget_s: float | None,
        skipped: list[list[SkippedStage]],
        answers: dict[int, _Answer],
    ) -> list[int]:
        """Run one stage on ``pending``; record answers and skips; return the unanswered."""
        batch = [requests[i] for i in pending]
        t0 = time.perf_counter()
        try:
            outcomes = stage.call(
                batch,
                budget_s,
                # the real cost of a call that missed its deadline, for the next admission
                on_late=lambda seconds: self.batcher.observe(stage.name, len(batch), seconds),
            )
            if not isinstance(outcomes, list) or len(outcomes) != len(batch):
                got = len(outcomes) if isinstance(outcomes, list) else type(outcomes).__name__
                raise TypeError(f"returned {got} outcomes for {len(batch)} requests")
        except Exception as exc:
            timeout = isinstance(exc, StageTimeout)
            if timeout:
                self.batcher.observe(stage.name, len(batch), time.perf_counter() - t0)
                reason: SkipReason = "timeout"
                detail = str(exc)
            else:
                reason, detail = "error", f"{type(exc).__name__}: {exc}"
                log.warning("explainer_failed", explainer=stage.name, error=detail)
            for i in pending:
                skipped[i].append(SkippedStage(explainer=stage.name, reason=reason, detail=detail))
            return list(pending)
        latency_ms = (time.perf_counter() - t0) * 1000
        self.batcher.observe(stage.name, len(batch), latency_ms / 1000)
        self.guard.prepare(
            [
                (requests[i], outcome.text.strip())
                for i, outcome in zip(pending, outcomes, strict=True)
                if isinstance(outcome, Explanation) and isinstance(outcome.text, str)
            ]
        )
        still: list[int] = []
        for i, outcome in zip(pending, outcomes, strict=True):
            why, verdict = self._judge(requests[i], outcome)
            if why is None:
                answers[i] = _Answer(stage, outcome, verdict, latency_ms)
            else:
                skipped[i].append(SkippedStage(explainer=stage.name, reason=why, detail=verdict))
                still.append(i)
        return still

    @staticmethod
    def _result(
        request: ExplainRequest, answer: _Answer, skipped: list[SkippedStage], total_ms: float
    ) -> ChainResult:
        """The explanation event for an answered request (built here and nowhere else)."""
        event, explanation, verdict = request.event, answer.explanation, answer.verdict
        published = ExplanationEvent(
            event_id=event.event_id,
            user_id=event.user_id,
            item_id=event.item_id,
            text=explanation.text.strip(),
            explainer=answer.stage.name,
            explainer_version=answer.stage.explainer.version,
            model=explanation.model,
            adapter_version=explanation.adapter_version,
            evidence=request.evidence,
            mentioned_features=verdict.mentioned_features,
            grounded=verdict.grounded,
            latency_ms=round(total_ms, 3),
            skipped=skipped,
            recommended_at=event.timestamp,
        )
        return ChainResult(request, published, answer.latency_ms)

    def _judge(self, request: ExplainRequest, outcome: Any) -> tuple[SkipReason | None, Any]:
        """``(None, verdict)`` when the outcome may be published, else ``(reason, detail)``."""
        if isinstance(outcome, ExplainFailure):
            reason: SkipReason = "error" if outcome.crashed else "declined"
            return reason, f"{outcome.error_class}: {outcome.message}"
        if not isinstance(outcome, Explanation) or not isinstance(outcome.text, str):
            return "error", f"returned {type(outcome).__name__}, not an Explanation"
        verdict = self.guard.check(request, outcome.text.strip())
        if not verdict.ok:
            return "guard_rejected", verdict.reason
        return None, verdict
