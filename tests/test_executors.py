"""One conformance suite for every executor - local (in-process and a worker pool), Ray (a real
local cluster), submitit's local executor and a real one-node Slurm cluster: a stage feeding several
runs plus a deliberately failing stage; the same records as the reference; stages finished before
their runs; failures propagated to dependants with the reason; resume after the driver is killed.
Then what only Slurm has (scancel, re-attachment), devices and cost estimates."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from slurm_cluster import Cluster

GRID = """
name = "executors"
seeds = [0]
[train]
epochs = 3
pretrain_epochs = 2
batch_size = 32
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["tiny"]
pretext = ["tiny-masking"]
[study.sweep]
"pretext.tiny-masking.fail" = [true]
"""


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    reason = cluster.start()
    if reason:
        cluster.stop()
        pytest.skip(reason)
    yield cluster
    cluster.stop()


def _executor_args(name: str, tmp_path: Path) -> tuple[list[str], dict]:
    if name == "local-1":
        return ["--jobs", "1"], {}
    if name == "local-2":
        return ["--jobs", "2"], {}
    if name == "ray":
        pytest.importorskip("ray", reason="Ray is not installed (pip install 'benchbase[ray]')")
        return ["--executor", "ray", "--jobs", "2"], {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")
    if name == "submitit-local":
        return ["--executor", "slurm", "--executor-option", "cluster=local", "--jobs", "2"], {}
    return ["--executor", "slurm", "--executor-option", "mem_gb=0.25"], {}


def _run(env: dict, grid: Path, store: Path, args: list[str], extra_env: dict, **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
               "--no-leaderboard", *args]  # fmt: skip
    return subprocess.run(command, env={**env, **extra_env}, capture_output=True, text=True, timeout=900, **kwargs)


def _records(store: Path) -> tuple[dict, dict]:
    with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        runs = {r[0]: (r[1], r[2], json.loads(r[3] or "null"), json.loads(r[4] or "null"), r[5])
                for r in db.execute("SELECT run_id, status, error, metrics, details, stage_id FROM runs")}  # fmt: skip
        stages = {
            r[0]: (r[1], json.loads(r[2] or "null")) for r in db.execute("SELECT stage_id, status, details FROM stages")
        }
    return runs, stages


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The grid once with the in-process executor: what every executor must reproduce."""
    return {}


@pytest.mark.parametrize("name", ["local-1", "local-2", "ray", "submitit-local", "slurm"])
@pytest.mark.slow
def test_every_executor_runs_the_same_grid_the_same_way(name, synthetic_env, tmp_path, request, reference):
    if name == "slurm":
        slurm = request.getfixturevalue("slurm")
        synthetic_env = {**synthetic_env, **{"SLURM_CONF": slurm.env["SLURM_CONF"]}}
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    args, extra_env = _executor_args(name, tmp_path)
    done = _run(synthetic_env, grid, tmp_path / "store", args, extra_env)
    assert done.returncode == 1, done.stderr  # the planted failure: recorded, the grid went on
    runs, stages = _records(tmp_path / "store")
    finished = {k: v for k, v in runs.items() if v[0] == "finished"}
    failed = {k: v for k, v in runs.items() if v[0] == "failed"}
    assert len(finished) == 4 and len(failed) == 2 and len(stages) == 2
    for _status, error, *_ in failed.values():  # the dependants of the failed stage, with its reason
        assert "its pretraining stage" in error and "planted failure" in error
    for _status, _, _, details, stage_id in finished.values():  # every run after its stage
        if stage_id:
            assert stages[stage_id][0] == "finished"
            assert details["started_at"] >= stages[stage_id][1]["finished_at"]
    metrics = {k: v[2] for k, v in finished.items()}
    if not reference:
        reference.update(metrics)
    assert metrics == reference  # same run ids, bit for bit the same numbers, whatever the executor


