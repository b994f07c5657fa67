"""The two jobs an executor runs, a pretraining stage and a fine-tuning run: each computes in its own
process and writes its files and record into the store's directory."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

from benchbase.compute.cache import atomic_path, file_sha256
from benchbase.compute.resume import Snapshots
from benchbase.compute.runspec import RunSpec
from benchbase.compute.splits import split_hash, split_lists
from benchbase.contract.errors import PluginError, StageFailed
from benchbase.contract.registry import default_registry
from benchbase.running.datalock import load_datasets
from benchbase.running.provenance import git_commit, hardware, versions_of
from benchbase.running.store import (
    FINISHED,
    record_key,
    record_problem,
    sign_record,
    verified,
    write_predictions,
)


def error_text(exc: BaseException) -> str:
    """One line for the record: a user-actionable message as it is, anything else with its type."""
    if isinstance(exc, PluginError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class _Threads:
    """The run's intra-op thread count for the duration of a job (restored after, in-process)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.before)


def _write_record(root: Path, job_id: str, record: dict[str, Any]) -> None:
    # Signed, so that `collect` can tell this job's record from one planted in the shared directory.
    with atomic_path(root / "records" / f"{job_id}.json") as tmp:
        tmp.write_text(json.dumps(sign_record(root, record), sort_keys=True))


def snapshots_of(root: Path, job_id: str, spec: Any) -> Snapshots:
    """Where a job keeps its training state between epochs: resumed from when the job runs again
    (killed locally, requeued by Slurm), deleted once its record is written. Sealed with the
    store's key, as records are."""
    return Snapshots(root / "resume" / f"{job_id}.pt", spec, record_key(root))


def stage_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Pretrain one stage; writes its checkpoint and returns its record."""
    from benchbase.compute.pretraining import pretrain

    root, stage_id, spec = Path(payload["root"]), payload["stage_id"], payload["spec"]
    relative = f"stages/{stage_id}.pt"
    started_at = time.time()
    snapshots = snapshots_of(root, f"stage-{stage_id}", spec)
    with _Threads(int(spec["numerics"]["threads"])):
        load_datasets(default_registry(), spec)  # under a lock: concurrent jobs build a cache once
        details = pretrain(default_registry(), spec, root / relative, payload.get("device"), snapshots)
    details["started_at"], details["finished_at"] = started_at, time.time()
    record = {
        "stage_id": stage_id,
        "spec": spec,
        "status": FINISHED,
        "details": details,
        "checkpoint": relative,
        "checkpoint_sha256": file_sha256(root / relative),
    }
    _write_record(root, f"stage-{stage_id}", record)
    snapshots.discard()
    return record


def run_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune and evaluate one run; writes its predictions and split, returns its record."""
    from benchbase.compute.loading import build_dataset
    from benchbase.compute.run import run_finetune

    root, run = Path(payload["root"]), RunSpec(payload["spec"], device=payload.get("device"))
    started, started_at = time.perf_counter(), time.time()
    checkpoint, checkpoint_sha256 = None, None
    if run.stage_id is not None:
        stage = payload if "checkpoint" in payload else _stage_record(root, run.stage_id)
        checkpoint, checkpoint_sha256 = root / stage["checkpoint"], stage["checkpoint_sha256"]
        if not verified(checkpoint, checkpoint_sha256):
            raise StageFailed(f"the checkpoint of its pretraining stage {run.stage_id} is missing or damaged")
    # A snapshot resumes only the same spec from the same pretrained weights.
    snapshots = snapshots_of(root, run.run_id, {"spec": run.spec, "checkpoint_sha256": checkpoint_sha256})
    with _Threads(run.threads):
        load_datasets(default_registry(), run.spec)  # under a lock: concurrent jobs build a cache once
        outcome = run_finetune(default_registry(), run, checkpoint, snapshots)
    digest = split_hash(outcome.split)
    split_file = root / "splits" / f"{digest}.json"
    if not split_file.exists():
        with atomic_path(split_file) as tmp:
            tmp.write_text(json.dumps(split_lists(outcome.split)))
    dataset = build_dataset(default_registry(), *run.component("dataset"))
    relative = f"predictions/{run.run_id}.npz"
    sha = write_predictions(root / relative, outcome.predictions, dataset.ids())
    record = {
        "run_id": run.run_id,
        "grid": payload["grid"],
        "spec": run.spec,
        "status": FINISHED,
        "metrics": outcome.metrics,
        "details": outcome.details,
        "n_params": outcome.details.pop("n_params"),
        "seconds": time.perf_counter() - started,
        "hardware": hardware(),
        "versions": versions_of(run.spec),
        "git_commit": git_commit(),
        "split_hash": digest,
        "stage_id": run.stage_id,
        "predictions": relative,
        "predictions_sha256": sha,
    }
    record["details"]["started_at"], record["details"]["finished_at"] = started_at, time.time()
    _write_record(root, run.run_id, record)
    snapshots.discard()
    return record


def _stage_record(root: Path, stage_id: str) -> dict[str, Any]:
    """The record a stage job left beside its checkpoint (engines that order jobs themselves start a
    run once its stage succeeded; the run reads where the checkpoint is from here)."""
    path = root / "records" / f"stage-{stage_id}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise StageFailed(f"its pretraining stage {stage_id} left no record at {path}") from None
    problem = record_problem(root, path, record)
    if problem is not None:  # its checkpoint path would otherwise be read from an untrusted file
        raise StageFailed(f"the record of its pretraining stage {stage_id} is refused: {problem}")
    return record


def failure_details(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, PluginError):
        return {}
    # A job that failed in another process (a Slurm job) sends its own traceback as text.
    job_traceback = getattr(exc, "job_traceback", None)
    return {"traceback": job_traceback or "".join(traceback.format_exception(exc))}
