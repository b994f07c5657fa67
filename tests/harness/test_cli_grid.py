"""The grid runner through the real CLI: dry run, run, resume, failures, exports, leaderboards."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from benchbase.cli import app

runner = CliRunner()


def invoke(*args: str):
    args = [str(a) for a in args]
    if args[0] == "run" and "--jobs" not in args:
        args += ["--jobs", "1"]  # in-process: the tests' grids are too small to pay for workers
    return runner.invoke(app, args)


def test_dry_run_lists_runs_skips_and_count(synthetic_env, synthetic_grid, tmp_path):
    result = invoke("run", "--grid", synthetic_grid, "--dry-run", "--store", tmp_path / "store")
    assert result.exit_code == 0, result.output
    assert "total: 12 runs (0 already finished), 4 skipped" in result.output
    assert "4 shared pretraining stages" in result.output
    assert "rebalancer has no class-labelled loss to act on" in result.output
    assert not (tmp_path / "store" / "benchbase.sqlite").exists()


@pytest.mark.slow
def test_run_records_every_run_and_rerun_trains_nothing(synthetic_env, synthetic_grid, tmp_path):
    store, out = tmp_path / "store", tmp_path / "lb"
    result = invoke("run", "--grid", synthetic_grid, "--store", store, "--leaderboard-out", out)
    assert result.exit_code == 0, result.output
    assert "12 finished, 0 failed" in result.output
    assert "pretraining stages computed 4" in result.output
    with sqlite3.connect(store / "benchbase.sqlite") as db:
        before = db.execute("SELECT run_id, updated_at FROM runs ORDER BY run_id").fetchall()
        stages = db.execute("SELECT count(*) FROM stages").fetchone()[0]
    assert len(before) == 12 and stages == 4
    again = invoke("run", "--grid", synthetic_grid, "--store", store, "--leaderboard-out", out)
    assert again.exit_code == 0, again.output
    assert "0 finished, 0 failed, 12 were already finished" in again.output
    with sqlite3.connect(store / "benchbase.sqlite") as db:
        after = db.execute("SELECT run_id, updated_at FROM runs ORDER BY run_id").fetchall()
    assert after == before  # nothing was run or rewritten


@pytest.mark.slow
def test_runs_are_deterministic_for_a_seed(synthetic_env, synthetic_grid, tmp_path):
    metrics = []
    for name in ("a", "b"):
        store = tmp_path / name
        assert invoke("run", "--grid", synthetic_grid, "--store", store, "--no-leaderboard").exit_code == 0
        rows = [json.loads(line) for line in invoke("results", "--store", store).output.splitlines()]
        metrics.append({r["run_id"]: r["metrics"] for r in rows})
    assert metrics[0] == metrics[1]


@pytest.mark.slow
def test_failing_run_is_recorded_and_grid_goes_on(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        """
name = "explode"
seeds = [0]
[train]
epochs = 2
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
[study.sweep]
"encoder.tiny.explode" = [false, true]
"""
    )
    store = tmp_path / "store"
    result = invoke("run", "--grid", grid, "--store", store, "--leaderboard-out", tmp_path / "lb")
    assert result.exit_code == 1
    assert "1 finished, 1 failed" in result.output
    rows = [json.loads(line) for line in invoke("results", "--store", store).output.splitlines()]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and "nan" in failed[0]["error"].lower()
    assert failed[0]["spec"]["encoder"]["params"]["explode"] is True


def test_bad_grid_input_gives_a_clear_error(synthetic_env, tmp_path):
    cases = {
        "unknown encoder": ('encoders = ["nope"]', "unknown encoder 'nope'"),
        "unknown param": (
            'encoders = ["tiny"]\n[study.params.encoder.tiny]\nwidth = 3',
            "[study.params.encoder.\"tiny\"]: unknown parameter 'width'; known: explode",
        ),
    }
    for body, expected in cases.values():
        grid = tmp_path / "bad.toml"
        grid.write_text(f'[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\n{body}\n')
        result = invoke("run", "--grid", grid, "--dry-run")
        assert result.exit_code == 2, result.output
        assert expected in result.output
    (tmp_path / "broken.toml").write_text("name = [unclosed")
    result = invoke("run", "--grid", tmp_path / "broken.toml")
    assert result.exit_code == 2 and "not valid TOML" in result.output
    result = invoke("run", "--grid", tmp_path / "missing.toml")
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.slow
def test_exports_and_byte_identical_leaderboards(synthetic_env, synthetic_grid, tmp_path):
    store = tmp_path / "store"
    assert invoke("run", "--grid", synthetic_grid, "--store", store, "--no-leaderboard").exit_code == 0
    csv_out = invoke("results", "--store", store, "--format", "csv").output.splitlines()
    assert len(csv_out) == 13 and "count/test_mae" in csv_out[0]
    first, second = tmp_path / "lb1", tmp_path / "lb2"
    assert invoke("leaderboard", "--store", store, "--out", first).exit_code == 0
    assert invoke("leaderboard", "--store", store, "--out", second).exit_code == 0
    names = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(second)) for p in second.rglob("*") if p.is_file())
    assert "synthetic-chains__count__extrapolation-threshold.md" in names and "README.md" in names
    assert "FINDINGS.md" in names and "plots/synthetic-chains__count__extrapolation-threshold.png" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    table = (first / "synthetic-chains__count__extrapolation-threshold.md").read_text()
    assert "± " in table and "quick profile" in table and "test_spearman" in table and "95% CI" in table
    assert "## Paired comparisons" in table and "(plots/synthetic-chains__count__extrapolation-threshold.png)" in table
    assert invoke("results", "--store", tmp_path / "nowhere").exit_code == 2


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results_as_one(synthetic_env, synthetic_grid, tmp_path):
    results = []
    for jobs in ("1", "2"):
        store = tmp_path / f"jobs{jobs}"
        outcome = invoke("run", "--grid", synthetic_grid, "--store", store, "--jobs", jobs, "--no-leaderboard")
        assert outcome.exit_code == 0, outcome.output
        rows = [json.loads(line) for line in invoke("results", "--store", store).output.splitlines()]
        results.append({r["run_id"]: r["metrics"] for r in rows})
    assert results[0] == results[1]  # same ids, bit for bit the same numbers
