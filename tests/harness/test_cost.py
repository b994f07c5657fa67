"""The dry run's cost estimate: no data loaded to plan, a calibration cached per machine and code
(the same numbers on a second call), what it cannot estimate named, and an upper bound that holds
for a tiny grid run to its epoch limit."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

GRID = """
name = "cost"
seeds = [0]
[train]
epochs = 3
patience = 10
pretrain_epochs = 2
batch_size = 32
[[study]]
datasets = ["synthetic/chains", "pcqm4mv2"]
protocols = ["iid"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
"""


def _estimate(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if "at most" in line or "not estimated" in line]


def _dry_run(grid, store) -> str:
    from benchbase.cli import app

    result = CliRunner().invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(store)])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_estimate_is_cached_deterministic_and_names_absent_data(synthetic_env, tmp_path, monkeypatch):
    from benchbase.running import cost

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    first = _dry_run(grid, tmp_path / "store")
    assert "study 1: 2 runs and 1 pretraining stages, at most" in first
    assert "[from a calibration on this machine]" in first
    assert "not estimated: pcqm4mv2 (data absent: its 2 runs are skipped)" in first

    def no_calibration(self, probe):
        raise AssertionError("calibrated again although the calibration is cached")

    monkeypatch.setattr(cost.Estimator, "_calibrate", no_calibration)
    second = _dry_run(grid, tmp_path / "store")
    assert "[from a cached calibration on this machine]" in second
    strip = [line.split(" [from")[0] for line in _estimate(first)]
    assert [line.split(" [from")[0] for line in _estimate(second)] == strip


def test_a_dataset_that_is_not_prepared_is_named_not_featurised(synthetic_env, tmp_path, monkeypatch):
    from synthetic_plugin import SyntheticChains

    def arrays(self):
        raise AssertionError("the estimate loaded the data")

    monkeypatch.setattr(SyntheticChains, "describe", lambda self: {"size": 120, "cached": False})
    monkeypatch.setattr(SyntheticChains, "arrays", arrays)
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace(', "pcqm4mv2"', ""))
    output = _dry_run(grid, tmp_path / "store")
    # Its pretraining stage is named too, though no run of it could be estimated.
    study = "study 1: 2 runs and 0 pretraining stages, at most 0.00 CPU-hours (0 s) (2 runs and 1 stage not estimated)"
    assert study in output
    assert (
        "not estimated: pretraining on synthetic/chains, synthetic/chains (not prepared on this machine: "
        "`benchbase datasets prepare synthetic/chains` first)" in output
    )


@pytest.mark.slow
def test_the_estimate_bounds_a_grid_run_to_its_epoch_limit(synthetic_env, tmp_path):
    """Every run goes to its epoch limit (patience > epochs); the estimate, made before, is at least
    the seconds its jobs took. The bound has a wide margin (a start allowance per job), so that a
    loaded machine does not break it; benchmarks/cost_bound.py compares it at a realistic size."""
    import json
    import sqlite3
    from contextlib import closing

    from benchbase.cli import app

    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(GRID.replace(', "pcqm4mv2"', ""))
    estimate = _dry_run(grid, store)
    seconds = float(re.search(r"total: at most [\d.,]+ CPU-hours \(([\d,]+) s\)", estimate).group(1).replace(",", ""))
    args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--no-leaderboard"]
    assert CliRunner().invoke(app, args).exit_code == 0
    with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        runs = [json.loads(r[0]) for r in db.execute("SELECT details FROM runs")]
        stages = [json.loads(r[0]) for r in db.execute("SELECT details FROM stages")]
    assert [r["fit"]["epochs_run"] for r in runs] == [3, 3]
    spent = sum(r["seconds"]["total"] for r in runs) + sum(s["seconds"] for s in stages)
    assert seconds >= spent


def test_a_resumed_run_does_not_lower_the_per_epoch_figure(synthetic_env):
    """A run that resumed from a snapshot ran its last epochs in its last job: its time over all its
    epochs would make the bound too low."""
    from benchbase.contract.registry import default_registry
    from benchbase.running.cost import Estimator, _store_key

    spec = {"dataset": {"name": "synthetic/chains", "params": {}}, "encoder": {"name": "tiny", "params": {}},
            "train": {"batch_size": 32, "max_nodes": None}, "numerics": {"device": "cpu", "threads": 1}}  # fmt: skip

    def record(seconds, resumed):
        details = {"fit": {"epochs_run": 100}, **({"resumed_at_epochs": [95]} if resumed else {})}
        return {"status": "finished", "spec": spec, "seconds": seconds, "details": details}

    estimator = Estimator(default_registry(), [record(10.0, True), record(50.0, False)])
    assert estimator.store_per_epoch == {_store_key(spec): 0.5}
    assert Estimator(default_registry(), [record(10.0, True)]).store_per_epoch == {}
