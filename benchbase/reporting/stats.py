"""Interval estimates, paired comparisons and their five verdicts.

**The design decides the interval.** A leaderboard cell is a mean over seeds of a metric computed on
a finite test set. Two designs occur, and the stored splits say which (`benchbase.reporting.tables`):

- *nested*: each seed has its own test set (random splits). A seed's value then carries its own
  test-set noise, independent across seeds, and the seed-to-seed spread already measures it: the
  interval is the ordinary seed-level t-interval, with S - 1 degrees of freedom.
- *crossed*: every seed is scored on the same test graphs (a threshold, size or scaffold split, the
  glass data's official test configurations). The test set's noise is then common to every seed and
  does not shrink with more seeds, so the seed spread misses it. Its variance is estimated by
  resampling the shared test graphs - one draw of graphs per replicate, the *same* draw for every
  seed and for both arms of a comparison (Bouthillier et al. 2021, "Accounting for variance in
  machine learning benchmarks", decompose benchmark variance the same way) - and added to the
  seed-level variance. The degrees of freedom follow Welch-Satterthwaite, the resampling term
  counting as known: ``df = (S - 1) (V / V_seed)^2``.

Why a t-interval and not a percentile bootstrap over seeds: with 3-10 seeds the percentile bootstrap
behaves like a z-interval (its quantiles are those of the empirical distribution, about 1.8 standard
errors for six seeds where Student's t needs 2.57) and covers about 85% at a nominal 95%;
`benchmarks/calibration.py` measures the coverage of what is used here.

**One statistic, three tests.** A paired comparison (method minus baseline on the seeds both have)
yields a mean difference D, its standard error and degrees of freedom. From the same t statistic
come the two-sided test of "no difference", the two one-sided tests of equivalence (TOST, Schuirmann
1987) against the region of practical equivalence (ROPE, ±rho in the metric's unit), and the
interval, so the interval and the tests can never disagree.

**Five verdicts** (α = 0.05, after Holm's correction over one question's family):

- *better* / *worse*: "no difference" is rejected and the interval lies wholly beyond the ROPE on the
  improving (worsening) side;
- *real but smaller than the ROPE*: "no difference" is rejected and equivalence is shown;
- *equivalent*: equivalence is shown (TOST), "no difference" is not rejected;
- *inconclusive*: anything else. It states the smallest difference its seeds detect with 80% power
  (the MDE) and the number of seeds the observed spread would need for the MDE to reach the ROPE - or
  that no number of seeds can, when the shared test set's noise alone is too large.

**Sequential studies** (`benchbase run --until-decided`) look at the data after every round of seeds
and stop a comparison once it is decided. To keep the error rates under this optional stopping, look
k spends α_k = α / (k (k + 1)) (which sums to α over any number of looks): a union bound over looks,
the simplest valid alpha-spending (Lan & DeMets 1983 give sharper boundaries for a fixed number of
looks; Howard et al. 2021 discuss confidence sequences). Each interval at look k has level 1 - α_k,
so the intervals of all looks hold together with probability 1 - α - an anytime-valid confidence
sequence. A study run once, without looks, uses α itself.

**P(improvement)** is paired: the share of paired seeds on which the method beats the baseline, ties
counting half (the paired form of rliable's probability of improvement, Agarwal et al. 2021).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Graph resamples of a shared test set (crossed designs).
REPLICATES = 1000
ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 6
#: Seeds searched at most when sizing an undecided comparison.
MAX_SEEDS_SEARCHED = 100_000

BETTER, WORSE = "better", "worse"
EQUIVALENT = "equivalent"
SMALL = "real but smaller than the ROPE"
INCONCLUSIVE = "inconclusive"
VERDICTS = (BETTER, WORSE, EQUIVALENT, SMALL, INCONCLUSIVE)
#: Verdicts that end a sequential study's comparison.
DECIDED = frozenset({BETTER, WORSE, EQUIVALENT, SMALL})

CROSSED, NESTED = "crossed", "nested"


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


def look_alpha(look: int, sequential: bool, alpha: float = ALPHA) -> float:
    """The error rate spent at look `look` (1-based): α for a study looked at once, α / (k (k + 1))
    for a sequential one."""
    if not sequential:
        return alpha
    return alpha / (look * (look + 1))


# --- estimates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its variance split into a seed part and a shared-test-set part."""

    mean: float
    seeds: int
    var_seed: float  # sample variance of the per-seed values (ddof 1)
    var_shared: float  # variance of the seed mean over resamples of a shared test set (0 if nested)

    @property
    def se(self) -> float:
        if self.seeds < 2:
            return math.nan
        return math.sqrt(self.var_seed / self.seeds + self.var_shared)

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom, the resampling term counting as known."""
        if self.seeds < 2:
            return math.nan
        seed_part = self.var_seed / self.seeds
        if seed_part <= 0:
            return math.inf if self.var_shared > 0 else math.nan
        return (self.seeds - 1) * ((seed_part + self.var_shared) / seed_part) ** 2

    @property
    def defined(self) -> bool:
        return math.isfinite(self.mean) and math.isfinite(self.se) and self.se > 0 and not math.isnan(self.df)

    def quantile(self, q: float) -> float:
        return float(stats.t.ppf(q, self.df)) if math.isfinite(self.df) else float(stats.norm.ppf(q))

    def _cdf(self, x: float) -> float:
        return float(stats.t.cdf(x, self.df)) if math.isfinite(self.df) else float(stats.norm.cdf(x))

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        if not self.defined:
            return math.nan, math.nan
        half = self.quantile(1 - alpha / 2) * self.se
        return self.mean - half, self.mean + half

    def p_value(self) -> float:
        """Two-sided test of a zero mean."""
        if not self.defined:
            return math.nan
        return min(1.0, 2 * (1 - self._cdf(abs(self.mean) / self.se)))

    def p_equivalence(self, rope: float) -> float:
        """TOST: the larger p of the one-sided tests of mean <= -rope and mean >= rope."""
        if not self.defined or rope <= 0:
            return math.nan
        below = 1 - self._cdf((self.mean + rope) / self.se)
        above = self._cdf((self.mean - rope) / self.se)
        return max(below, above)

    def detectable(self, alpha: float, power: float = POWER) -> float:
        """The smallest true difference a two-sided test at `alpha` detects with `power`."""
        if not self.defined:
            return math.nan
        return (self.quantile(1 - alpha / 2) + self.quantile(power)) * self.se

    def seeds_needed(self, target: float, alpha: float, power: float = POWER) -> int | None:
        """Seeds at which the detectable difference falls to `target` with the observed spread;
        None when no number of seeds can (the shared test set's noise alone is too large) or the
        spread is unknown."""
        if not (target > 0 and self.seeds >= 2 and math.isfinite(self.var_seed)):
            return None
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
        if z * math.sqrt(self.var_shared) >= target:
            return None

        def reaches(n: int) -> bool:
            trial = Estimate(self.mean, n, self.var_seed, self.var_shared)
            return trial.detectable(alpha, power) <= target

        low, high = 2, 2
        while not reaches(high):
            if high >= MAX_SEEDS_SEARCHED:
                return None
            low, high = high, min(high * 2, MAX_SEEDS_SEARCHED)
        while low < high:  # smallest n that reaches
            middle = (low + high) // 2
            low, high = (low, middle) if reaches(middle) else (middle + 1, high)
        return high


def estimate(points: np.ndarray, shared: np.ndarray | None = None) -> Estimate:
    """The mean of per-seed `points` (S,); `shared` (R,) is the seed mean recomputed on R resamples
    of a test set shared by every seed (crossed design), None when each seed has its own (nested)."""
    values = np.asarray(points, float)
    seeds = len(values)
    var_seed = float(values.var(ddof=1)) if seeds > 1 else math.nan
    var_shared = 0.0
    if shared is not None:
        finite = np.asarray(shared, float)
        finite = finite[np.isfinite(finite)]
        var_shared = float(finite.var(ddof=1)) if len(finite) > 1 else 0.0
    return Estimate(float(values.mean()) if seeds else math.nan, seeds, var_seed, var_shared)


def shared_seed_means(replicates: np.ndarray) -> np.ndarray | None:
    """The seed mean on each common resample, from (S, R) per-seed values on the same R draws."""
    values = np.asarray(replicates, float)
    if values.ndim != 2 or values.shape[1] < 2:
        return None
    with np.errstate(invalid="ignore"):
        return values.mean(axis=0)


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
    """The share of paired seeds on which the method beats the baseline, ties counting half."""
    method, baseline = np.asarray(method, float), np.asarray(baseline, float)
    if len(method) == 0 or len(method) != len(baseline):
        return math.nan
    gain = method - baseline if higher_is_better else baseline - method
    return float(((gain > 0).sum() + 0.5 * (gain == 0).sum()) / len(gain))


# --- comparisons -------------------------------------------------------------------------------


@dataclass
class Comparison:
    """One method against its baseline on one metric, at one look of its study."""

    method: str
    baseline: str
    metric: str
    higher_is_better: bool
    estimate: Estimate
    probability_of_improvement: float
    design: str = NESTED
    rope: float = 0.0
    rope_source: str = "none declared"
    look: int = 1
    sequential: bool = False
    family_size: int = 1
    p_holm: float = math.nan
    p_equivalence_holm: float = math.nan

    @property
    def seeds(self) -> int:
        return self.estimate.seeds

    @property
    def difference(self) -> float:
        return self.estimate.mean

    @property
    def alpha(self) -> float:
        """The error rate this look spends (α for a study looked at once)."""
        return look_alpha(self.look, self.sequential)

    @property
    def interval(self) -> tuple[float, float]:
        return self.estimate.interval(self.alpha)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    @property
    def p_value(self) -> float:
        return self.estimate.p_value()

    @property
    def p_equivalence(self) -> float:
        return self.estimate.p_equivalence(self.rope)

    @property
    def level(self) -> float:
        return 1 - self.alpha

    def _look_adjusted(self, p: float) -> float:
        """A p-value on the scale of α: p · α / α_k, so that one Holm family can hold comparisons
        stopped at different looks."""
        return min(1.0, p * ALPHA / self.alpha) if math.isfinite(p) else math.nan

    @property
    def different(self) -> bool:
        return math.isfinite(self.p_holm) and self.p_holm < ALPHA

    @property
    def equivalent(self) -> bool:
        return math.isfinite(self.p_equivalence_holm) and self.p_equivalence_holm < ALPHA

    @property
    def verdict(self) -> str:
        low, high = self.interval
        if self.different and math.isfinite(low):
            beyond_up, beyond_down = low > self.rope, high < -self.rope
            if beyond_up or beyond_down:
                return BETTER if beyond_up == self.higher_is_better else WORSE
            if self.equivalent:
                return SMALL
            return INCONCLUSIVE
        return EQUIVALENT if self.equivalent else INCONCLUSIVE

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED

    @property
    def detectable(self) -> float:
        """The MDE: the smallest difference these seeds detect with 80% power, at this look's α
        shared over the family (Bonferroni's bound on Holm's first step)."""
        return self.estimate.detectable(self.alpha / max(self.family_size, 1))

    @property
    def seeds_needed(self) -> int | None:
        return self.estimate.seeds_needed(self.rope, self.alpha / max(self.family_size, 1))

    @property
    def flagged(self) -> bool:
        return self.seeds < MIN_SEEDS

    def explanation(self) -> str:
        """What an undecided comparison would need, in one sentence; empty when decided."""
        if self.decided:
            return ""
        if self.seeds < 2:
            return "one paired seed: no spread to test against"
        if not self.estimate.defined:
            return "every paired difference is the same: no spread to test against; add seeds that vary"
        mde = f"MDE {self.detectable:.4g}"
        prefix = "a difference is real, but whether it exceeds the ROPE is open; " if self.different else ""
        if self.rope <= 0:
            return prefix + f"{mde}; no ROPE declared, so equivalence cannot be shown"
        needed = self.seeds_needed
        if needed is None:
            limit = f"more seeds cannot decide at ROPE ±{self.rope:g}"
            return prefix + f"{mde}; {limit}: the shared test set's noise alone is too large (a larger test set would)"
        return prefix + f"{mde}; about {needed} paired seeds would bring the MDE to the ROPE ±{self.rope:g}"


def compare(
    method: str,
    baseline: str,
    metric: str,
    higher_is_better: bool,
    method_points: np.ndarray,
    baseline_points: np.ndarray,
    shared_differences: np.ndarray | None = None,
    rope: float = 0.0,
    rope_source: str = "none declared",
    look: int = 1,
    sequential: bool = False,
) -> Comparison:
    """A paired comparison on aligned seeds. `shared_differences` (R,): the mean paired difference
    on R resamples of a test set that every seed shares (crossed design), or None (nested)."""
    points_a, points_b = np.asarray(method_points, float), np.asarray(baseline_points, float)
    return Comparison(
        method=method,
        baseline=baseline,
        metric=metric,
        higher_is_better=higher_is_better,
        estimate=estimate(points_a - points_b, shared_differences),
        probability_of_improvement=probability_of_improvement(points_a, points_b, higher_is_better),
        design=NESTED if shared_differences is None else CROSSED,
        rope=float(rope),
        rope_source=rope_source,
        look=look,
        sequential=sequential,
    )


def correct(comparisons: list[Comparison]) -> None:
    """Holm's correction over one family (one question, or one table's comparisons), applied to
    the tests of difference and of equivalence alike, each p first put on the scale of α."""
    for comparison in comparisons:
        comparison.family_size = len(comparisons)
    differences = holm([c._look_adjusted(c.p_value) for c in comparisons])
    equivalences = holm([c._look_adjusted(c.p_equivalence) for c in comparisons])
    for comparison, p_diff, p_eq in zip(comparisons, differences, equivalences, strict=True):
        comparison.p_holm, comparison.p_equivalence_holm = p_diff, p_eq
