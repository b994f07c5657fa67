"""Interval estimates and paired comparisons (`benchbase.stats`) against scipy and known values,
and the verdict's behaviour on synthetic experiments with and without a planted effect."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchbase.api import Predictions
from benchbase.metrics import MAE
from benchbase.stats import (
    BETTER,
    NO_DIFFERENCE,
    WORSE,
    Comparison,
    compare,
    correct,
    draw_units,
    hierarchical_interval,
    holm,
    paired_p_value,
    probability_of_improvement,
    rng_for,
    unit_weights,
)


def test_one_seed_interval_is_the_ordinary_percentile_bootstrap():
    """With one seed the hierarchical bootstrap reduces to scipy's percentile bootstrap of the
    metric over graphs; the two agree within Monte Carlo error."""
    rng = np.random.default_rng(0)
    errors = rng.exponential(size=400)
    pred = Predictions(np.zeros(400), errors, np.arange(400))
    units = np.arange(400)
    replicates = MAE().resampled(pred, unit_weights(units, draw_units(400, rng, 4000), units))
    low, high = hierarchical_interval(replicates[None, :], rng, outer=4000)
    reference = stats.bootstrap((errors,), np.mean, method="percentile", n_resamples=4000, random_state=1)
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.01)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.01)


def test_interval_widens_with_spread_between_seeds():
    rng = rng_for("spread")
    tight = np.full((6, 200), 1.0) + rng.normal(scale=0.01, size=(6, 200))
    loose = tight + np.linspace(-0.5, 0.5, 6)[:, None]
    low_t, high_t = hierarchical_interval(tight, rng_for("a"))
    low_l, high_l = hierarchical_interval(loose, rng_for("a"))
    assert high_l - low_l > 10 * (high_t - low_t)
    assert low_l < 1.0 < high_l


def test_holm_against_hand_computed_values():
    # p sorted 0.01 < 0.02 < 0.03 < 0.04 with m = 4: 0.04, 0.06, 0.06 (monotone), 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    adjusted = holm([0.5, float("nan"), 0.01])
    assert adjusted[0] == pytest.approx(0.5) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 0.8 x 2 capped at 1; monotone


def test_paired_p_value_is_scipys_paired_t_test():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=8), rng.normal(size=8)
    assert paired_p_value(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert np.isnan(paired_p_value(a[:1], b[:1]))
    assert np.isnan(paired_p_value(a, a))


def test_probability_of_improvement_counts_pairs():
    method, baseline = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.0])
    # higher is better: pairs (m > b) = 0+0+1 + .5+.5+1 + 1+1+1 -> 6 / 9
    assert probability_of_improvement(method, baseline, higher_is_better=True) == pytest.approx(6 / 9)
    assert probability_of_improvement(method, baseline, higher_is_better=False) == pytest.approx(3 / 9)


def _experiment(rng: np.random.Generator, effect: float, seeds: int = 6, graphs: int = 300) -> Comparison:
    """One synthetic comparison: per seed a baseline error per test graph, the method's error the
    same plus `effect` (lower is better, so a negative effect is an improvement), seed-level noise."""
    units = np.arange(graphs)
    points_a, points_b, reps_a, reps_b = [], [], [], []
    for _ in range(seeds):
        base = rng.exponential(size=graphs) + rng.normal(scale=0.05)
        method = np.maximum(base + effect + rng.normal(scale=0.05) + rng.normal(scale=0.2, size=graphs), 0)
        drawn = draw_units(graphs, rng, 200)
        weights = unit_weights(units, drawn, units)
        for errors, points, reps in ((method, points_a, reps_a), (base, points_b, reps_b)):
            pred = Predictions(np.zeros(graphs), errors, units)
            points.append(MAE()(pred))
            reps.append(MAE().resampled(pred, weights))
    return compare(
        "m",
        "b",
        "test_mae",
        False,
        np.array(points_a),
        np.array(points_b),
        np.array(reps_a),
        np.array(reps_b),
        rng,
        rope=0.01,
    )


def test_planted_improvement_is_found():
    rng = np.random.default_rng(3)
    comparison = _experiment(rng, effect=-0.3)
    correct([comparison])
    assert comparison.verdict == BETTER and comparison.high < -0.01


def test_no_effect_is_called_a_difference_at_most_at_the_nominal_rate():
    rng = np.random.default_rng(4)
    verdicts = []
    for _ in range(200):
        comparison = _experiment(rng, effect=0.0, graphs=150)
        correct([comparison])
        verdicts.append(comparison.verdict)
    false_positives = sum(v != NO_DIFFERENCE for v in verdicts)
    # alpha = 0.05: with 200 experiments, at most ~10 expected; 20 would be far above nominal
    assert false_positives <= 20


def test_verdict_needs_the_interval_beyond_the_rope():
    base = dict(
        method="m",
        baseline="b",
        metric="test_mae",
        higher_is_better=False,
        seeds=6,
        p_value=0.001,
        probability_of_improvement=1.0,
        p_holm=0.001,
    )
    assert Comparison(difference=-0.05, low=-0.08, high=-0.02, rope=0.01, **base).verdict == BETTER
    assert Comparison(difference=-0.005, low=-0.008, high=-0.002, rope=0.01, **base).verdict == NO_DIFFERENCE
    assert Comparison(difference=0.05, low=0.02, high=0.08, rope=0.01, **base).verdict == WORSE
    not_significant = {**base, "p_holm": 0.2}
    assert Comparison(difference=-0.05, low=-0.08, high=-0.02, rope=0.0, **not_significant).verdict == NO_DIFFERENCE
    assert Comparison(difference=-0.05, low=-0.08, high=-0.02, rope=0.0, **{**base, "seeds": 3}).flagged
