"""Runs a grid: shared pretraining stages first, then fine-tuning runs, skipping what is done.

Every job records itself in the store when it ends, so killing the grid at any moment loses at
most the jobs in flight; starting it again with the same command redoes exactly those.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from benchbase.api import PluginError
from benchbase.executors import Executor
from benchbase.grid import Grid, RunSpec
from benchbase.registry import default_registry
from benchbase.splits import split_hash, split_lists
from benchbase.store import FAILED, FINISHED, Store


@dataclass
class Summary:
    total: int
    already_finished: int
    finished: int = 0
    failed: int = 0
    stages_computed: int = 0
    stages_reused: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


@functools.cache
def environment() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for package in ("benchbase", "torch", "torch_geometric", "numpy", "ogb", "rdkit", "openmm"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


@functools.cache
def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, PluginError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# Jobs: module-level functions so that spawned worker processes can run them. ----------------


def stage_job(args: tuple[str, str, dict]) -> dict:
    from benchbase.train import pretrain

    store_root, stage_id, stage = args
    store = Store(store_root)
    try:
        details = pretrain(default_registry(), stage, store.checkpoint_path(stage_id))
    except Exception as exc:
        store.record_stage(stage_id, stage, FAILED, _error_text(exc), {"traceback": traceback.format_exc()})
        raise
    store.record_stage(stage_id, stage, FINISHED, details=details)
    return details


def run_job(args: tuple[str, str, dict]) -> dict:
    from benchbase.train import run_finetune

    store_root, grid_name, spec = args
    run = RunSpec(spec)
    store = Store(store_root)
    stage_id = run.stage_id
    store.mark_running(run.run_id, grid_name, spec, stage_id)
    common = {"hardware": hardware(), "versions": environment(), "git_commit": git_commit(), "stage_id": stage_id}
    started = time.perf_counter()
    try:
        checkpoint = None
        if stage_id is not None:
            status, error = store.stage_status(stage_id)
            checkpoint = store.checkpoint_path(stage_id)
            if status != FINISHED or not checkpoint.exists():
                raise PluginError(f"its pretraining stage {stage_id} failed: {error or 'no checkpoint'}")
        result = run_finetune(default_registry(), run, checkpoint)
    except Exception as exc:
        store.record_run(
            run.run_id,
            grid_name,
            spec,
            FAILED,
            error=_error_text(exc),
            details={"traceback": traceback.format_exc()},
            seconds=time.perf_counter() - started,
            **common,
        )
        raise
    split = result.pop("split")
    digest = split_hash(split)
    path = store.split_path(digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(split_lists(split)))
    store.record_run(
        run.run_id,
        grid_name,
        spec,
        FINISHED,
        metrics=result.pop("metrics"),
        n_params=result.pop("n_params"),
        seconds=result["seconds"]["total"],
        split_hash=digest,
        details=result,
        **common,
    )
    return result


# The grid. ------------------------------------------------------------------------------------


Progress = Callable[[int, int, str], None]


def run_grid(grid: Grid, store: Store, executor: Executor, progress: Progress) -> Summary:
    started = time.perf_counter()
    statuses = store.status_of([r.run_id for r in grid.runs])
    pending = [r for r in grid.runs if statuses.get(r.run_id) != FINISHED]
    summary = Summary(total=len(grid.runs), already_finished=len(grid.runs) - len(pending))
    stages = {}
    for run in pending:
        if run.stage_id is not None:
            stages.setdefault(run.stage_id, run.stage_spec())
    todo_stages = []
    for stage_id, spec in stages.items():
        status, _ = store.stage_status(stage_id)
        if status == FINISHED and store.checkpoint_path(stage_id).exists():
            summary.stages_reused += 1
        else:
            todo_stages.append((str(store.root), stage_id, spec))
    steps_total = len(todo_stages) + len(pending)
    done = 0
    progress(done, steps_total, f"{len(pending)} runs to do, {summary.already_finished} already finished")
    for (_, stage_id, spec), result in executor.map_unordered(stage_job, todo_stages):
        done += 1
        label = f"{spec['pretext']['name']} on {spec['encoder']['name']}, seed {spec['seed']}"
        if isinstance(result, BaseException):
            if isinstance(result, RuntimeError) and "worker process died" in str(result):
                store.record_stage(stage_id, spec, FAILED, str(result))
            progress(done, steps_total, f"pretraining FAILED ({label}): {_error_text(result)}")
        else:
            summary.stages_computed += 1
            progress(done, steps_total, f"pretrained {label} in {result['seconds']:.1f}s")
    jobs = [(str(store.root), grid.name, run.spec) for run in pending]
    for (_, _, spec), result in executor.map_unordered(run_job, jobs):
        done += 1
        run = RunSpec(spec)
        if isinstance(result, BaseException):
            summary.failed += 1
            error = _error_text(result)
            summary.failures.append((run.label(), error))
            if "worker process died" in error:
                store.record_run(run.run_id, grid.name, spec, FAILED, error=error, stage_id=run.stage_id)
            progress(done, steps_total, f"FAILED {run.label()}: {error}")
        else:
            summary.finished += 1
            progress(done, steps_total, f"finished {run.label()} in {result['seconds']['total']:.1f}s")
    summary.seconds = time.perf_counter() - started
    return summary
