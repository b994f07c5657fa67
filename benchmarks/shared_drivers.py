"""One driver against several on one store: wall time of the same grid run by one `benchbase run`
and by `--drivers` of them started at once on a shared store (as on several terminals or machines).

    python benchmarks/shared_drivers.py                         # benchmarks/small_grid.toml, 3 drivers
    python benchmarks/shared_drivers.py --grid G --drivers 3 --jobs 1

Each driver runs with `--jobs` workers; the single driver gets the same `--jobs`, so the ratio says
how well several drivers share a grid (ideal: 1 / drivers when the machine has the cores for all of
them). Each side runs into a fresh store (the featurised dataset cache is warmed first, so that
neither side pays for it). Both sides compute the same runs (same ids): the script checks that every
run is recorded once, with identical metrics, and prints how many runs each driver trained, the
wall times, their ratio, then a JSON line. Run it on a quiet machine: timings under load mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from benchbase.compute import loading
from benchbase.contract.registry import default_registry
from benchbase.running.planning import load_grid

DEFAULT_GRID = Path(__file__).with_name("small_grid.toml")


def _drivers(grid: str, store: Path, count: int, jobs: int) -> tuple[float, list[str]]:
    """Start `count` drivers at once on `store`; the wall time until the last ends, and each one's
    summary line."""
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", grid, "--store", str(store)]
    command += ["--jobs", str(jobs), "--no-leaderboard"]
    started = time.perf_counter()
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(count)]
    errors = [p.communicate()[1] for p in procs]
    seconds = time.perf_counter() - started
    for proc, err in zip(procs, errors, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"a driver ended with exit code {proc.returncode}:\n{err[-3000:]}")
    return seconds, [next((ln for ln in e.splitlines() if ln.startswith("done in ")), "?") for e in errors]


def _metrics(store: Path) -> dict[str, str]:
    with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        rows = db.execute("SELECT run_id, status, metrics FROM runs").fetchall()
    if any(status != "finished" for _, status, _ in rows):
        raise SystemExit(f"runs not finished in {store}: the comparison would mean nothing")
    return {run_id: metrics for run_id, _, metrics in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default=str(DEFAULT_GRID), help="grid file (default: benchmarks/small_grid.toml)")
    parser.add_argument("--drivers", type=int, default=3, help="drivers sharing one store")
    parser.add_argument("--jobs", type=int, default=1, help="workers of each driver")
    args = parser.parse_args()
    grid = load_grid(default_registry(), args.grid)
    for spec in {r.component("dataset")[0]: r for r in grid.runs}.values():  # warm the dataset cache
        loading.build_dataset(default_registry(), *spec.component("dataset")).prepare(progress=False)
    results = {}
    for label, count in (("one driver", 1), (f"{args.drivers} drivers", args.drivers)):
        with tempfile.TemporaryDirectory(prefix="benchbase-drivers-") as tmp:
            print(f"{label}: {len(grid.runs)} runs, --jobs {args.jobs} each", flush=True)
            seconds, summaries = _drivers(args.grid, Path(tmp) / "store", count, args.jobs)
            results[label] = (seconds, _metrics(Path(tmp) / "store"))
            trained = sum(int(line.split(": ", 1)[1].split(" finished", 1)[0]) for line in summaries)
            if trained != len(grid.runs):
                raise SystemExit(f"{label} trained {trained} runs for {len(grid.runs)}: some twice or none")
            for line in summaries:
                print(f"    {line}", flush=True)
            print(f"{label}: {seconds:.1f} s", flush=True)
    (first, (t1, m1)), (second, (t2, m2)) = results.items()
    if m1 != m2 or len(m1) != len(grid.runs):
        raise SystemExit("the two sides recorded different runs or metrics: the comparison would mean nothing")
    print(f"{second} / {first} wall time: {t2 / t1:.3f} (same {len(m1)} runs, each recorded once, identical metrics)")
    print(
        json.dumps({"one": round(t1, 1), "several": round(t2, 1), "drivers": args.drivers, "ratio": round(t2 / t1, 3)})
    )


if __name__ == "__main__":
    main()
