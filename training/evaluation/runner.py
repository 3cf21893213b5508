"""Runs explainers over a split: raw outputs, then what the chain would deliver to users.

"raw" is each explainer's own text (a failure counts as an empty text). "delivered" replays
those raw outcomes through the explain core's chain step (``recx_worker.core.explain``: the
guard, then fallback to the template explainer), the same code the worker and ``recx explain``
run, so it is exactly what a user would see, without generating twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

from tqdm import tqdm

from recx_worker.chain import ChainResult, ExplainerChain
from recx_worker.core import explain
from recx_worker.events import RecommendationEvent
from recx_worker.explainer import Explainer, ExplainFailure, ExplainRequest, Explanation, Outcome
from recx_worker.guard import Guard
from recx_worker.prepared import ExplanationRecord, recommendation_event

FALLBACK = "template"
NO_ANSWER = "none"
_REPLAY_DEADLINE_S = 3600.0


def record_event(record: ExplanationRecord) -> RecommendationEvent:
    """The recommendation event a test record stands for (its own review is never evidence)."""
    return recommendation_event(record)


@dataclass(slots=True)
class RawRun:
    """One explainer's outcomes over the requests, with timing."""

    name: str
    version: str
    outcomes: list[Outcome]
    seconds: float

    @property
    def texts(self) -> list[str]:
        return [o.text.strip() if isinstance(o, Explanation) else "" for o in self.outcomes]

    @property
    def failures(self) -> int:
        return sum(not isinstance(o, Explanation) for o in self.outcomes)


@dataclass(slots=True)
class Delivered:
    """What the chain delivered per request: the text ("" when nothing) and the stage."""

    texts: list[str]
    stages: list[str]
    first_stage_rejections: int
    first_stage_reasons: dict[str, int] = field(default_factory=dict)


def outcome_row(event_id: str, outcome: Outcome) -> dict[str, str]:
    """One line of an outputs file: ``{"id", "text"}``, plus ``"error"`` for a failure."""
    if isinstance(outcome, Explanation):
        return {"id": event_id, "text": outcome.text}
    return {"id": event_id, "text": "", "error": f"{outcome.error_class}: {outcome.message}"}


def run_explainer(
    explainer: Explainer,
    requests: Sequence[ExplainRequest],
    batch_size: int,
    progress: bool = True,
    sink: Path | None = None,
) -> RawRun:
    """``explain_batch`` over ``requests`` in micro-batches, with a progress bar.

    With ``sink``, every outcome is also appended to that JSONL file as soon as its batch is
    done (so a long run's outputs survive an interruption and can be rescored with
    ``recx eval --external NAME=FILE``).
    """
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    handle = _open_sink(sink) if sink is not None else None
    try:
        with tqdm(
            total=len(requests), desc=explainer.name, unit="expl", disable=not progress
        ) as bar:
            for start in range(0, len(requests), batch_size):
                batch = list(requests[start : start + batch_size])
                try:
                    got = explainer.explain_batch(batch)
                    if len(got) != len(batch):
                        raise RuntimeError(
                            f"returned {len(got)} outcomes for {len(batch)} requests"
                        )
                except Exception as exc:  # a crashed batch counts as failures, the run goes on
                    got = [ExplainFailure.from_exception(exc)] * len(batch)
                outcomes.extend(got)
                if handle is not None:
                    _write_rows(handle, batch, got)
                    handle.flush()
                bar.update(len(batch))
    finally:
        if handle is not None:
            handle.close()
    return RawRun(explainer.name, explainer.version, outcomes, time.perf_counter() - started)


def write_outputs(sink: Path, run: RawRun, requests: Sequence[ExplainRequest]) -> None:
    """All of ``run``'s outcomes as ``run_explainer`` writes them (one JSONL row each)."""
    with _open_sink(sink) as handle:
        _write_rows(handle, requests, run.outcomes)


def _open_sink(sink: Path) -> TextIO:
    sink.parent.mkdir(parents=True, exist_ok=True)
    return sink.open("w", encoding="utf-8")


def _write_rows(
    handle: TextIO, requests: Sequence[ExplainRequest], outcomes: Sequence[Outcome]
) -> None:
    for request, outcome in zip(requests, outcomes, strict=True):
        handle.write(json.dumps(outcome_row(request.event.event_id, outcome)) + "\n")


class _Replay:
    """An explainer that answers with outcomes computed earlier (keyed by event id)."""

    version: ClassVar[str] = "replay"

    def __init__(self, run: RawRun, requests: Sequence[ExplainRequest]) -> None:
        self.name = run.name
        self._by_id = {r.event.event_id: o for r, o in zip(requests, run.outcomes, strict=True)}

    def warm_up(self) -> None:
        return None

    def close(self) -> None:
        return None

    def explain_batch(self, requests: list[ExplainRequest]) -> list[Outcome]:
        return [self._by_id[r.event.event_id] for r in requests]


def deliver(
    runs: Sequence[RawRun],
    requests: Sequence[ExplainRequest],
    guard: Guard,
) -> Delivered:
    """Replay ``runs`` (stage order, e.g. lora, prompt, template) through the chain's guard."""
    stages: list[tuple[Any, float]] = []
    for run in runs:
        if all(run.name != s.name for s, _ in stages):
            stages.append((_Replay(run, requests), _REPLAY_DEADLINE_S))
    primary = runs[0]
    chain = ExplainerChain(stages, guard)
    try:
        chain.warm_up(strict=True)
        results = explain(chain, requests)
    finally:
        chain.close()
    texts, names, reasons = [], [], {}
    rejected = 0
    for result in results:
        first = result.skipped[0] if result.skipped else None
        if first is not None and first.explainer == primary.name:
            rejected += 1
            key = first.reason if first.reason != "guard_rejected" else _reason_kind(first.detail)
            reasons[key] = reasons.get(key, 0) + 1
        if isinstance(result, ChainResult):
            texts.append(result.event.text)
            names.append(result.event.explainer)
        else:
            texts.append("")
            names.append(NO_ANSWER)
    return Delivered(texts, names, rejected, dict(sorted(reasons.items(), key=lambda kv: -kv[1])))


def _reason_kind(detail: str) -> str:
    """A guard reason without its specifics ("ungrounded feature 'x'" -> "ungrounded feature")."""
    head = detail.split(":", 1)[0].split("'", 1)[0].strip()
    return f"guard: {head}" if head else "guard"
