"""A grid killed with SIGKILL resumes: finished runs are kept and not run again; the store is intact."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

SLOW_GRID = """
name = "slow"
seeds = [0, 1, 2]
[train]
epochs = 25
patience = 100
pretrain_epochs = 2
batch_size = 8
[params.dataset."synthetic/chains"]
graphs = 300
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
"""


def _finished(db_path) -> dict[str, float]:
    if not db_path.exists():
        return {}
    with sqlite3.connect(db_path, timeout=30) as db:
        rows = db.execute("SELECT run_id, updated_at FROM runs WHERE status = 'finished'").fetchall()
    return dict(rows)


def _command(grid, store):
    return [
        sys.executable,
        "-m",
        "benchbase.cli",
        "run",
        "--grid",
        str(grid),
        "--store",
        str(store),
        "--no-leaderboard",
        "--jobs",
        "1",
    ]


def test_kill_minus_nine_then_resume(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SLOW_GRID)
    store = tmp_path / "store"
    db_path = store / "benchbase.sqlite"
    process = subprocess.Popen(
        _command(grid, store), env=synthetic_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while len(_finished(db_path)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = _finished(db_path)
    assert 2 <= len(before) < 12, "the kill should land in the middle of the grid"
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done = subprocess.run(_command(grid, store), env=synthetic_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} were already finished" in done.stderr
    after = _finished(db_path)
    assert len(after) == 12
    assert all(after[run_id] == stamp for run_id, stamp in before.items())  # not run again
