"""The pipelined scheduler against a barrier (every pretraining stage before any run), and an
executor against the local one, on the same grid, back to back in one process run.

    python benchmarks/scheduler.py                      # the default grid, --jobs 2, pipeline vs barrier
    python benchmarks/scheduler.py --compare-executor ray

Each side runs into a fresh store (the featurised dataset cache is warmed first, so that neither
side pays for it); the grid's wall time of each, and their ratio, are printed, then a JSON line.
Both sides compute the same runs (same ids): the script checks that their metrics are identical.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from benchbase.compute import loading
from benchbase.compute.runspec import RunSpec
from benchbase.contract.registry import default_registry
from benchbase.running.driver import GridRunner
from benchbase.running.executors import make_executor
from benchbase.running.planning import load_grid
from benchbase.running.store import Store


def _quiet(done: int, total: int, message: str) -> None:
    if done == total or done % 20 == 0:
        print(f"    {done}/{total} {message}", flush=True)


class BarrierRunner(GridRunner):
    """The reference schedule: every run is held until all pretraining stages are done."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.held: list[RunSpec] = []

    def _offer_run(self, run: RunSpec, after: tuple[str, ...] = ()) -> None:
        if self.stage_specs.keys() - self.ready_stages:
            self.held.append(run)
        else:
            super()._offer_run(run, after)

    def _stage_available(self, stage_id: str, reused: bool) -> None:
        super()._stage_available(stage_id, reused)
        if not self.stage_specs.keys() - self.ready_stages:
            held, self.held = self.held, []
            for run in held:
                super()._offer_run(run)


def timed(grid_path: str | None, executor: str, jobs: int, barrier: bool, root: Path) -> tuple[float, dict]:
    grid = load_grid(default_registry(), grid_path)
    store = Store(root)
    started = time.perf_counter()
    with make_executor(executor, jobs, workdir=root / "engines") as engine:
        summary = (BarrierRunner if barrier else GridRunner)(grid, store, engine, _quiet).run()
    seconds = time.perf_counter() - started
    if summary.failed:
        raise SystemExit(f"{summary.failed} runs failed: {summary.failures[:3]}")
    with closing(sqlite3.connect(root / "benchbase.sqlite")) as db:
        metrics = dict(db.execute("SELECT run_id, metrics FROM runs WHERE status = 'finished'").fetchall())
    return seconds, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default=None, help="grid file (default: the built-in default grid)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--compare-executor", default=None, help="compare this executor with local instead")
    args = parser.parse_args()
    grid = load_grid(default_registry(), args.grid)
    for spec in {r.component("dataset")[0]: r for r in grid.runs}.values():  # warm the dataset cache
        loading.build_dataset(default_registry(), *spec.component("dataset")).prepare(progress=False)
    if args.compare_executor:
        sides = [("local", "local", False), (args.compare_executor, args.compare_executor, False)]
    else:
        sides = [("barrier", "local", True), ("pipeline", "local", False)]
    results = {}
    for label, executor, barrier in sides:
        with tempfile.TemporaryDirectory(prefix=f"benchbase-{label}-") as tmp:
            print(f"{label}: {len(grid.runs)} runs, --jobs {args.jobs}", flush=True)
            results[label] = timed(args.grid, executor, args.jobs, barrier, Path(tmp))
            print(f"{label}: {results[label][0]:.1f} s", flush=True)
    (first, (t1, m1)), (second, (t2, m2)) = results.items()
    if m1 != m2:
        raise SystemExit("the two sides computed different metrics: the comparison would mean nothing")
    print(f"{second} / {first} wall time: {t2 / t1:.3f} (same {len(m1)} runs, identical metrics)")
    print(json.dumps({first: round(t1, 1), second: round(t2, 1), "ratio": round(t2 / t1, 3), "runs": len(m1)}))


if __name__ == "__main__":
    main()
