"""Interval estimates and paired comparisons for leaderboards.

**Hierarchical bootstrap** (two levels, as advocated by Bouthillier et al. 2021 and rliable's
stratified bootstrap): a leaderboard row is a mean over seeds, and each seed's value is a metric on
a finite test set. A replicate resamples the seeds with replacement and, within each drawn seed,
the test graphs with replacement; the 95% interval is the 2.5-97.5 percentile range of the replicate
means. Each seed is its own pretraining stage (stages are per seed), so resampling seeds resamples
stages: fine-tuning runs that share a stage are never treated as independent. Graph resamples are
drawn once per (table, slice, seed) and shared by every row of the table, which makes the
differences of two rows on the same seed *paired* down to the graphs.

**Paired comparisons**: a method against its baseline on the seeds both have. The difference of the
per-seed values is summarised by its mean, its hierarchical-bootstrap interval, a two-sided paired
t-test across seeds (`scipy.stats.ttest_rel`; an exact Wilcoxon test cannot go below p = 2/2^n, 0.031
for 6 seeds, which no correction for several comparisons lets pass), Holm's step-down correction
over the comparisons of one table, and the probability of improvement of rliable (Agarwal et al.
2021): the Mann-Whitney statistic P(X > Y) of the per-seed values (`scipy.stats.mannwhitneyu`).

**Verdict**: "better" (or "worse") needs the Holm-corrected p below 0.05 *and* a 95% interval of the
difference entirely beyond the region of practical equivalence (ROPE, declared per metric in the
grid's ``[analysis]``), on the improving (or worsening) side; otherwise "no detectable difference".
Fewer than `MIN_SEEDS` paired seeds is flagged.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Bootstrap replicates, inner (graphs within a seed) and outer (seeds).
REPLICATES = 1000
LEVEL = 0.95
ALPHA = 0.05
MIN_SEEDS = 6
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no detectable difference"


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a hash of `parts`: the same intervals on every regeneration."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_units(n_units: int, rng: np.random.Generator, replicates: int = REPLICATES) -> np.ndarray:
    """(R, n) positions drawn with replacement from ``range(n_units)``."""
    return rng.integers(n_units, size=(replicates, n_units))


def unit_weights(units: np.ndarray, drawn: np.ndarray, own_units: np.ndarray) -> np.ndarray:
    """Multiplicity (R, len(own_units)) of each of `own_units` in the resamples `units[drawn]`.
    Units drawn that a run lacks contribute nothing to it."""
    units, own_units = np.asarray(units), np.asarray(own_units)
    replicates, width = drawn.shape[0], len(own_units)
    if len(units) == width and np.array_equal(units, own_units):
        position, present = drawn, None
    else:  # map each unit to the run's own position once, then gather
        at = np.clip(np.searchsorted(own_units, units), 0, max(width - 1, 0))
        found = own_units[at] == units if width else np.zeros(len(units), dtype=bool)
        position, present = at[drawn], found[drawn]
    flat = position + np.arange(replicates)[:, None] * width
    if present is not None:
        flat = flat[present]
    return np.bincount(flat.ravel(), minlength=replicates * width).reshape(replicates, width).astype(np.float64)


def hierarchical_interval(
    replicates: np.ndarray, rng: np.random.Generator, outer: int = REPLICATES, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile interval of the mean over seeds. `replicates` (S, R) holds, per seed, the metric
    on R resamples of its graphs; an outer replicate draws S seeds with replacement and, for each,
    one of its graph resamples."""
    values = np.asarray(replicates, float)
    seeds, inner = values.shape
    pick_seed = rng.integers(seeds, size=(outer, seeds))
    pick_inner = rng.integers(inner, size=(outer, seeds))
    means = values[pick_seed, pick_inner].mean(axis=1)
    means = means[np.isfinite(means)]
    if len(means) < outer * 0.5:  # undefined on most resamples (a class absent, say)
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, float)
    out = np.full(len(p), np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out.tolist()


def probability_of_improvement(method: np.ndarray, baseline: np.ndarray, higher_is_better: bool) -> float:
    """P(a seed of the method beats a seed of the baseline), ties counting half (rliable)."""
    method, baseline = np.asarray(method, float), np.asarray(baseline, float)
    if len(method) == 0 or len(baseline) == 0:
        return math.nan
    if not higher_is_better:
        method, baseline = -method, -baseline
    u = stats.mannwhitneyu(method, baseline, alternative="two-sided").statistic
    return float(u / (len(method) * len(baseline)))


def paired_p_value(method: np.ndarray, baseline: np.ndarray) -> float:
    """Two-sided paired t-test across seeds; NaN with fewer than two pairs or no spread."""
    differences = np.asarray(method, float) - np.asarray(baseline, float)
    if len(differences) < 2 or np.ptp(differences) == 0:
        return math.nan if len(differences) < 2 or differences[0] == 0 else 0.0
    return float(stats.ttest_rel(method, baseline).pvalue)


@dataclass
class Comparison:
    """One method against its baseline on one metric."""

    method: str
    baseline: str
    metric: str
    higher_is_better: bool
    seeds: int
    difference: float
    low: float
    high: float
    p_value: float
    probability_of_improvement: float
    rope: float = 0.0
    p_holm: float = math.nan

    @property
    def verdict(self) -> str:
        if not (math.isfinite(self.p_holm) and self.p_holm < ALPHA and math.isfinite(self.low)):
            return NO_DIFFERENCE
        improving = (self.low > self.rope) if self.higher_is_better else (self.high < -self.rope)
        worsening = (self.high < -self.rope) if self.higher_is_better else (self.low > self.rope)
        return BETTER if improving else WORSE if worsening else NO_DIFFERENCE

    @property
    def flagged(self) -> bool:
        return self.seeds < MIN_SEEDS


def compare(
    method: str,
    baseline: str,
    metric: str,
    higher_is_better: bool,
    method_points: np.ndarray,
    baseline_points: np.ndarray,
    method_replicates: np.ndarray,
    baseline_replicates: np.ndarray,
    rng: np.random.Generator,
    rope: float = 0.0,
) -> Comparison:
    """Paired comparison on aligned seeds: points (S,) and graph-resample replicates (S, R) of each."""
    points_a, points_b = np.asarray(method_points, float), np.asarray(baseline_points, float)
    low, high = hierarchical_interval(np.asarray(method_replicates) - np.asarray(baseline_replicates), rng)
    return Comparison(
        method=method,
        baseline=baseline,
        metric=metric,
        higher_is_better=higher_is_better,
        seeds=len(points_a),
        difference=float(np.mean(points_a - points_b)),
        low=low,
        high=high,
        p_value=paired_p_value(points_a, points_b),
        probability_of_improvement=probability_of_improvement(points_a, points_b, higher_is_better),
        rope=rope,
    )


def correct(comparisons: list[Comparison]) -> None:
    """Set the Holm-corrected p-values of one family of comparisons."""
    for comparison, adjusted in zip(comparisons, holm([c.p_value for c in comparisons]), strict=True):
        comparison.p_holm = adjusted
