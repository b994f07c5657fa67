"""`benchbase doctor`: check a results store and say what would be repaired; `--repair` does it.

What it looks at, and what a repair does:

- SQLite's ``PRAGMA integrity_check``, and a database that cannot be opened at all: `--rebuild`
  moves it aside (``benchbase.sqlite.damaged-<time>``) and recreates it from the job records on
  disk (finished runs and stages; pending ones are planned again by the next `benchbase run`);
- finished runs whose predictions, and finished stages whose checkpoint, are missing or damaged
  (checksums): marked failed, so that the next `benchbase run` recomputes them;
- files no record names (orphaned predictions and checkpoints), temporary files that a killed
  process left behind and training snapshots of jobs that finished (``resume/``): deleted;
- job records on disk that never reached the database: loaded (`benchbase collect`); records that
  none of the store's jobs wrote (unsigned, edited, ids or paths not the harness's): reported, never
  loaded;
- stale claims (their owner died, or their lease expired): dropped;
- runs left pending or running by a stopped driver, and runs of other code than the installed one:
  reported only (the next `benchbase run` does the first; the second are history, kept and marked
  stale in exports).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchbase.running.store import FAILED, FINISHED, PENDING, RUNNING, Store, verified


@dataclass
class Finding:
    problem: str
    repair: str
    fix: Callable[[], None] | None = None  # None: nothing to repair (information, or impossible here)


def _integrity(store: Store) -> list[Finding]:
    with sqlite3.connect(store.path) as db:
        result = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    if result == ["ok"]:
        return []
    problem = f"SQLite integrity check failed: {'; '.join(result[:3])}"
    return [Finding(problem, "none here: recreate it from the job records with benchbase doctor --rebuild")]


def _damaged(store: Store) -> list[Finding]:
    out = []
    for run in store.runs(FINISHED):
        if not store.has_verified_predictions(run):

            def fail(run: dict = run) -> None:
                fields = {k: run.get(k) for k in ("stage_id", "hardware", "git_commit")}
                error = "its predictions were missing or damaged (benchbase doctor)"
                store.record_run(run["run_id"], run["grid"], run["spec"], FAILED, error=error, **fields)

            out.append(Finding(f"run {run['run_id']}: predictions missing or damaged", "mark it failed", fail))
    for stage in store.stages():
        if stage["status"] == FINISHED and not verified(store.file(stage["checkpoint"]), stage["checkpoint_sha256"]):

            def fail_stage(stage: dict = stage) -> None:
                error = "its checkpoint was missing or damaged (benchbase doctor)"
                store.record_stage(stage["stage_id"], stage["spec"], FAILED, error)

            problem = f"stage {stage['stage_id']}: checkpoint missing or damaged"
            out.append(Finding(problem, "mark it failed", fail_stage))
    return out


def _files(store: Store) -> list[Finding]:
    named = {store.file(r["predictions"]) for r in store.runs() if r.get("predictions")}
    named |= {store.file(s["checkpoint"]) for s in store.stages() if s.get("checkpoint")}
    out = []
    for folder, pattern in (("predictions", "*.npz"), ("stages", "*.pt")):
        for path in sorted((store.shared / folder).glob(pattern)):
            if path not in named and not _has_record(store, path):
                out.append(Finding(f"orphaned file {path}", "delete it", path.unlink))
    for path in sorted(store.shared.rglob(".*.tmp")):
        out.append(Finding(f"temporary file left by a killed process: {path}", "delete it", path.unlink))
    for path in sorted((store.shared / "resume").glob("*.pt")):
        # A snapshot resumes a job that has not finished; one of a job that did is of no more use.
        stage = path.stem.startswith("stage-")
        record = store.stage(path.stem[len("stage-") :]) if stage else store.run(path.stem)
        if record is not None and record["status"] == FINISHED:
            out.append(Finding(f"training snapshot of a finished job: {path}", "delete it", path.unlink))
    return out


def _has_record(store: Store, path: Path) -> bool:
    """A file that a record on disk names: `collect` will load it, it is not an orphan."""
    job = path.stem if path.suffix == ".npz" else f"stage-{path.stem}"
    return store.record_path(job).exists()


def _uncollected(store: Store) -> list[Finding]:
    from benchbase.running.collect import collect_records, refused, uncollected

    out = [
        Finding(f"job record {path} refused: {problem}", "none here: delete it if no job of yours wrote it")
        for path, problem in refused(store)
    ]
    waiting = uncollected(store)
    if waiting:
        problem = f"{len(waiting)} job record(s) on disk never reached the database"
        out.append(Finding(problem, "load them (benchbase collect)", lambda: collect_records(store) and None))
    return out


def _claims(store: Store) -> list[Finding]:
    stale = store.stale_claims()
    if not stale:
        return []
    jobs = [c["job"] for c in stale]
    problem = f"{len(jobs)} stale claim(s) of stopped drivers: {', '.join(jobs[:3])}{' ...' if len(jobs) > 3 else ''}"
    return [Finding(problem, "drop them", lambda: store.drop_claims(jobs))]


def _information(store: Store, current_code: dict[str, set[str]] | None) -> list[Finding]:
    from benchbase.running.specs import is_stale

    out = []
    held = {c["job"] for c in store.claims()} - {c["job"] for c in store.stale_claims()}
    unfinished = [r for r in store.runs() if r["status"] in (PENDING, RUNNING) and f"run:{r['run_id']}" not in held]
    if unfinished:
        out.append(
            Finding(f"{len(unfinished)} run(s) pending or interrupted", "none: the next benchbase run does them")
        )
    if current_code is not None:
        stale = [r for r in store.runs(FINISHED) if is_stale(r["spec"], current_code)]
        if stale:
            out.append(
                Finding(f"{len(stale)} finished run(s) of other code than the installed", "none: kept as history")
            )
    return out


def examine(store: Store, current_code: dict[str, set[str]] | None = None) -> list[Finding]:
    """Every finding about `store`, problems first, information last."""
    return (
        _integrity(store)
        + _damaged(store)
        + _uncollected(store)
        + _files(store)
        + _claims(store)
        + _information(store, current_code)
    )


def repair(findings: list[Finding]) -> int:
    """Apply every repair; returns how many were applied."""
    applied = 0
    for finding in findings:
        if finding.fix is not None:
            finding.fix()
            applied += 1
    return applied


def rebuild(root: Path) -> tuple[Path | None, int]:
    """Move the database aside (with its WAL files) and recreate it from the job records on disk;
    returns where the old one went (None if there was none) and how many records were loaded."""
    from benchbase.running.collect import collect_records

    database = root / "benchbase.sqlite"
    moved = None
    if database.exists():
        moved = root / f"benchbase.sqlite.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):
            if (root / f"benchbase.sqlite{suffix}").exists():
                os.replace(root / f"benchbase.sqlite{suffix}", root / f"{moved.name}{suffix}")
    return moved, collect_records(Store(root, allow_empty=True))
