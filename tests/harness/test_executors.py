"""One conformance suite for every executor - local (in-process and a worker pool), Ray (a real
local cluster), submitit's local executor and a real one-node Slurm cluster: a stage feeding several
runs plus a deliberately failing stage; the same records as the reference; stages finished before
their runs; failures propagated to dependants with the reason; resume after the driver is killed.
Then what only Slurm has (scancel, re-attachment), devices and cost estimates."""

from __future__ import annotations

import json
import os
import re
import shutil
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
    kwargs.setdefault("timeout", 900)
    return subprocess.run(command, env={**env, **extra_env}, capture_output=True, text=True, **kwargs)


def _show(case: str, done: subprocess.CompletedProcess) -> None:
    """The CLI's summary and last lines, for a reader of ``pytest -s`` (the closing notes quote them)."""
    lines = done.stderr.strip().splitlines()
    summary = [line for line in lines[:-2] if line.startswith("done in")]
    print(f"\n[{case}] exit {done.returncode}:", *summary, *lines[-2:], sep="\n  ")


def _records(store: Path) -> tuple[dict, dict]:
    with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        runs = {r[0]: (r[1], r[2], json.loads(r[3] or "null"), json.loads(r[4] or "null"), r[5])
                for r in db.execute("SELECT run_id, status, error, metrics, details, stage_id FROM runs")}  # fmt: skip
        stages = {
            r[0]: (r[1], json.loads(r[2] or "null")) for r in db.execute("SELECT stage_id, status, details FROM stages")
        }
    return runs, stages


@pytest.fixture(scope="module")
def reference():
    """The grid's finished metrics with the in-process executor (`--jobs 1`), what every executor
    must reproduce; filled by the first test that needs it, whichever tests were selected."""
    return {}


def _local_metrics(env: dict, grid: Path, store: Path) -> dict:
    done = _run(env, grid, store, ["--jobs", "1"], {})
    assert done.returncode == 1, done.stderr
    return {k: v[2] for k, v in _records(store)[0].items() if v[0] == "finished"}


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
    if not reference:  # also under -k slurm: compared with a local run, never with itself
        reference.update(metrics if name == "local-1" else _local_metrics(synthetic_env, grid, tmp_path / "local"))
    assert len(reference) == 4
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


@pytest.mark.slow
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
    _show("restart after scancel of a run and a killed driver", again)
    assert again.returncode == 0, again.stderr  # the cancelled run was redone, everything finished
    runs, _ = _records(store)
    assert len(runs) == 8 and all(v[0] == "finished" for v in runs.values())
    job_ids = _slurm_tasks(store)
    # Every job submitted once, the cancelled run once more; the jobs in flight when the driver died
    # were followed, not resubmitted.
    assert len(job_ids) == 8 + 2 + 1 and in_flight <= job_ids
    assert cancelled not in {v for v in _submissions(store).values()}


def _slurm_tasks(store: Path) -> set[str]:
    """Ids of the grid's Slurm jobs and array tasks submitted into `store` (``123``, ``124_3``), the
    probe jobs left out."""
    folder = store / "engines" / "slurm"
    probes = {p.stem for p in folder.glob("outcomes/*.json") if json.loads(p.read_text())["key"] == "probe"}
    return {p.name.removesuffix("_submitted.pkl") for p in folder.glob("*_submitted.pkl")} - probes


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
    assert "CPU-hours (" in before.output and "[from a calibration on this machine]" in before.output
    run_args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--no-leaderboard"]
    assert runner.invoke(app, run_args).exit_code == 0
    more = grid.read_text().replace("seeds = [0]", "seeds = [0, 1]")
    grid.write_text(more)
    after = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(store)])
    assert "finished runs in the store]" in after.output


ONE_STAGE = GRID.split("[[study]]\n")[0] + "[[study]]\n" + GRID.split("[[study]]\n")[1]  # 1 stage, 4 runs
SLURM_ARGS = ["--executor", "slurm", "--executor-option", "mem_gb=0.25"]

SQUEUE_HICCUP = """#!/bin/sh
# squeue failing its first {n} calls, as while slurmctld restarts, then the real one
count=$(cat "{counter}" 2>/dev/null || echo 0)
echo $((count + 1)) > "{counter}"
if [ "$count" -lt {n} ]; then
    echo "slurm_load_jobs error: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec {real} "$@"
"""


