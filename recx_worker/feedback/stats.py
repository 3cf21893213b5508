"""Statistics for a helpful-rate experiment: Wilson intervals, Newcombe's difference interval,
Beta-Bernoulli probability of being best, Thompson weights and the sample size still needed.

Priors are Beta(1, 1). Two arms use the exact closed form of P(p_B > p_A) (Evan Miller);
more arms use a seeded Monte-Carlo draw from the posteriors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion; (0, 1) with no trials."""
    if trials == 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    z = z_value(confidence)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval of p2 - p1 from the two Wilson intervals (Newcombe 1998, method 10)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    d = p2 - p1
    return (
        d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2),
        d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2),
    )


def _betaln(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def prob_b_beats_a(a_a: float, b_a: float, a_b: float, b_b: float) -> float:
    """Exact P(X_B > X_A) for X ~ Beta (integer a_B); Evan Miller's closed form."""
    if a_b != int(a_b):
        raise ValueError("the closed form needs an integer alpha for B")
    logs = [
        _betaln(a_a + i, b_a + b_b) - math.log(b_b + i) - _betaln(1 + i, b_b) - _betaln(a_a, b_a)
        for i in range(int(a_b))
    ]
    return float(np.exp(logs).sum()) if logs else 0.0


def probability_best(
    successes: Sequence[int], trials: Sequence[int], *, draws: int = 200_000, seed: int = 0
) -> list[float]:
    """P(arm i has the highest helpful rate) under Beta(1 + k, 1 + n - k) posteriors."""
    if len(successes) != len(trials) or not successes:
        raise ValueError("need one (successes, trials) pair per arm")
    post = [(1 + k, 1 + n - k) for k, n in zip(successes, trials, strict=True)]
    if len(post) == 1:
        return [1.0]
    if len(post) == 2:
        p_b = prob_b_beats_a(*post[0], *post[1])
        return [1 - p_b, p_b]
    rng = np.random.default_rng(seed)
    samples = np.stack([rng.beta(a, b, size=draws) for a, b in post])
    wins = np.bincount(samples.argmax(axis=0), minlength=len(post))
    return (wins / draws).tolist()


def thompson_weights(
    successes: Sequence[int], trials: Sequence[int], *, floor: float, seed: int = 0
) -> list[float]:
    """Allocation shares: probability best, with each arm kept at >= ``floor``."""
    n = len(trials)
    if floor * n > 1:
        raise ValueError(f"floor {floor} x {n} arms exceeds 1")
    best = probability_best(successes, trials, seed=seed)
    return [floor + (1 - floor * n) * p for p in best]


def sample_size_per_arm(p1: float, p2: float, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Users per arm for a two-sided two-proportion z-test to detect p1 != p2 (Fleiss)."""
    if p1 == p2:
        return math.inf
    za, zb = z_value(1 - alpha), NormalDist().inv_cdf(power)
    pbar = (p1 + p2) / 2
    num = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return (num / (p1 - p2)) ** 2
