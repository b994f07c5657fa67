"""Runs that survive kills and time limits: a run or a pretraining stage interrupted after any epoch,
or paused after any step (a scheduler's warning), resumes from its snapshot and ends bit for bit
where an uninterrupted one ends - weights, predictions, metrics - with early stopping, dropout,
augmentation and every global random generator in play. Then the same through the real CLI: a
killed ``benchbase run`` run again resumes its runs; on a real Slurm, a run whose one epoch is longer
than its time limit completes through requeues."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchbase.compute import finetuning, resume
from benchbase.compute.pretraining import pretrain
from benchbase.compute.resume import Snapshots, TrainingPaused, clear_pause, request_pause
from benchbase.compute.run import run_finetune
from benchbase.contract.registry import default_registry
from benchbase.running.planning import expand_grid


class Killed(Exception):
    """Stands for the process dying right after a snapshot was written."""


class KilledAfter(Snapshots):
    def __init__(self, path: Path, spec: dict, epoch: int) -> None:
        super().__init__(path, spec)
        self.epoch = epoch

    def save(self, epoch: int, state: dict) -> None:
        super().save(epoch, state)
        if epoch == self.epoch:
            raise Killed


def _run(pretext: str = "none", **train):
    raw = {
        "seeds": [3],
        "train": {"epochs": 12, "patience": 2, "lr": 0.01, "pretrain_epochs": 3, "batch_size": 16, **train},
        "params": {"dataset": {"synthetic/chains": {"graphs": 80}}},
        "study": [
            {"datasets": ["synthetic/chains"], "protocols": ["iid"], "encoders": ["tiny-noisy"], "pretext": [pretext]}
        ],
    }
    return expand_grid(default_registry(), raw).runs[0]


def _same_outcome(a, b) -> None:
    assert a.metrics == b.metrics and a.details["fit"] == b.details["fit"]
    assert a.predictions.keys() == b.predictions.keys()
    for slice_name, tasks in a.predictions.items():
        for task, pred in tasks.items():
            other = b.predictions[slice_name][task]
            for field in ("y_true", "y_pred", "graph"):
                assert np.array_equal(getattr(pred, field), getattr(other, field)), (slice_name, task, field)


@pytest.mark.slow
def test_a_run_killed_after_any_epoch_resumes_bit_for_bit(synthetic_env, tmp_path):
    registry, run = default_registry(), _run()
    plain = run_finetune(registry, run, None)  # no snapshots at all
    assert plain.details["fit"]["epochs_run"] < 12  # early stopping ended it
    kept = run_finetune(registry, run, None, Snapshots(tmp_path / "whole.pt", run.spec))
    _same_outcome(kept, plain)  # keeping snapshots changes nothing
    for epoch in (1, 2, plain.details["fit"]["epochs_run"] - 1):
        path = tmp_path / f"killed-{epoch}.pt"
        with pytest.raises(Killed):
            run_finetune(registry, run, None, KilledAfter(path, run.spec, epoch))
        resumed = run_finetune(registry, run, None, Snapshots(path, run.spec))
        assert resumed.details["resumed_at_epochs"] == [epoch]
        _same_outcome(resumed, plain)


@pytest.mark.slow
def test_a_stage_killed_after_any_epoch_resumes_bit_for_bit(synthetic_env, tmp_path):
    registry, run = default_registry(), _run("tiny-masking")
    stage = run.stage_spec()
    plain = pretrain(registry, stage, tmp_path / "plain.pt")
    weights = torch.load(tmp_path / "plain.pt", weights_only=True)
    finetuned = run_finetune(registry, run, tmp_path / "plain.pt")
    for epoch in (1, 2):
        path, checkpoint = tmp_path / f"stage-{epoch}.snapshot", tmp_path / f"stage-{epoch}.pt"
        with pytest.raises(Killed):
            pretrain(registry, stage, checkpoint, snapshots=KilledAfter(path, stage, epoch))
        assert not checkpoint.exists()
        resumed = pretrain(registry, stage, checkpoint, snapshots=Snapshots(path, stage))
        assert resumed["losses"] == plain["losses"] and resumed["resumed_at_epochs"] == [epoch]
        again = torch.load(checkpoint, weights_only=True)
        for part in ("encoder", "head"):
            assert all(torch.equal(weights[part][k], again[part][k]) for k in weights[part])
        # ... and a run fine-tuned from it, itself killed and resumed, as from the uninterrupted stage.
        snapshot = tmp_path / f"run-{epoch}.pt"
        with pytest.raises(Killed):
            run_finetune(registry, run, checkpoint, KilledAfter(snapshot, run.spec, epoch))
        _same_outcome(run_finetune(registry, run, checkpoint, Snapshots(snapshot, run.spec)), finetuned)


def _pause_at(monkeypatch, steps: set[int]) -> None:
    """The scheduler's warning arrives during the given training steps (1-based, counted across
    every call): the next look at `pause_requested` (`EpochBatches.steps`, after each step) says yes."""
    seen = {"steps": 0}

    def requested() -> bool:
        seen["steps"] += 1
        return seen["steps"] in steps

    monkeypatch.setattr(resume, "pause_requested", requested)


@pytest.mark.slow
def test_a_run_paused_after_any_step_resumes_bit_for_bit(synthetic_env, tmp_path, monkeypatch):
    registry, run = default_registry(), _run()
    plain = run_finetune(registry, run, None)
    per_epoch = 4  # 60 training graphs of 80 in batches of 16
    # In the first step; mid-epoch; after an epoch's last step, before its validation; in a later
    # epoch; and twice in one run, the second time in the try that resumed from the first.
    for pauses in ({1}, {3}, {per_epoch}, {2 * per_epoch + 2}, {2, per_epoch + 3}):
        path = tmp_path / f"paused-{min(pauses)}-{len(pauses)}.pt"
        _pause_at(monkeypatch, pauses)
        for _ in pauses:
            with pytest.raises(TrainingPaused):
                run_finetune(registry, run, None, Snapshots(path, run.spec))
        resumed = run_finetune(registry, run, None, Snapshots(path, run.spec))
        expected = sorted(((step - 1) // per_epoch, (step - 1) % per_epoch + 1) for step in pauses)  # (epoch, steps)
        details = resumed.details
        assert list(zip(details["resumed_at_epochs"], details["resumed_at_steps"], strict=True)) == expected
        _same_outcome(resumed, plain)


@pytest.mark.slow
def test_a_stage_paused_after_any_step_resumes_bit_for_bit(synthetic_env, tmp_path, monkeypatch):
    registry, run = default_registry(), _run("tiny-masking")
    stage = run.stage_spec()
    plain = pretrain(registry, stage, tmp_path / "plain.pt")
    weights = torch.load(tmp_path / "plain.pt", weights_only=True)
    for pauses in ({2}, {5, 11}):
        path, checkpoint = tmp_path / f"stage-{min(pauses)}.snapshot", tmp_path / f"stage-{min(pauses)}.pt"
        _pause_at(monkeypatch, pauses)
        for _ in pauses:
            with pytest.raises(TrainingPaused):
                pretrain(registry, stage, checkpoint, snapshots=Snapshots(path, stage))
        assert not checkpoint.exists()
        resumed = pretrain(registry, stage, checkpoint, snapshots=Snapshots(path, stage))
        assert resumed["losses"] == plain["losses"] and len(resumed["resumed_at_steps"]) == len(pauses)
        again = torch.load(checkpoint, weights_only=True)
        for part in ("encoder", "head"):
            assert all(torch.equal(weights[part][k], again[part][k]) for k in weights[part])


@pytest.mark.slow
def test_the_slurm_warning_pauses_a_job_at_its_next_step_then_requeues_it(synthetic_env, tmp_path, monkeypatch):
    """A real USR2 in a job body as the Slurm executor wraps it; submitit's handler (checkpoint,
    requeue, exit) stands here as a function that records its call and exits."""
    submitit = pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Python runs signal handlers in the main thread only")
    from benchbase.running.slurm_executor import _Pausable

    monkeypatch.setattr(submitit, "JobEnvironment", lambda: SimpleNamespace(_usr_sig=lambda: signal.SIGUSR2))
    registry, run, path = default_registry(), _run(), tmp_path / "warned.pt"
    plain = run_finetune(registry, run, None)
    requeued = []

    def submitit_requeues(signum, frame):
        requeued.append(signum)
        raise SystemExit(-1)

    def warned_in_step_3(*args):
        one_step(*args)
        one_step.calls += 1
        if one_step.calls == 3:
            os.kill(os.getpid(), signal.SIGUSR2)

    one_step = finetuning.optimiser_step
    one_step.calls = 0
    previous = signal.signal(signal.SIGUSR2, submitit_requeues)
    try:
        monkeypatch.setattr(finetuning, "optimiser_step", warned_in_step_3)
        with pytest.raises(SystemExit):
            _Pausable(lambda _: run_finetune(registry, run, None, Snapshots(path, run.spec)), grace=60)(None)
        assert requeued == [signal.SIGUSR2] and signal.getsignal(signal.SIGUSR2) is submitit_requeues
        monkeypatch.setattr(finetuning, "optimiser_step", one_step)
        resumed = run_finetune(registry, run, None, Snapshots(path, run.spec))
        assert (resumed.details["resumed_at_epochs"], resumed.details["resumed_at_steps"]) == ([0], [3])
        _same_outcome(resumed, plain)

        def loading_data(_):  # warned where no training step comes: requeued once the grace is over
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(60)

        with pytest.raises(SystemExit):
            _Pausable(loading_data, grace=1)(None)
        assert requeued == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_pause_asked_of_a_run_without_snapshots_is_ignored(synthetic_env):
    registry, run = default_registry(), _run(epochs=1)
    request_pause()
    try:
        outcome = run_finetune(registry, run, None)  # nothing to resume from: it does not stop
    finally:
        clear_pause()
    assert outcome.details["fit"]["epochs_run"] == 1 and "resumed_at_epochs" not in outcome.details


@pytest.mark.slow
def test_a_snapshot_of_another_job_or_unsealed_is_not_used(synthetic_env, tmp_path):
    registry, run = default_registry(), _run(epochs=2)
    with pytest.raises(Killed):
        run_finetune(registry, run, None, KilledAfter(tmp_path / "s.pt", run.spec, 1))
    other = _run(epochs=2, lr=0.5)
    with pytest.warns(UserWarning, match="belongs to another job"):
        outcome = run_finetune(registry, other, None, Snapshots(tmp_path / "s.pt", other.spec))
    assert "resumed_at_epochs" not in outcome.details
    sealed = Snapshots(tmp_path / "sealed.pt", run.spec, key=b"k" * 32)
    sealed.save(1, {"anything": torch.zeros(1)})
    (tmp_path / "sealed.pt").write_bytes((tmp_path / "sealed.pt").read_bytes()[:-1] + b"x")
    with pytest.warns(UserWarning, match="not sealed with this store's key"):
        assert Snapshots(tmp_path / "sealed.pt", run.spec, key=b"k" * 32).load() is None


KILL_GRID = """
name = "resume"
seeds = [0]
[train]
epochs = 20
patience = 100
pretrain_epochs = 6
batch_size = 8
[params.dataset."synthetic/chains"]
graphs = 250
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny-noisy"]
pretext = ["tiny-masking"]
"""


def _command(grid: Path, store: Path) -> list[str]:
    return [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(store),
            "--no-leaderboard", "--jobs", "1"]  # fmt: skip


def _finished(store: Path) -> dict[str, tuple]:
    with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        rows = db.execute("SELECT run_id, metrics, details, predictions_sha256 FROM runs WHERE status = 'finished'")
        return {r[0]: (json.loads(r[1]), json.loads(r[2]), r[3]) for r in rows}


def _stage_details(store: Path) -> list[dict]:
    with closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        return [json.loads(r[0]) for r in db.execute("SELECT details FROM stages")]


def _kill_when(path_glob: str, store: Path, command: list[str], env: dict) -> None:
    """Start `command`, SIGKILL its process group once a snapshot matching `path_glob` exists."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and not list(store.glob(path_glob)) and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the grid ended before a snapshot was seen"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_a_killed_grid_run_again_resumes_its_stage_and_run(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(KILL_GRID)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run(_command(grid, whole), env=synthetic_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not list((whole / "resume").glob("*.pt"))  # deleted once the jobs' records were written
    _kill_when("resume/stage-*.pt", killed, _command(grid, killed), synthetic_env)  # while pretraining
    _kill_when("resume/[0-9a-f]*.pt", killed, _command(grid, killed), synthetic_env)  # while fine-tuning
    again = subprocess.run(_command(grid, killed), env=synthetic_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert (again.stdout + again.stderr).count("(resumed after epoch") == 1  # the run; the stage was the run before
    [stage] = _stage_details(killed)
    assert stage["resumed_at_epochs"] and stage["losses"] == _stage_details(whole)[0]["losses"]
    [(run_id, (metrics, details, sha))] = _finished(killed).items()
    assert details["resumed_at_epochs"] and details["resumed_at_epochs"][0] >= 1
    assert (metrics, sha) == _finished(whole)[run_id][::2]  # the same metrics, the same predictions' bytes
    assert not list((killed / "resume").glob("*.pt"))


#: One epoch of 19 training steps (150 training graphs in batches of 8), each at least 4 s: over 76 s
#: on any machine, longer than the one-minute limit (whose warning comes 15 s before it). A try
#: that resumed from the last finished epoch would never end it; each try here goes on from the
#: step where the last one paused.
REQUEUE_GRID = """
name = "requeue"
seeds = [0]
[train]
epochs = 1
batch_size = 8
[params.dataset."synthetic/chains"]
graphs = 200
[params.encoder.tiny-noisy]
pause = 4.0
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny-noisy"]
[executor.slurm]
time = 1
mem_gb = 0.25
requeues = 12
"""


class _QuickRequeueCluster:
    """A private one-node Slurm whose requeued jobs may start again after 10 s (``cred_expire``; the
    default makes a requeued job wait 2 minutes)."""

    def __new__(cls, root: Path):
        from slurm_cluster import Cluster

        class Quick(Cluster):
            def _config(self) -> str:
                own = f"AuthInfo=socket={self.munge_socket}"
                return super()._config().replace(own, f"{own},cred_expire=10")

        return Quick(root)


@pytest.mark.slow
def test_real_slurm_a_run_whose_epoch_is_longer_than_its_time_limit_completes_through_requeues(synthetic_env, tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")
    cluster = _QuickRequeueCluster(tmp_path / "cluster")
    reason = cluster.start()
    if reason:
        cluster.stop()
        pytest.skip(reason)
    try:
        env = {**synthetic_env, "SLURM_CONF": cluster.env["SLURM_CONF"]}
        grid = tmp_path / "grid.toml"
        grid.write_text(REQUEUE_GRID)
        local, slurm = tmp_path / "local", tmp_path / "slurm"
        done = subprocess.run([*_command(grid, slurm)[:-2], "--executor", "slurm"], env=env, capture_output=True,
                              text=True, timeout=1200)  # fmt: skip
        last = done.stderr.strip().splitlines()[-3:]
        print("\n[a run whose epoch is longer than time=1] exit", done.returncode, *last, sep="\n  ")
        assert done.returncode == 0, done.stderr
        assert "(resumed after epoch 0 + " in done.stderr  # within the epoch
        done = subprocess.run(_command(grid, local), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    finally:
        cluster.stop()
    [(run_id, (metrics, details, sha))] = _finished(slurm).items()
    assert details["resumed_at_epochs"][0] == 0 and details["resumed_at_steps"][0] > 0  # paused, requeued, resumed
    assert (metrics, sha) == _finished(local)[run_id][::2]
