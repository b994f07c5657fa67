"""Calibration of the suite's verdicts: synthetic studies with a known truth, judged by the code
that writes FINDINGS.md.

Each simulated study compares a method with a baseline on a metric that is a mean of per-graph
errors (the `mae` metric itself computes it, and its graph resamples). A graph's error is

    error(arm, seed, graph) = difficulty(graph) + effect(arm) + affinity(arm, graph)
                              + luck(arm, seed) + noise(arm, seed, graph)

so the true difference of the arms is effect(method) - effect(baseline); `affinity` is how much an
arm suits a graph (a finite test set carries its share of it into every seed when seeds share the
test set), `luck` is the seed-to-seed variation of training, `noise` the rest. Two designs:
*crossed* (every seed scored on the same test graphs, like a threshold split or glass's official
test configurations) and *nested* (each seed draws its own test graphs, like a random split).

Truths: no effect; an effect inside the region of practical equivalence (ROPE); an effect beyond it.
For 3, 6, 10 and 30 seeds, looked at once, and a sequential study (3 seeds, then rounds of 3 up to
30, stopped when decided, as `benchbase run --until-decided` does), it prints

- coverage: the share of intervals that hold the true difference (nominal 95%; a sequential
  study's interval at its last look, whose level is 1 - α_k, is held to at least 95%);
- false better/worse: the share of "better" or "worse" verdicts when the truth is inside the ROPE
  (at most 5%, 2.5% a side);
- equivalent: the share of "equivalent" or "real but smaller than the ROPE" verdicts;
- better (power): the share of "better" verdicts when the method truly is better beyond the ROPE.

Run:  python benchmarks/calibration.py [--studies 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchbase.compute.metrics import MAE
from benchbase.contract.api import Column, Predictions
from benchbase.reporting.findings import Candidate, SeedPlan, evaluate
from benchbase.reporting.stats import BETTER, CROSSED, EQUIVALENT, NESTED, SMALL, WORSE, draw_units, unit_weights
from benchbase.reporting.tables import Cell, Row

ROPE = 0.05
GRAPHS = 200
#: Standard deviations of the error's parts (a metric near 1, like an error in eV).
AFFINITY, LUCK, NOISE = 0.15, 0.04, 0.3
#: The true difference, method minus baseline (lower is better).
TRUTHS = {"no effect": 0.0, "inside the ROPE": -0.02, "beyond the ROPE": -0.15}
COLUMN = Column("test", "mae")


def simulate_arm(rng: np.random.Generator, seeds: int, effect: float, graphs: np.ndarray, crossed: bool) -> np.ndarray:
    """(seeds, GRAPHS) errors of one arm. `graphs` (seeds, GRAPHS) holds each seed's graph ids."""
    population = graphs.max() + 1
    affinity = rng.normal(0, AFFINITY, population)
    luck = rng.normal(0, LUCK, (seeds, 1))
    noise = rng.normal(0, NOISE, graphs.shape)
    return effect + affinity[graphs] + luck + noise


def make_cell(errors: np.ndarray, graphs: np.ndarray, difficulty: np.ndarray, drawn: np.ndarray | None) -> Cell:
    """A leaderboard cell from per-seed errors, through the `mae` metric and its resamples."""
    metric, points, replicates = MAE(), [], []
    weights = None
    for seed_errors, seed_graphs in zip(errors, graphs, strict=True):
        pred = Predictions(np.zeros(len(seed_graphs)), difficulty[seed_graphs] + seed_errors, seed_graphs)
        points.append(metric(pred))
        if drawn is None:
            replicates.append(np.full(1, np.nan))
        else:
            if weights is None:  # crossed: every seed has the same graphs, so one set of weights serves all
                units = np.unique(seed_graphs)
                weights = unit_weights(units, drawn, units)
            replicates.append(metric.resampled(pred, weights))
    return Cell(np.asarray(points), np.stack(replicates), design=CROSSED if drawn is not None else NESTED)


def study(rng: np.random.Generator, seeds: int, truth: float, crossed: bool, plan: SeedPlan):
    """One simulated comparison, judged as FINDINGS.md judges it."""
    if crossed:
        graphs = np.tile(np.arange(GRAPHS), (seeds, 1))
        drawn = draw_units(GRAPHS, rng)
        population = GRAPHS
    else:
        graphs = np.arange(seeds * GRAPHS).reshape(seeds, GRAPHS)
        drawn = None
        population = seeds * GRAPHS
    difficulty = 1.0 + rng.gamma(2.0, 0.25, population)
    rows = []
    for name, effect in (("method", truth), ("baseline", 0.0)):
        errors = simulate_arm(rng, seeds, effect, graphs, crossed)
        row = Row(key=name, config={}, runs={s: {} for s in range(seeds)}, label=name)
        row.cells[COLUMN.name] = make_cell(errors, graphs, difficulty, drawn)
        rows.append(row)
    candidate = Candidate(None, rows[0], rows[1], COLUMN, ROPE, "calibration")  # type: ignore[arg-type]
    return evaluate([candidate], plan)[0]


def designs() -> list[tuple[str, int, SeedPlan]]:
    once = [(f"{n} seeds", n, SeedPlan(tuple(range(n)))) for n in (3, 6, 10, 30)]
    return once + [("sequential 3+3k, <=30", 30, SeedPlan((0, 1, 2), round=3, sequential=True))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies per cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    header = (
        f"{'design':8} {'seeds':22} {'truth':16} {'coverage':>9} {'false b/w':>10} {'equivalent':>11} "
        f"{'better':>7} {'mean seeds':>11}"
    )
    print(f"ROPE ±{ROPE}; {args.studies} studies per line; nominal: coverage 95%, false better/worse <= 5%")
    print(header)
    rng = np.random.default_rng(args.seed)
    for crossed in (True, False):
        for label, seeds, plan in designs():
            for truth_name, truth in TRUTHS.items():
                results = [study(rng, seeds, truth, crossed, plan) for _ in range(args.studies)]
                covered = np.mean([c.low <= truth <= c.high for c in results])
                verdicts = [c.verdict for c in results]
                false = np.mean([v in (BETTER, WORSE) for v in verdicts]) if abs(truth) < ROPE else np.nan
                equivalent = np.mean([v in (EQUIVALENT, SMALL) for v in verdicts])
                better = np.mean([v == BETTER for v in verdicts])
                used = np.mean([c.seeds for c in results])
                print(
                    f"{'crossed' if crossed else 'nested':8} {label:22} {truth_name:16} {covered:9.1%} "
                    f"{false:10.1%} {equivalent:11.1%} {better:7.1%} {used:11.1f}",
                    flush=True,
                )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