@pytest.mark.parametrize("name", ["local-2", "ray"])
@pytest.mark.slow
def test_a_killed_driver_resumes_on_every_executor(name, synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.replace("epochs = 3", "epochs = 40").replace("seeds = [0]", "seeds = [0, 1]"))
    args, extra_env = _executor_args(name, tmp_path)
    store = tmp_path / "store"
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
               "--no-leaderboard", *args]  # fmt: skip
    driver = subprocess.Popen(command, env={**synthetic_env, **extra_env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline and not any(v[0] == "finished" for v in _finished_rows(store)):
        time.sleep(0.3)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers
    driver.wait()
    again = _run(synthetic_env, grid, store, args, extra_env)
    assert again.returncode == 1, again.stderr  # only the planted failures
    runs, _ = _records(store)
    assert sum(v[0] == "finished" for v in runs.values()) == 8


def _finished_rows(store: Path) -> list[tuple]:
    if not (store / "benchbase.sqlite").exists():
        return []
    try:
        with closing(sqlite3.connect(store / "benchbase.sqlite", timeout=30)) as db:
            return db.execute("SELECT status FROM runs").fetchall()
    except sqlite3.OperationalError as error:
        # The driver creates the file before its tables: polled in between, the store has no runs yet.
        if "no such table" in str(error):
            return []
        raise


def test_real_slurm_scancel_and_a_killed_driver_submit_nothing_twice(slurm, synthetic_env, tmp_path):
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"]}
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.split("[[study]]\n", 2)[0] + "[[study]]\n" + GRID.split("[[study]]\n", 2)[1].replace(
        "epochs = 3", "epochs = 60"))  # fmt: skip
    grid.write_text(grid.read_text().replace("epochs = 3", "epochs = 60").replace("seeds = [0]", "seeds = [0, 1]"))
    store = tmp_path / "store"
    args = ["--executor", "slurm", "--executor-option", "mem_gb=0.25"]
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
               "--no-leaderboard", *args]  # fmt: skip
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cancelled = None
    deadline = time.time() + 300
    while time.time() < deadline and cancelled is None:  # scancel the first run job that starts
        running = [job for job, state in slurm.queue().items() if state == "RUNNING"]
        submitted = _submissions(store)
        runs = [job for key, job in submitted.items() if key.startswith("run:") and job in running]
        if runs:
            cancelled = runs[0]
            subprocess.run(["scancel", cancelled], env=env, check=True)
        time.sleep(0.5)
    assert cancelled, "no run job started"
    time.sleep(3)
    driver.kill()  # the driver dies while jobs are in the queue
    driver.wait()
    in_flight = set(_submissions(store).values())
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr  # the cancelled run was redone, everything finished
    runs, _ = _records(store)
    assert len(runs) == 8 and all(v[0] == "finished" for v in runs.values())
    folder = store / "engines" / "slurm"
    job_ids = {p.name.split("_")[0] for p in folder.glob("*_submitted.pkl")}
    # Every job submitted once, the cancelled run once more; the jobs in flight when the driver died
    # were followed, not resubmitted.
    assert len(job_ids) == 8 + 2 + 1 and in_flight <= job_ids
    assert cancelled not in {v for v in _submissions(store).values()}


def _submissions(store: Path) -> dict[str, str]:
    if not (store / "benchbase.sqlite").exists():
        return {}
    with closing(sqlite3.connect(store / "benchbase.sqlite", timeout=30)) as db:
        try:
            return dict(db.execute("SELECT job, handle FROM submissions").fetchall())
        except sqlite3.OperationalError:
            return {}


def test_devices_resolve_at_planning(synthetic_env, tmp_path):
    import torch
    from typer.testing import CliRunner

    from benchbase.cli import app

    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    runner = CliRunner()
    auto = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--device", "auto", "--store", str(tmp_path)])
    assert auto.exit_code == 0, auto.output
    if not torch.cuda.is_available():
        cuda = runner.invoke(app, ["run", "--grid", str(grid), "--device", "cuda", "--store", str(tmp_path / "s")])
        assert cuda.exit_code == 2 and "torch sees no CUDA device" in cuda.output
    bad = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--device", "gpu"])
    assert bad.exit_code == 2 and "device must be auto, cpu, cuda or cuda:N" in bad.output
    help_text = runner.invoke(app, ["run", "--help"]).output
    assert "--device" in help_text and "--executor" in help_text and "--shared-dir" in help_text


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no CUDA device on this machine")
def test_a_grid_trains_on_cuda(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.split("[[study]]\n")[0] + "[[study]]\n" + GRID.split("[[study]]\n")[1])
    done = _run(synthetic_env, grid, tmp_path / "store", ["--device", "cuda", "--jobs", "1"], {})
    assert done.returncode == 0, done.stderr
    runs, _ = _records(tmp_path / "store")
    assert all(v[0] == "finished" for v in runs.values())


def test_dry_run_estimates_cost_from_calibration_then_from_the_store(synthetic_env, tmp_path):
    from typer.testing import CliRunner

    from benchbase.cli import app

    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(GRID.split("[[study]]\n")[0] + "[[study]]\n" + GRID.split("[[study]]\n")[1])
    runner = CliRunner()
    before = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(store)])
    assert "study 1: 4 runs and 1 pretraining stages, at most" in before.output
    assert "CPU-hours [from a calibration on this machine]" in before.output
    run_args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--no-leaderboard"]
    assert runner.invoke(app, run_args).exit_code == 0
    more = grid.read_text().replace("seeds = [0]", "seeds = [0, 1]")
    grid.write_text(more)
    after = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(store)])
    assert "[from finished runs in the store]" in after.output
