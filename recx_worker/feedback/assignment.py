"""Deterministic experiment assignment: hash(salt, user id) -> a point in [0, 1) -> an arm.

The same user always lands in the same arm for a given salt and weights, on every worker,
without shared state. Adaptive allocation (Thompson sampling) only changes the weights.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

from recx_worker.config import ExperimentArm, ExperimentSettings


def unit_hash(user_id: str, salt: str) -> float:
    """A uniform, stable number in [0, 1) for (salt, user id): the first 8 bytes of SHA-256."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose(point: float, weights: Sequence[float]) -> int:
    """Index of the arm whose cumulative-weight slice holds ``point`` (weights: any scale)."""
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    edges = [c / total for c in accumulate(weights)]
    return min(bisect_right(edges, point), len(weights) - 1)


class Assigner:
    """Maps user ids to the arms of one experiment (``[experiments]``)."""

    def __init__(self, settings: ExperimentSettings, weights: Sequence[float] | None = None):
        if not settings.arms:
            raise ValueError("an experiment needs at least one arm")
        names = [arm.name for arm in settings.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        self.settings = settings
        self.weights = list(weights or [arm.weight for arm in settings.arms])

    @property
    def experiment(self) -> str:
        return self.settings.name

    def arm(self, user_id: str) -> ExperimentArm:
        point = unit_hash(user_id, self.settings.salt)
        return self.settings.arms[choose(point, self.weights)]