@pytest.mark.slow
def test_real_slurm_a_failing_squeue_changes_nothing(slurm, synthetic_env, tmp_path):
    bin_dir, counter = tmp_path / "bin", tmp_path / "squeue-calls"
    bin_dir.mkdir()
    wrapper = bin_dir / "squeue"
    wrapper.write_text(SQUEUE_HICCUP.format(n=5, counter=counter, real=shutil.which("squeue")))
    wrapper.chmod(0o755)
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(ONE_STAGE)
    done = _run(env, grid, store, SLURM_ARGS, {})
    _show("squeue failing 5 times", done)
    assert done.returncode == 0, done.stderr
    runs, stages = _records(store)
    assert len(runs) == 4 and all(v[0] == "finished" for v in runs.values())
    assert [v[0] for v in stages.values()] == ["finished"]
    assert int(counter.read_text()) >= 1  # the driver met the failing squeue (and went on)
    job_ids = _slurm_tasks(store)
    assert len(job_ids) == 5  # 1 stage and 4 runs, none submitted twice


@pytest.mark.slow
def test_real_slurm_a_stage_job_killed_while_the_driver_is_down_is_recovered(slurm, synthetic_env, tmp_path):
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"]}
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(ONE_STAGE)
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
               "--no-leaderboard", *SLURM_ARGS, "--executor-option", "probe=false"]  # fmt: skip
    slurm.node("DRAIN")  # no job starts: the stage job is surely unfinished when it is killed
    try:
        driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and len(_submissions(store)) < 5:
            time.sleep(0.5)
        driver.kill()
        driver.wait()
        before = _submissions(store)
        assert len(before) == 5, before
        stage_job = next(job for key, job in before.items() if key.startswith("stage:"))
        subprocess.run(["scancel", stage_job], env=env, check=True)  # dies while no driver watches
    finally:
        slurm.node("RESUME")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    _show("restart after the stage job was killed while no driver ran", again)
    assert again.returncode == 0, again.stderr
    runs, _ = _records(store)
    assert len(runs) == 4 and all(v[0] == "finished" for v in runs.values())
    old_runs = {job for key, job in before.items() if key.startswith("run:")}
    assert not old_runs & set(slurm.queue())  # none left waiting for the dead stage


@pytest.mark.slow
def test_real_slurm_runs_killed_with_their_stage_fail_with_its_reason(synthetic_env, tmp_path):
    """kill_invalid_depend: Slurm itself ends the runs of a failed stage, in the same poll as the stage."""
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")
    cluster = Cluster(tmp_path / "cluster", settings=("DependencyParameters=kill_invalid_depend",))
    try:
        reason = cluster.start()
        if reason:
            pytest.skip(reason)
        grid, store = tmp_path / "grid.toml", tmp_path / "store"
        grid.write_text(GRID.split("[[study]]\n")[0] + "[[study]]\n" + GRID.split("[[study]]\n")[2])
        done = _run({**synthetic_env, "SLURM_CONF": cluster.env["SLURM_CONF"]}, grid, store, SLURM_ARGS, {})
    finally:
        cluster.stop()
    _show("kill_invalid_depend, a failing stage", done)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    runs, stages = _records(store)
    assert [v[0] for v in stages.values()] == ["failed"] and len(runs) == 2
    for status, error, *_ in runs.values():
        assert status == "failed" and "its pretraining stage" in error and "planted failure" in error


@pytest.mark.slow
def test_the_slurm_fixture_uses_and_cancels_only_its_own_cluster(slurm, tmp_path):
    held = subprocess.run(["sbatch", "--hold", "--mem=50M", "--wrap", "sleep 300"], env=slurm.env,
                          capture_output=True, text=True, check=True).stdout.split()[-1]  # fmt: skip
    try:
        other = Cluster(tmp_path / "other")
        other.ports["slurmctld"] = slurm.ports["slurmctld"]  # a port another slurmctld holds
        reason = other.start()
        other.stop()
        assert reason is not None and "Address already in use" in reason
        assert held in slurm.queue()  # stopping the other cluster cancelled nothing of this one
    finally:
        subprocess.run(["scancel", held], env=slurm.env, capture_output=True)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


