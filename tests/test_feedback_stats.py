"""Experiment statistics against closed-form cases, and assignment determinism and balance."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from recx_worker.config import ExperimentArm, ExperimentSettings
from recx_worker.feedback.assignment import Assigner, choose, unit_hash
from recx_worker.feedback.stats import (
    newcombe_interval,
    prob_b_beats_a,
    probability_best,
    sample_size_per_arm,
    thompson_weights,
    wilson_interval,
)

# Chi-square critical values at p = 0.001 (standard tables): df -> value.
CHI2_CRIT_001 = {1: 10.828, 2: 13.816}


def test_wilson_interval_closed_form_cases():
    # k = 0: lower bound 0, upper bound z^2 / (n + z^2).
    z = 1.959963984540054
    lo, hi = wilson_interval(0, 10)
    assert lo == pytest.approx(0, abs=1e-12) and hi == pytest.approx(z * z / (10 + z * z))
    # k = n/2: symmetric around 1/2 with half-width z*sqrt(n/4 + z^2/4)/(n + z^2).
    lo, hi = wilson_interval(50, 100)
    half = z * math.sqrt(100 / 4 + z * z / 4) / (100 + z * z)
    assert (lo, hi) == pytest.approx((0.5 - half, 0.5 + half))
    # Published example (Newcombe 1998, table I): 81/263 -> 0.2553 .. 0.3662.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_newcombe_difference_interval_matches_the_published_example():
    # Newcombe 1998, table II example (a): 56/70 vs 48/80 -> difference 0.2 in 0.0524 .. 0.3339.
    lo, hi = newcombe_interval(48, 80, 56, 70)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=5e-4)


def test_probability_best_closed_form_cases():
    # Uniform vs uniform: 1/2. Beta(2,1) (density 2x) vs Beta(1,1): P(B > A) = 1/3.
    assert prob_b_beats_a(1, 1, 1, 1) == pytest.approx(0.5)
    assert prob_b_beats_a(2, 1, 1, 1) == pytest.approx(1 / 3)
    assert prob_b_beats_a(1, 1, 2, 1) == pytest.approx(2 / 3)
    # Beta(1,2) vs Beta(2,1): P(B > A) = 1 - P(A > B), integral -> 5/6.
    assert prob_b_beats_a(1, 2, 2, 1) == pytest.approx(5 / 6)
    # Two arms with data (exact) agree with the Monte-Carlo path used for 3+ arms.
    exact = probability_best([30, 45], [100, 110])
    mc = probability_best([30, 45, 0], [100, 110, 10_000], draws=400_000)
    assert sum(exact) == pytest.approx(1)
    assert mc[1] == pytest.approx(exact[1], abs=0.005) and mc[2] < 1e-4
    # Symmetric arms split evenly.
    assert probability_best([5, 5, 5], [10, 10, 10]) == pytest.approx([1 / 3] * 3, abs=0.005)


def test_thompson_weights_keep_the_floor_and_favour_the_better_arm():
    weights = thompson_weights([10, 300], [1000, 1000], floor=0.1)
    assert sum(weights) == pytest.approx(1)
    assert weights[0] == pytest.approx(0.1, abs=1e-6) and weights[1] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        thompson_weights([1, 1, 1], [2, 2, 2], floor=0.4)


def test_sample_size_closed_form():
    # Fleiss without continuity correction with table z values (1.959964, 0.841621):
    # ((1.959964 * sqrt(2 * .32 * .68) + 0.841621 * sqrt(.21 + .2244)) / .04) ** 2 = 2133.7.
    assert sample_size_per_arm(0.30, 0.34) == pytest.approx(2133.7, abs=0.5)
    assert math.isinf(sample_size_per_arm(0.3, 0.3))


def _experiment(weights=(1.0, 1.0)) -> ExperimentSettings:
    return ExperimentSettings(
        name="ab",
        salt="s1",
        arms=[ExperimentArm(name=f"arm{i}", weight=w) for i, w in enumerate(weights)],
    )


def test_assignment_is_deterministic_and_salt_dependent():
    a, b = Assigner(_experiment()), Assigner(_experiment())
    users = [f"user-{i}" for i in range(500)]
    assert [a.arm(u).name for u in users] == [b.arm(u).name for u in users]
    assert unit_hash("u", "s1") == unit_hash("u", "s1") != unit_hash("u", "s2")
    other = Assigner(_experiment().model_copy(update={"salt": "s2"}))
    moved = sum(a.arm(u).name != other.arm(u).name for u in users)
    assert 150 < moved < 350  # a new salt re-randomises about half the users
    assert choose(0.0, [1, 1]) == 0 and choose(0.999, [1, 1]) == 1 and choose(0.5, [1, 3]) == 1


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.0, 1.0, 2.0)])
def test_assignment_balance_chi_square_on_10000_users(weights):
    assigner = Assigner(_experiment(weights))
    counts = Counter(assigner.arm(f"user-{i}").name for i in range(10_000))
    total = sum(weights)
    expected = {f"arm{i}": 10_000 * w / total for i, w in enumerate(weights)}
    chi2 = sum((counts[arm] - e) ** 2 / e for arm, e in expected.items())
    assert chi2 < CHI2_CRIT_001[len(weights) - 1], (counts, chi2)


def test_assigner_rejects_duplicate_arm_names():
    with pytest.raises(ValueError, match="unique"):
        Assigner(ExperimentSettings(arms=[ExperimentArm(name="a"), ExperimentArm(name="a")]))
