"""Deadline-aware batching: how many pending requests a chain stage can answer in time.

Each stage's cost is learnt from its own batches as ``seconds = overhead + per_request * n``,
fitted by exponentially weighted least squares (recent batches count most; one batch size
alone gives ``per_request = seconds / n``). Before a stage runs, ``admit`` gives it the first
``n`` pending requests whose predicted time fits ``headroom`` x the budget - the stage's
deadline, capped by what is left of the latency target (``worker.latency_target_ms``) - and
the chain hands the rest to the next stage at once (reason ``deadline_skipped``) instead of
letting the whole batch miss the deadline. The last stage is never sized: it must answer.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(slots=True)
class CostModel:
    """Exponentially weighted moments of (batch size, seconds) for one stage."""

    alpha: float
    n: float = 0.0
    t: float = 0.0
    nn: float = 0.0
    nt: float = 0.0
    batches: int = 0

    def observe(self, size: int, seconds: float) -> None:
        a = 1.0 if self.batches == 0 else self.alpha
        self.n += a * (size - self.n)
        self.t += a * (seconds - self.t)
        self.nn += a * (size * size - self.nn)
        self.nt += a * (size * seconds - self.nt)
        self.batches += 1

    def coefficients(self) -> tuple[float, float]:
        """``(overhead_s, per_request_s)``, both >= 0, per_request > 0."""
        variance = self.nn - self.n * self.n
        if variance > 1e-6 * max(self.nn, 1.0):
            slope = (self.nt - self.n * self.t) / variance
            overhead = self.t - slope * self.n
            if slope > 0 and overhead >= 0:
                return overhead, slope
        return 0.0, max(self.t / max(self.n, 1e-9), 1e-9)

    def predict(self, size: int) -> float:
        overhead, per_request = self.coefficients()
        return overhead + per_request * size


class DeadlineBatcher:
    """Sizes each stage's share of a micro-batch from its measured cost (thread-safe)."""

    def __init__(
        self,
        latency_target_s: float | None = None,
        *,
        alpha: float = 0.3,
        headroom: float = 0.8,
        probe: int = 1,
    ) -> None:
        if latency_target_s is not None and latency_target_s <= 0:
            latency_target_s = None
        self.latency_target_s = latency_target_s
        self.alpha = alpha
        self.headroom = headroom
        self.probe = probe
        self._models: dict[str, CostModel] = {}
        self._admitted: dict[str, int] = {}
        self._lock = threading.Lock()

    def budget(self, deadline_s: float, elapsed_s: float) -> float:
        """Seconds a stage may take: its deadline, capped by what is left of the target."""
        if self.latency_target_s is None:
            return deadline_s
        return min(deadline_s, self.latency_target_s - elapsed_s)

    def admit(self, stage: str, pending: int, budget_s: float) -> int:
        """How many of ``pending`` requests (taken in order) the stage should get.

        Unmeasured: all of them without a latency target (the deadline bounds the first
        batch), ``probe`` with one. At least one while there is any budget, none after."""
        with self._lock:
            model = self._models.get(stage)
            if budget_s <= 0:
                take = 0
            elif model is None:
                take = pending if self.latency_target_s is None else min(self.probe, pending)
            else:
                overhead, per_request = model.coefficients()
                room = (budget_s * self.headroom - overhead) / per_request
                # at least one: a stage whose estimate says "nothing fits" must still get a
                # request now and then, or a single slow batch would shut it out for good
                take = max(1, min(pending, math.floor(room + 1e-9)))
            self._admitted[stage] = take
            return take

    def observe(self, stage: str, size: int, seconds: float) -> None:
        """A finished (or timed-out: ``seconds`` = the timeout, a lower bound) stage call."""
        if size <= 0:
            return
        with self._lock:
            model = self._models.setdefault(stage, CostModel(self.alpha))
            model.observe(size, seconds)

    def explain(self, stage: str, budget_s: float) -> str:
        """The detail recorded on a request the stage did not get."""
        with self._lock:
            model = self._models.get(stage)
        if model is None:
            return f"budget {budget_s * 1000:.0f} ms"
        overhead, per_request = model.coefficients()
        return (
            f"budget {budget_s * 1000:.0f} ms; measured {overhead * 1000:.0f} ms + "
            f"{per_request * 1000:.0f} ms per request"
        )

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Per stage: measured overhead and per-request seconds, last admitted size."""
        with self._lock:
            out = {}
            for stage, model in self._models.items():
                overhead, per_request = model.coefficients()
                out[stage] = {
                    "overhead_s": overhead,
                    "per_request_s": per_request,
                    "admitted": float(self._admitted.get(stage, 0)),
                }
            return out