@pytest.fixture
def running_ray():
    """A Ray instance already running, as `ray start` leaves one, started without the tests' plugin
    settings in its environment; its address; afterwards its own processes are stopped (never
    `ray stop`, which stops every Ray instance of the machine)."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'benchbase[ray]')")
    import tempfile

    temp = Path(tempfile.mkdtemp(prefix="bbray"))  # short: Ray puts unix sockets in it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCHBASE_", "RAY_")) and k != "PYTHONPATH"}
    env["RAY_AUTH_MODE"] = "token"  # as the test's driver, which would not send a token otherwise
    ports = [f"--port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}"]
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--num-cpus=2", f"--temp-dir={temp}",
         "--include-dashboard=false", "--disable-usage-stats", "--block", *ports],
        env=env, stdout=subprocess.DEVNULL, stderr=(temp / "start.log").open("w"), start_new_session=True,
    )  # fmt: skip
    address_file = temp / "ray_current_cluster"
    deadline = time.time() + 120
    while time.time() < deadline and head.poll() is None and not address_file.exists():
        time.sleep(0.5)
    try:
        if not address_file.exists():
            pytest.skip(f"a Ray head did not start: {(temp / 'start.log').read_text()[-300:]}")
        yield address_file.read_text().strip()
    finally:
        _stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(process: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except OSError:
            return
        try:
            process.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.slow
def test_ray_joins_a_running_instance_and_its_workers_get_the_plugin_settings(running_ray, synthetic_env, tmp_path):
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(ONE_STAGE)
    # --jobs with an instance running (RAY_ADDRESS): joined as it is. Its workers were started
    # without the synthetic plugin: they find it only through the job's runtime_env.
    env = {"RAY_ADDRESS": running_ray, "RAY_AUTH_MODE": "token", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    done = _run(synthetic_env, grid, store, ["--executor", "ray", "--jobs", "2"], env)
    assert done.returncode == 0, done.stderr
    runs, _ = _records(store)
    assert len(runs) == 4 and all(v[0] == "finished" for v in runs.values())
    # address=auto (RAY_ADDRESS picks which instance): the same through the option.
    auto = _run(synthetic_env, grid, tmp_path / "auto", ["--executor", "ray", "--executor-option", "address=auto"], env)
    assert auto.returncode == 0, auto.stderr
    again = _records(tmp_path / "auto")[0]
    assert {k: v[:3] for k, v in again.items()} == {k: v[:3] for k, v in runs.items()}  # status, metrics


def _finished_stages(store) -> int:
    try:
        with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
            return db.execute("SELECT COUNT(*) FROM stages WHERE status = 'finished'").fetchone()[0]
    except sqlite3.Error:  # not created yet, or being written
        return 0


REATTACH = """
name = "reattach"
seeds = [0]
[train]
epochs = 3
pretrain_epochs = 2
batch_size = 32
[params.pretext.tiny-masking]
trace = "{trace}"
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
pretext = ["tiny-masking"]
[study.train]
pretrain_epochs = 400
"""


@pytest.mark.slow
def test_ray_a_killed_driver_reattaches_and_recomputes_no_stage(running_ray, synthetic_env, tmp_path):
    """A quick stage and a slow one: the driver is killed once the quick one is recorded and the
    slow one has started (both wrote their line in the trace: polled, not timed); the restarted
    driver follows the slow one, so each stage is pretrained once over both drivers."""
    trace, store, grid = tmp_path / "trace", tmp_path / "store", tmp_path / "grid.toml"
    grid.write_text(REATTACH.format(trace=trace))
    env = {"RAY_ADDRESS": running_ray, "RAY_AUTH_MODE": "token", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    args = ["--executor", "ray", "--executor-option", "address=auto"]
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
               "--no-leaderboard", *args]  # fmt: skip
    driver = subprocess.Popen(command, env={**synthetic_env, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def started() -> int:
        return len(trace.read_text().splitlines()) if trace.exists() else 0

    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None and (_finished_stages(store) < 1 or started() < 2):
        time.sleep(0.2)
    assert driver.poll() is None and _finished_stages(store) == 1, "the slow stage ended before the kill"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver; its jobs live in the cluster's workers
    driver.wait()
    again = _run(synthetic_env, grid, store, args, env)
    assert again.returncode == 0, again.stderr
    runs, stages = _records(store)
    assert len(runs) == 5 and all(v[0] == "finished" for v in runs.values())
    assert len(stages) == 2 and all(v[0] == "finished" for v in stages.values())
    assert started() == 2  # each stage pretrained once, over both drivers


@pytest.mark.slow
def test_ray_without_gpus_refuses_a_cuda_grid_at_once(synthetic_env, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'benchbase[ray]')")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    grid = tmp_path / "grid.toml"
    grid.write_text(ONE_STAGE)
    args = ["--executor", "ray", "--jobs", "1", "--device", "cuda"]
    done = _run(synthetic_env, grid, tmp_path / "store", args, {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"})
    assert done.returncode == 2, done.stderr
    assert "but the Ray cluster has 0 GPUs" in done.stderr and "Traceback" not in done.stderr


SBATCH_LIMIT = """#!/bin/sh
# sbatch under a per-user limit of {n} jobs in the queue, as MaxSubmitJobs sets one
if [ "$({squeue} -h | wc -l)" -ge {n} ]; then
    echo refused >> "{refusals}"
    echo "sbatch: error: QOSMaxSubmitJobPerUserLimit" >&2
    echo "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit)" >&2
    exit 1
