"""`benchbase run --until-decided`: rounds of seeds for the comparisons still open.

The rounds are driven by the real loop (`benchbase.reporting.until_decided`), the real store and the real
replay of looks (`benchbase.reporting.findings.evaluate`); only training is replaced by planted predictions,
a function of (method, seed), so that which comparison decides is known in advance."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.compute.runspec import RunSpec
from benchbase.compute.settings import PROFILES
from benchbase.contract.api import Predictions
from benchbase.contract.registry import default_registry
from benchbase.reporting.publish import write_leaderboards
from benchbase.reporting.until_decided import run_until_decided
from benchbase.running.analysis import Budget
from benchbase.running.planning import Grid, make_spec
from benchbase.running.store import FINISHED, Store, write_predictions

# inverse-frequency: decided (better) at once; class-balanced: equivalent, but its seeds vary enough
# that three do not show it; logit-adjustment: so variable that no affordable number of seeds would.
EFFECTS = {"none": 0.0, "inverse-frequency": -0.3, "class-balanced": 0.0, "logit-adjustment": 0.0}
LUCK = {"none": 0.0, "inverse-frequency": 0.0, "class-balanced": 0.02, "logit-adjustment": 0.5}
GRAPHS = 300


def _grid(budget_round: int = 3, max_seeds: int = 12) -> Grid:
    registry = default_registry()
    runs = []
    for method in EFFECTS:
        for seed in (0, 1, 2):
            chosen = {
                "dataset": "synthetic/chains",
                "protocol": "iid",
                "encoder": "tiny",
                "pretext": "tiny-masking",
                "rebalancer": method,
            }
            runs.append(RunSpec(make_spec(registry, chosen, {}, PROFILES["quick"], seed, "quick")))
    question = {
        "id": "q",
        "title": "Re-weighting?",
        "factor": "rebalancer",
        "baseline": "none",
        "metrics": ["test_mae"],
    }
    return Grid(
        name="seq",
        profile="quick",
        seeds=[0, 1, 2],
        runs=runs,
        source="seq.toml",
        analysis={"rope": {"mae": 0.05}, "until_decided": {"round": budget_round, "max_seeds": max_seeds}},
        questions=[question],
    )


def _planted(store: Store, run: RunSpec) -> None:
    """Record a finished run whose predictions depend only on its rebalancer and seed."""
    method = run.spec["rebalancer"]["name"]
    seed = run.seed
    rng = np.random.default_rng(int(hashlib.sha256(f"{method}/{seed}".encode()).hexdigest()[:8], 16))
    base = np.random.default_rng(seed).exponential(size=GRAPHS) + 0.5  # the seed's baseline error per graph
    error = base + EFFECTS[method] + rng.normal(scale=0.05, size=GRAPHS) + rng.normal(scale=LUCK[method])
    pred = Predictions(np.zeros(GRAPHS), np.maximum(error, 0), np.arange(GRAPHS))
    path = store.predictions_path(run.run_id)
    sha = write_predictions(path, {"test": {"count": pred}})
    store.record_run(
        run.run_id,
        "seq",
        run.spec,
        FINISHED,
        metrics={"count": {"test_mae": float(np.mean(pred.y_pred))}},
        details={"tasks": {"count": {"name": "count", "unit": "nodes"}}},
        predictions=str(path.relative_to(store.root)),
        predictions_sha256=sha,
        stage_id=run.stage_id,
    )


def _fake_runner(store: Store, stop_after: int | None = None):
    """A `run_grid` that plants each run; with `stop_after`, raises KeyboardInterrupt (a kill)
    once that many runs were recorded in all."""
    done = []

    def run_grid(grid: Grid) -> None:
        store.record_grid(
            grid.name, grid.source, {"analysis": grid.analysis, "questions": grid.questions, "seeds": grid.seeds}
        )
        for run in grid.runs:
            if stop_after is not None and len(done) >= stop_after:
                raise KeyboardInterrupt
            if store.run(run.run_id) is None:
                _planted(store, run)
                done.append(run.run_id)

    return run_grid


def _seeds_by_method(store: Store) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for run in store.runs():
        out.setdefault(run["spec"]["rebalancer"]["name"], []).append(int(run["spec"]["seed"]))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.slow
def test_decided_comparisons_stop_open_ones_get_seeds_and_futile_ones_none(synthetic_env, tmp_path):
    store = Store(tmp_path / "store")
    said: list[str] = []
    run_until_decided(_grid(), store, _fake_runner(store), Budget(), said.append)
    seeds = _seeds_by_method(store)
    assert seeds["inverse-frequency"] == [0, 1, 2]  # decided at the first look: no more seeds
    assert seeds["logit-adjustment"] == [0, 1, 2]  # futile: hundreds of seeds would be needed
    assert len(seeds["class-balanced"]) > 3 and seeds["none"] == seeds["class-balanced"]
    assert "would need more than max_seeds" in said[-1]
    write_leaderboards(store, tmp_path / "lb")
    findings = (tmp_path / "lb" / "FINDINGS.md").read_text()
    assert "Sequential: 3 seeds, then rounds of 3" in findings
    assert "decided (better) after 3 seeds" in findings
    assert f"decided (equivalent) after {len(seeds['class-balanced'])} seeds" in findings
    assert "logit-adjustment vs tiny / tiny-masking / none, `test_mae`: open after 3 seeds" in findings


def test_the_budget_stops_the_open_comparison(synthetic_env, tmp_path):
    store = Store(tmp_path / "store")
    said: list[str] = []
    run_until_decided(_grid(), store, _fake_runner(store), Budget(runs=6), said.append)
    seeds = _seeds_by_method(store)
    assert seeds["class-balanced"] == list(range(6))  # one round of 3 seeds x 2 rows = 6 runs
    assert "budget of 6 added runs" in said[-1]


@pytest.mark.slow
def test_a_killed_study_resumes_to_the_same_runs(synthetic_env, tmp_path):
    reference = Store(tmp_path / "reference")
    run_until_decided(_grid(), reference, _fake_runner(reference), Budget(), lambda _: None)
    store = Store(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        run_until_decided(_grid(), store, _fake_runner(store, stop_after=13), Budget(), lambda _: None)
    assert len(store.runs()) == 13  # the first round of added seeds was cut short
    run_until_decided(_grid(), store, _fake_runner(store), Budget(), lambda _: None)
    assert sorted(r["run_id"] for r in store.runs()) == sorted(r["run_id"] for r in reference.runs())


@pytest.mark.slow
def test_cli_until_decided_runs_rounds_on_the_synthetic_plugin(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        """
name = "synthetic-seq"
seeds = [0, 1]
[train]
epochs = 2
[params.dataset."synthetic/chains"]
graphs = 60
[analysis]
rope = { mae = 0.001 }
until_decided = { round = 1, max_seeds = 3 }
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
[[question]]
id = "p"
title = "Pretraining?"
factor = "pretext"
baseline = "none"
metrics = ["test_mae"]
"""
    )
    out = tmp_path / "lb"
    result = CliRunner().invoke(
        app, ["run", str(grid), "--store", str(tmp_path / "store"), "--leaderboard-out", str(out), "--jobs", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "until-decided:" in result.output
    assert "Sequential: 2 seeds, then rounds of 1" in (out / "FINDINGS.md").read_text()
    bad = CliRunner().invoke(app, ["run", str(grid), "--store", str(tmp_path / "s2"), "--budget", "soon"])
    assert bad.exit_code == 2 and "--budget" in bad.output
