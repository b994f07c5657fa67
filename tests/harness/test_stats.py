"""Interval estimates, tests and the five verdicts (`benchbase.reporting.stats`) against scipy, hand-computed
values and synthetic studies built to give each verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchbase.compute.metrics import MAE
from benchbase.contract.api import Predictions
from benchbase.reporting.stats import (
    BETTER,
    EQUIVALENT,
    INCONCLUSIVE,
    SMALL,
    WORSE,
    compare,
    correct,
    draw_units,
    estimate,
    holm,
    look_alpha,
    probability_of_improvement,
    shared_seed_means,
    unit_weights,
)


def test_nested_interval_and_p_are_scipys_paired_t():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=8), rng.normal(size=8)
    est = estimate(a - b)
    reference = stats.ttest_rel(a, b)
    assert est.p_value() == pytest.approx(reference.pvalue)
    low, high = est.interval()
    ci = reference.confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert est.df == 7


def test_shared_test_set_variance_widens_the_interval_and_raises_the_df():
    rng = np.random.default_rng(5)
    points = rng.normal(0.1, 0.02, size=6)
    shared = rng.normal(0.1, 0.05, size=1000)  # the seed mean on resamples of a shared test set
    nested, crossed = estimate(points), estimate(points, shared)
    assert crossed.se > 2 * nested.se
    assert crossed.df > nested.df  # the resampling term counts as known
    assert crossed.interval()[1] - crossed.interval()[0] > nested.interval()[1] - nested.interval()[0]


def test_tost_against_scipy_one_sided_tests():
    rng = np.random.default_rng(6)
    d = rng.normal(0.002, 0.01, size=10)
    rope = 0.02
    lower = stats.ttest_1samp(d + rope, 0.0, alternative="greater").pvalue
    upper = stats.ttest_1samp(d - rope, 0.0, alternative="less").pvalue
    assert estimate(d).p_equivalence(rope) == pytest.approx(max(lower, upper))


def test_equal_differences_give_no_test():
    est = estimate(np.full(6, 0.3))
    assert math.isnan(est.p_value()) and math.isnan(est.interval()[0])
    comparison = compare("m", "b", "test_mae", False, np.full(6, 1.3), np.full(6, 1.0), rope=0.1)
    correct([comparison])
    assert comparison.verdict == INCONCLUSIVE
    assert "no spread" in comparison.explanation()
    assert comparison.probability_of_improvement == 0.0  # worse on every seed


def test_holm_against_hand_computed_values():
    # p sorted 0.01 < 0.02 < 0.03 < 0.04 with m = 4: 0.04, 0.06, 0.06 (monotone), 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    adjusted = holm([0.5, float("nan"), 0.01])
    assert adjusted[0] == pytest.approx(0.5) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_probability_of_improvement_is_paired():
    method, baseline = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 0.0, 5.0])
    # higher is better: seed wins 0, tie .5, 1, 0 -> 1.5 / 4
    assert probability_of_improvement(method, baseline, higher_is_better=True) == pytest.approx(1.5 / 4)
    assert probability_of_improvement(method, baseline, higher_is_better=False) == pytest.approx(2.5 / 4)
    # worse on every paired seed reads 0, whatever the spread across seeds
    worse = np.array([1.1, 2.1, 3.1, 4.1, 5.1, 6.1])
    assert probability_of_improvement(worse, worse - 0.1, higher_is_better=False) == 0.0


def _verdict(differences: np.ndarray, rope: float, higher_is_better: bool = False) -> tuple[str, object]:
    baseline = np.linspace(1.0, 2.0, len(differences))
    comparison = compare("m", "b", "metric", higher_is_better, baseline + differences, baseline, rope=rope)
    correct([comparison])
    return comparison.verdict, comparison


@pytest.mark.parametrize(
    ("differences", "rope", "expected"),
    [
        (np.array([-0.31, -0.29, -0.30, -0.32, -0.28, -0.30]), 0.05, BETTER),  # lower error, beyond the ROPE
        (np.array([0.31, 0.29, 0.30, 0.32, 0.28, 0.30]), 0.05, WORSE),
        (np.array([0.0151, 0.012, 0.018, 0.014, 0.016, 0.0159]), 0.043, SMALL),  # real, inside the ROPE
        (np.array([0.002, -0.003, 0.001, -0.001, 0.003, -0.002]), 0.043, EQUIVALENT),
        (np.array([0.2, -0.25, 0.15, -0.1, 0.3, -0.2]), 0.043, INCONCLUSIVE),
    ],
)
def test_each_verdict_from_a_study_built_to_give_it(differences, rope, expected):
    verdict, comparison = _verdict(differences, rope)
    assert verdict == expected
    if expected == INCONCLUSIVE:
        assert "MDE" in comparison.explanation() and "paired seeds would" in comparison.explanation()
    else:
        assert comparison.explanation() == ""


def test_higher_is_better_flips_better_and_worse():
    verdict, _ = _verdict(np.array([0.31, 0.29, 0.30, 0.32, 0.28, 0.30]), 0.05, higher_is_better=True)
    assert verdict == BETTER


def test_real_difference_straddling_the_rope_is_inconclusive_and_says_so():
    verdict, comparison = _verdict(np.array([0.03, 0.06, 0.045, 0.055, 0.035, 0.05]), 0.043)
    assert verdict == INCONCLUSIVE and comparison.different
    assert "real" in comparison.explanation()


def test_no_rope_never_gives_equivalence():
    verdict, comparison = _verdict(np.array([0.002, -0.003, 0.001, -0.001, 0.003, -0.002]), 0.0)
    assert verdict == INCONCLUSIVE and "no ROPE" in comparison.explanation()


def test_seeds_needed_cannot_beat_a_shared_test_set_noise():
    points = np.array([0.01, -0.02, 0.015, -0.01, 0.02, 0.0])
    assert estimate(points).seeds_needed(0.01, 0.05) is not None
    assert estimate(points, np.random.default_rng(0).normal(0, 0.02, 1000)).seeds_needed(0.01, 0.05) is None


def test_seeds_needed_brings_the_mde_to_the_target():
    est = estimate(np.random.default_rng(1).normal(0, 0.1, 6))
    needed = est.seeds_needed(0.05, 0.05)
    from benchbase.reporting.stats import Estimate

    assert Estimate(0.0, needed, est.var_seed, 0.0).detectable(0.05) <= 0.05
    assert Estimate(0.0, needed - 1, est.var_seed, 0.0).detectable(0.05) > 0.05


def test_look_alpha_spends_at_most_alpha_over_any_number_of_looks():
    assert look_alpha(1, sequential=False) == 0.05
    spent = sum(look_alpha(k, sequential=True) for k in range(1, 10_000))
    assert spent < 0.05 and spent > 0.0499


def test_holm_family_holds_comparisons_of_different_looks_on_alpha_scale():
    base = np.linspace(1, 2, 6)
    first = compare("m", "b", "x", False, base - 0.3 + np.linspace(0, 0.01, 6), base, look=1, sequential=True)
    third = compare("m", "b", "x", False, base - 0.3 + np.linspace(0, 0.01, 6), base, look=3, sequential=True)
    correct([first, third])
    assert third.level == pytest.approx(1 - 0.05 / 12)
    assert third.p_holm >= first.p_holm  # a later look pays more


def test_crossed_differences_resample_the_same_graphs_for_both_arms():
    """One draw of graphs shared by seeds and arms: a method that is the baseline plus a constant
    has a shared-test-set variance of zero, so its interval is the seed-level one."""
    rng = np.random.default_rng(7)
    graphs = np.arange(300)
    drawn = draw_units(300, rng, 200)
    weights = unit_weights(graphs, drawn, graphs)
    per_seed_a, per_seed_b = [], []
    for seed in range(6):
        base = rng.exponential(size=300) + 1
        offset = 0.1 + 0.01 * seed
        per_seed_a.append(MAE().resampled(Predictions(np.zeros(300), base + offset, graphs), weights))
        per_seed_b.append(MAE().resampled(Predictions(np.zeros(300), base, graphs), weights))
    shared = shared_seed_means(np.array(per_seed_a) - np.array(per_seed_b))
    assert np.var(shared) == pytest.approx(0.0, abs=1e-20)