fi
exec {sbatch} "$@"
"""


@pytest.mark.slow
def test_real_slurm_a_refused_submission_waits_for_room(slurm, synthetic_env, tmp_path):
    bin_dir, refusals = tmp_path / "bin", tmp_path / "refusals"
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(SBATCH_LIMIT.format(n=1, squeue=shutil.which("squeue"), sbatch=shutil.which("sbatch"),
                                           refusals=refusals))  # fmt: skip
    wrapper.chmod(0o755)
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(ONE_STAGE)
    done = _run(env, grid, store, SLURM_ARGS, {})  # a stage, its runs behind it, room for 1: one invocation does all
    assert done.returncode == 0, done.stderr
    runs, _ = _records(store)
    assert len(runs) == 4 and all(v[0] == "finished" for v in runs.values())
    assert refusals.exists()  # the limit was met (the runs' array is submitted while the stage is queued)
    job_ids = _slurm_tasks(store)
    assert len(job_ids) == 5


SBATCH_LOG = """#!/bin/sh
# sbatch, each call logged with the tasks in the queue before it and the array it asks for
echo "$({squeue} -h -r | wc -l) $(grep -o -- '--array=[^ ]*' "$1" || echo single)" >> "{log}"
exec {sbatch} "$@"
"""


def _logging_sbatch(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch-calls"
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    wrapper.write_text(SBATCH_LOG.format(squeue=shutil.which("squeue"), sbatch=shutil.which("sbatch"), log=log))
    wrapper.chmod(0o755)
    return bin_dir, log


#: Runs of the array test: 500 is the scale it is meant for; the default fits a few minutes on 2 cores.
ARRAY_RUNS = int(os.environ.get("BENCHBASE_SLURM_ARRAY_RUNS", "16"))


@pytest.mark.slow
def test_real_slurm_a_grid_goes_as_a_few_job_arrays_under_a_cap(slurm, synthetic_env, tmp_path):
    cap = max(8, ARRAY_RUNS // 2)
    bin_dir, log = _logging_sbatch(tmp_path)
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(
        GRID.split("[[study]]\n")[0].replace("seeds = [0]", f"seeds = {list(range(ARRAY_RUNS // 2))}")
        .replace("epochs = 3", "epochs = 1")
        + '[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid", "extrapolation-threshold"]\n'
        'encoders = ["tiny"]\npretext = ["none"]\n'
    )  # fmt: skip
    started = time.monotonic()
    # About 4 s of a core per tiny run (a job's interpreter and imports): the default 900 s is short for 500.
    done = _run(env, grid, store, [*SLURM_ARGS, "--executor-option", f"max_queued={cap}"], {},
                timeout=max(900, 8 * ARRAY_RUNS))  # fmt: skip
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    runs, _ = _records(store)
    assert len(runs) == ARRAY_RUNS and all(v[0] == "finished" for v in runs.values())
    calls = [line.split() for line in log.read_text().splitlines()]
    print(f"\n{ARRAY_RUNS} runs, max_queued={cap}: {len(calls)} sbatch calls in {seconds:.0f}s")
    assert calls[0][1] == "single"  # the probe, then arrays
    tasks = [1 if array == "single" else int(re.match(r"--array=0-(\d+)", array)[1]) + 1 for _, array in calls[1:]]
    assert sum(tasks) == ARRAY_RUNS and len(_slurm_tasks(store)) == ARRAY_RUNS  # each run submitted once
    # Topped up a quarter of the cap at a time (the last top-up holds what is left): far fewer sbatch
    # calls than jobs. 500 runs, cap 250: the probe, 250, 4 x 62 and 2 (7 calls).
    assert len(calls) <= 2 + -(-(ARRAY_RUNS - cap) // (cap // 4))
    for (queued, _), size in zip(calls[1:], tasks, strict=True):
        # At most the cap, give or take jobs that left their outcome and are still leaving the queue
        # (the probe, jobs ended since the driver's last look).
        assert int(queued) + size <= cap + cap // 4 + 1


@pytest.mark.slow
def test_real_slurm_runs_the_driver_orders_go_as_one_array_for_all_stages(slurm, synthetic_env, tmp_path):
    bin_dir, log = _logging_sbatch(tmp_path)
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(GRID.replace("seeds = [0]", "seeds = [0, 1, 2]"))  # 6 stages (3 fail), 18 runs
    options = ["--executor-option", "runs_after=driver", "--executor-option", "gather_seconds=600"]
    done = _run(env, grid, store, [*SLURM_ARGS, *options], {})
    _show("runs_after=driver", done)
    assert done.returncode == 1, done.stderr  # the failing stages' runs are recorded failed
    runs, _ = _records(store)
    finished = {k: v[2] for k, v in runs.items() if v[0] == "finished"}
    assert len(runs) == 18 and len(finished) == 12
    assert finished == _local_metrics(synthetic_env, grid, tmp_path / "local")
    arrays = [line.split()[1] for line in log.read_text().splitlines()]
    print(f"  sbatch calls: {len(arrays)} ({', '.join(arrays)})")
    # The probe; the stages and the runs without one, at once; then the runs of the 3 stages that
    # succeeded, together once nothing else was in flight (behind their stages, 6 arrays would go).
    assert arrays == ["single", "--array=0-5%6", "--array=0-5%6", "--array=0-5%6"], arrays
    assert len(_slurm_tasks(store)) == 18  # 6 stages, 6 runs without one, 6 after their stage


@pytest.mark.slow
def test_real_slurm_the_probe_names_what_the_compute_nodes_lack(slurm, synthetic_env, tmp_path):
    env = {**synthetic_env, "SLURM_CONF": slurm.env["SLURM_CONF"]}
    grid = tmp_path / "grid.toml"
    grid.write_text(ONE_STAGE)
    no_plugins = tmp_path / "python-without-plugins"  # an environment on the nodes without the grid's plugin
    no_plugins.write_text(f'#!/bin/sh\nunset BENCHBASE_EXTRA_PLUGINS\nexec {sys.executable} "$@"\n')
    no_plugins.chmod(0o755)
    for python, expected in [
        ("/nowhere/bin/python", "the probe job .* could not run on a compute node .*/nowhere/bin/python"),
        (str(no_plugins), "unknown dataset 'synthetic/chains'.* \\(probe job .* on a compute node\\)"),
    ]:
        store = tmp_path / f"store-{len(expected)}"
        done = _run(env, grid, store, [*SLURM_ARGS, "--executor-option", f"python={python}"], {})
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        [line] = [line for line in done.stderr.splitlines() if "--executor slurm" in line]
        assert re.search(expected, line), line
        submitted = list((store / "engines" / "slurm").glob("*_submitted.pkl"))
        assert len(submitted) == 1  # the probe, no job of the grid
        assert {v[0] for v in _records(store)[0].values()} == {"pending"}
