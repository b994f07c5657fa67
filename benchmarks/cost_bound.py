"""Is the dry run's cost estimate an upper bound? A small QM9 grid whose runs all go to their epoch
limit (patience above the epochs), estimated with `benchbase run --dry-run`, then run with
`--jobs 1`; prints the estimate, the wall time of the run and their ratio (at least 1 for a bound).

The estimate is taken first, so it comes from a calibration (cached in $BENCHBASE_CACHE/cost/), not
from the finished runs. Timing is a benchmark's business, never a test's: the test suite checks the
bound only with a margin that a loaded machine cannot break (tests/harness/test_cost.py).

Run:  python benchmarks/cost_bound.py [--subset 2000] [--epochs 5] [--seeds 2]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = """
name = "cost-bound"
seeds = {seeds}
[train]
epochs = {epochs}
patience = {patience}
pretrain_epochs = {epochs}
batch_size = 128
[params.dataset."qm9/homo_lumo_gap"]
subset = {subset}
[params.encoder.gin]
layers = 3
hidden = 64
[[study]]
datasets = ["qm9/homo_lumo_gap"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["gin"]
pretext = ["none", "node-masking"]
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchbase.cli", *args], capture_output=True, text=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=2000, help="QM9 molecules")
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning and pretraining epochs")
    parser.add_argument("--seeds", type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grid, store = Path(tmp) / "grid.toml", Path(tmp) / "store"
        grid.write_text(
            GRID.format(
                seeds=list(range(options.seeds)),
                epochs=options.epochs,
                patience=options.epochs + 1,
                subset=options.subset,
            )
        )
        _cli("datasets", "prepare", "qm9/homo_lumo_gap", "--param", f"subset={options.subset}")
        dry = _cli("run", "--grid", str(grid), "--store", str(store), "--dry-run").stdout
        total = re.search(r"total: at most ([\d.,]+) CPU-hours(?: \(([\d,]+) s\))?", dry)
        if total is None:
            sys.exit(f"no estimate in the dry run's output:\n{dry}")
        estimate = float((total.group(2) or "").replace(",", "") or float(total.group(1).replace(",", "")) * 3600)
        started = time.perf_counter()
        _cli("run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--no-leaderboard")
        wall = time.perf_counter() - started
    print("\n".join(line for line in dry.splitlines() if "at most" in line or "not estimated" in line))
    print(f"estimate {estimate:,.0f} s, real run {wall:,.1f} s (--jobs 1): ratio {estimate / wall:.2f}")


if __name__ == "__main__":
    main()
