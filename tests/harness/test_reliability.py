"""Reliability through the real CLI: concurrent invocations on one store, SIGKILL of the driver at
random moments and of a worker, Ctrl-C, damaged files, a full disk, store versions, and doctor."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

GRID = """
name = "slow"
seeds = [0, 1, 2, 3]
[train]
epochs = 30
patience = 100
pretrain_epochs = 3
batch_size = 8
[params.dataset."synthetic/chains"]
graphs = 300
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
"""
RUNS, STAGES = 16, 4


def _command(grid: Path, store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
            "--no-leaderboard", *extra]  # fmt: skip


def _rows(store: Path, table: str = "runs") -> dict[str, tuple]:
    path = store / "benchbase.sqlite"
    if not path.exists():
        return {}
    key = "run_id" if table == "runs" else "stage_id"
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, db:
            return {r[0]: r[1:] for r in db.execute(f"SELECT {key}, status, updated_at FROM {table}").fetchall()}
    except sqlite3.OperationalError as error:
        # The driver creates the file before its tables: polled in between, the store has no runs yet.
        if "no such table" in str(error):
            return {}
        raise


def _finished(store: Path) -> dict[str, float]:
    return {k: v[1] for k, v in _rows(store).items() if v[0] == "finished"}


def _integrity(store: Path) -> str:
    if not (store / "benchbase.sqlite").exists():
        return "ok"  # killed before it created the store
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.fixture
def grid(tmp_path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


@pytest.mark.slow
def test_concurrent_invocations_compute_each_run_once(synthetic_env, grid, tmp_path):
    """Three drivers started at once share the grid: a driver claims a job only when a worker of
    its own is free, so none takes all the ready jobs while planning. Each driver's first training
    step waits until all three train (the synthetic plugin's gate), which only happens if each got
    a job of its own."""
    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    env = {**synthetic_env, "BENCHBASE_TEST_GATE": f"{gate}:3"}
    drivers = [
        subprocess.Popen(_command(grid, store, "--jobs", "1"), env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [d.communicate(timeout=600)[1] for d in drivers]
    assert all(d.returncode == 0 for d in drivers), outputs
    lines = [line for out in outputs for line in out.splitlines()]
    trained = [line.split("  finished ", 1)[1].rsplit(" in ", 1)[0] for line in lines if "  finished synthetic" in line]
    pretrained = [line for line in lines if "  pretrained " in line]
    assert len(trained) == len(set(trained)) == RUNS  # every run trained by exactly one driver
    assert len(pretrained) == STAGES  # and every stage pretrained once
    summaries = [line for out in outputs for line in out.splitlines() if line.startswith("done in ")]
    finished = [int(line.split(": ", 1)[1].split(" finished", 1)[0]) for line in summaries]
    computed = [int(line.rsplit("computed ", 1)[1].split(",", 1)[0]) for line in summaries]
    assert len(summaries) == 3 and sum(finished) == RUNS and sum(computed) == STAGES, summaries
    assert all(f + c >= 1 for f, c in zip(finished, computed, strict=True)), summaries  # each driver trained
    assert len(os.listdir(gate)) == 3  # all three drivers trained in their own process
    assert len(_finished(store)) == RUNS and len(_rows(store, "stages")) == STAGES
    assert _integrity(store) == "ok"
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        assert db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0  # all released


@pytest.mark.slow
def test_driver_killed_at_ten_random_moments_loses_nothing(synthetic_env, grid, tmp_path):
    store, rng = tmp_path / "store", random.Random(7)
    for attempt in range(10):
        before = _finished(store)
        process = subprocess.Popen(
            _command(grid, store, "--jobs", "1"),
            env=synthetic_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if attempt % 2:
            # Kills timed from the driver's progress, not from the clock, land mid-grid on a fast or
            # a loaded machine alike: after its next run is recorded, then a little later.
            deadline = time.time() + 120
            while time.time() < deadline and process.poll() is None and len(_finished(store)) <= len(before):
                time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 3.0))  # the even attempts mostly land during start-up or planning
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert _integrity(store) == "ok"
        after = _finished(store)
        assert all(after[run_id] == stamp for run_id, stamp in before.items())  # finished runs untouched
    done = subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(_finished(store)) == RUNS and _integrity(store) == "ok"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finding worker processes needs /proc")
@pytest.mark.slow
def test_a_killed_worker_is_recorded_failed_and_the_grid_goes_on(synthetic_env, tmp_path):
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(GRID.replace("seeds = [0, 1, 2, 3]", "seeds = [0, 1]").replace("epochs = 30", "epochs = 12"))
    process = subprocess.Popen(
        _command(grid, store, "--jobs", "2"),
        env=synthetic_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and (len(_finished(store)) < 2 or not _children(process.pid)):
        time.sleep(0.2)
    workers = [p for p in _children(process.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
    assert workers, "the grid should run in worker processes"
    os.kill(workers[0], signal.SIGKILL)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 1, err  # one job lost with its worker: recorded failed, grid went on
    assert "the worker process died" in err
    statuses = [v[0] for v in _rows(store).values()]
    assert statuses.count("failed") >= 1 and statuses.count("finished") >= RUNS // 2 - 2
    again = subprocess.run(_command(grid, store, "--jobs", "2"), env=synthetic_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert len(_finished(store)) == RUNS // 2 and _integrity(store) == "ok"


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches a terminal's foreground process with SIGINT's default action. A shell that
    starts a job in the background without job control sets SIGINT to "ignore", which the child
    inherits, and Python then raises no KeyboardInterrupt; tests run from such a job must not
    depend on how they were started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_a_summary(synthetic_env, grid, tmp_path):
    store = tmp_path / "store"
    process = subprocess.Popen(
        _command(grid, store, "--jobs", "1"),
        env=synthetic_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(_finished(store)) < 2:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted after") and "runs not finished will run with the same command" in last
    assert "Traceback" not in err and _integrity(store) == "ok"
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        assert db.execute("SELECT count(*) FROM claims").fetchone()[0] == 0


def _small_grid(tmp_path: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(GRID.replace("seeds = [0, 1, 2, 3]", "seeds = [0, 1]").replace("epochs = 30", "epochs = 2"))
    return path


@pytest.mark.slow
def test_a_damaged_checkpoint_is_detected_and_recomputed(synthetic_env, tmp_path):
    grid, store = _small_grid(tmp_path), tmp_path / "store"
    assert subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env).returncode == 0
    checkpoint = next((store / "stages").glob("*.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])  # truncated
    with (
        contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db,
        db,
    ):  # a run that needs it is to be redone
        stage = checkpoint.stem
        db.execute("DELETE FROM runs WHERE run_id = (SELECT run_id FROM runs WHERE stage_id = ? LIMIT 1)", (stage,))
    again = subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "pretraining stages computed 1" in again.stderr  # recomputed, never loaded damaged


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.slow
def test_a_full_disk_fails_the_runs_it_hits_and_keeps_the_store(synthetic_env, tmp_path, monkeypatch):
    grid, store, shared = _small_grid(tmp_path), tmp_path / "store", tmp_path / "shared"
    if _mount_tmpfs(shared, "24k"):  # a real, small filesystem for checkpoints and predictions
        try:
            run = subprocess.run(
                _command(grid, store, "--jobs", "1", "--shared-dir", str(shared)),
                env=synthetic_env,
                capture_output=True,
                text=True,
            )
            statuses = {v[0] for v in _rows(store).values()}
        finally:
            subprocess.run(["umount", str(shared)])
        assert run.returncode == 1 and "No space left on device" in run.stderr and "Traceback" not in run.stderr
    else:  # no mount allowed here: inject the error where files are written
        from typer.testing import CliRunner

        from benchbase.cli import app
        from benchbase.running import jobs

        calls = {"n": 0}

        def full(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] % 3 == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            return original(*args, **kwargs)

        original = jobs.write_predictions
        monkeypatch.setattr(jobs, "write_predictions", full)
        result = CliRunner().invoke(app, _command(grid, store, "--jobs", "1")[3:])
        monkeypatch.undo()
        assert result.exit_code == 1 and "No space left on device" in result.output
        statuses = {v[0] for v in _rows(store).values()}
    assert "failed" in statuses and _integrity(store) == "ok"
    errors = [json.loads(json.dumps(e)) for e in _errors(store)]
    assert any("No space left on device" in e for e in errors)
    again = subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # space again: everything is done, nothing lost
    assert set(v[0] for v in _rows(store).values()) == {"finished"}


def _errors(store: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        return [r[0] for r in db.execute("SELECT error FROM runs WHERE error IS NOT NULL").fetchall()]


@pytest.mark.slow
def test_a_full_database_disk_gives_one_line_and_exit_2(synthetic_env, tmp_path):
    grid, store = _small_grid(tmp_path), tmp_path / "store"
    if not _mount_tmpfs(store, "96k"):
        pytest.skip("mounting a small tmpfs is not allowed here")
    try:
        run = subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env, capture_output=True, text=True)
        intact = _integrity(store) if (store / "benchbase.sqlite").exists() else "ok"
    finally:
        subprocess.run(["umount", str(store)])
    assert run.returncode in (1, 2) and "Traceback" not in run.stderr, run.stderr
    assert "database or disk is full" in run.stderr or "No space left on device" in run.stderr
    assert intact == "ok"


def test_store_versions_migrate_forward_and_refuse_newer(tmp_path):
    from typer.testing import CliRunner

    from benchbase.cli import app
    from benchbase.running.store import SCHEMA_VERSION, Store

    old = tmp_path / "old"
    old.mkdir()
    with (
        contextlib.closing(sqlite3.connect(old / "benchbase.sqlite")) as db,
        db,
    ):  # the first release's schema, no version
        db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, grid TEXT, spec TEXT NOT NULL, status TEXT NOT NULL, "
                   "error TEXT, metrics TEXT, details TEXT, n_params INTEGER, seconds REAL, hardware TEXT, "
                   "versions TEXT, git_commit TEXT, split_hash TEXT, stage_id TEXT, updated_at REAL)")  # fmt: skip
        db.execute("CREATE TABLE stages (stage_id TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL, "
                   "error TEXT, details TEXT, updated_at REAL)")  # fmt: skip
        db.execute("INSERT INTO runs (run_id, spec, status) VALUES ('r1', '{}', 'failed')")
    store = Store(old)
    assert store.schema_version() == SCHEMA_VERSION and store.run("r1")["predictions"] is None
    newer = tmp_path / "newer"
    newer.mkdir()
    with contextlib.closing(sqlite3.connect(newer / "benchbase.sqlite")) as db, db:
        db.execute("PRAGMA user_version = 99")
    result = CliRunner().invoke(app, ["results", "--store", str(newer)])
    assert result.exit_code == 2
    assert f"schema version 99, newer than this benchbase understands ({SCHEMA_VERSION})" in result.output


@pytest.mark.slow
def test_doctor_reports_repairs_and_then_finds_the_store_healthy(synthetic_env, tmp_path):
    from typer.testing import CliRunner

    from benchbase.cli import app

    grid, store = _small_grid(tmp_path), tmp_path / "store"
    assert subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env).returncode == 0
    runner = CliRunner()
    assert runner.invoke(app, ["doctor", "--store", str(store)]).output.startswith(f"{store}: healthy")
    prediction, other = sorted((store / "predictions").glob("*.npz"))[:2]
    prediction.write_bytes(b"damaged")
    (store / "predictions" / "orphan.npz").write_bytes(b"x")
    (store / "stages" / ".abc.pt.1234.tmp").write_bytes(b"x")
    (store / "resume").mkdir(exist_ok=True)
    (store / "resume" / f"{other.stem}.pt").write_bytes(b"x")  # a finished run's training snapshot
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        db.execute("INSERT INTO claims (job, owner, host, pid, process_start, claimed_at, expires) "
                   "VALUES ('run:x', 'dead', 'elsewhere', 1, NULL, 0, 1)")  # fmt: skip
    report = runner.invoke(app, ["doctor", "--store", str(store)])
    assert report.exit_code == 1
    for text in ("predictions missing or damaged -> would repair", "orphaned file", "temporary file",
                 "stale claim", "training snapshot of a finished job"):  # fmt: skip
        assert text in report.output
    fixed = runner.invoke(app, ["doctor", "--store", str(store), "--repair"])
    assert fixed.exit_code == 0 and "5 repair(s) applied" in fixed.output
    assert runner.invoke(app, ["doctor", "--store", str(store)]).exit_code == 0
    redo = subprocess.run(_command(grid, store, "--jobs", "1"), env=synthetic_env, capture_output=True, text=True)
    assert "1 finished, 0 failed" in redo.stderr  # the damaged run, recomputed
