"""Runs a grid: pretraining stages and fine-tuning runs, pipelined, skipping what is done.

The driver plans, submits and records; jobs compute. A fine-tuning run is submitted as soon as its
pretraining stage (if it has one) has finished - runs without pretraining at once - so no core
waits for all stages to end. A ready job is claimed in the store only when the executor has a free
worker for it (`Executor.free_slots`), so that drivers started on other terminals or machines on the
same store share the grid rather than finding every job claimed. Jobs write their files
(checkpoint, predictions, split, and their record as JSON) into the store's directory and return
the record; the driver alone writes it into SQLite. Killing the grid at any moment loses at most
the jobs in flight: the same command redoes exactly those.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchbase.compute.runspec import RunSpec
from benchbase.contract.errors import DependencyFailed, StageFailed, StoreError
from benchbase.running.executors import Executor, Resources
from benchbase.running.jobs import error_text, failure_details, run_job, stage_job
from benchbase.running.planning import Grid
from benchbase.running.provenance import git_commit, hardware
from benchbase.running.store import (
    FAILED,
    FINISHED,
    LEASE_SECONDS,
    Owner,
    Store,
)


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
    redone: int = 0  # finished runs whose prediction file was missing or damaged
    finished_elsewhere: int = 0  # runs another invocation on the same store computed meanwhile


Progress = Callable[[int, int, str], None]


#: Seconds between looks at jobs that another driver holds.
POLL_SECONDS = 2.0


class _Renewal(threading.Thread):
    """Renews the driver's claims while it works, so that other drivers leave them alone."""

    def __init__(self, store: Store, owner: Owner) -> None:
        super().__init__(daemon=True, name="benchbase-lease")
        self.store, self.owner, self.stopped = store, owner, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(LEASE_SECONDS / 3):
            try:
                self.store.renew(self.owner)
            except sqlite3.Error:  # a busy or full disk: try again at the next beat
                pass


class GridRunner:
    """Plans a grid, claims and submits its jobs as they become ready, records their outcomes.
    `run()` does it all; `summary` tells what happened, also after an interrupt."""

    def __init__(self, grid: Grid, store: Store, executor: Executor, progress: Progress) -> None:
        self.grid, self.store, self.executor, self.progress = grid, store, executor, progress
        self.owner = Owner()
        self.runs = {r.run_id: r for r in grid.runs}
        self.waiting: dict[str, list[RunSpec]] = defaultdict(list)  # stage id -> runs waiting for it
        self.stage_specs: dict[str, dict] = {}
        self.foreign: dict[str, Any] = {}  # jobs another driver holds: key -> run or stage id
        self.ready_stages: set[str] = set()
        self.mine: set[str] = set()  # stages this driver submitted
        self.submitted: set[str] = set()  # jobs this driver submitted afresh (not followed)
        self.dependents: dict[str, list[RunSpec]] = defaultdict(list)  # submitted behind a stage (engines)
        self.settled: set[str] = set()  # runs recorded already (their outcome, if it comes, is ignored)
        # Jobs ready to run, not claimed yet: claimed one at a time as the executor frees a worker,
        # so that other drivers on the same store can take the rest meanwhile.
        self.ready: deque[tuple[str, Any, tuple[str, ...]]] = deque()
        self._filling = False
        self.done = 0
        self.steps = 0
        self.summary = Summary(total=len(grid.runs), already_finished=0)

    # planning ----------------------------------------------------------------------------------

    def _finished(self, run_id: str) -> bool:
        record = self.store.run(run_id)
        return record is not None and record["status"] == FINISHED and self.store.has_verified_predictions(record)

    def plan(self) -> list[RunSpec]:
        statuses = self.store.status_of(list(self.runs))
        pending = []
        for run in self.grid.runs:
            if statuses.get(run.run_id) == FINISHED:
                if self._finished(run.run_id):
                    self.summary.already_finished += 1
                    continue
                self.summary.redone += 1  # finished, but its predictions file is gone or damaged
            pending.append(run)
        self.store.plan(self.grid.name, {r.run_id: r.spec for r in pending})
        self.store.record_grid(
            self.grid.name,
            self.grid.source,
            {
                "analysis": self.grid.analysis,
                "questions": self.grid.questions,
                "seeds": self.grid.seeds,
                "table_metrics": self.grid.table_metrics,
            },
        )
        return pending

    def start(self) -> None:
        pending = self.plan()
        self.steps = len(pending)
        message = f"{len(pending)} runs to do, {self.summary.already_finished} already finished"
        if self.summary.redone:
            message += f" ({self.summary.redone} finished runs have missing or damaged predictions: redone)"
        self.progress(0, self.steps, message)
        for run in pending:
            stage_id = run.stage_id
            if stage_id is None or stage_id in self.ready_stages:
                self._offer_run(run)
            elif stage_id in self.stage_specs:
                self.waiting[stage_id].append(run)
            elif self.store.stage_ready(stage_id):
                self.stage_specs[stage_id] = run.stage_spec()
                self.ready_stages.add(stage_id)
                self.summary.stages_reused += 1
                self._offer_run(run)
            else:
                self.stage_specs[stage_id] = run.stage_spec()
                self.waiting[stage_id].append(run)
                self.steps += 1
                self._offer_stage(stage_id)
            if stage_id in self.mine and self.executor.supports_dependencies:
                self._submit_behind_stage(stage_id)
        self._fill()

    # claiming and submitting ---------------------------------------------------------------------

    def _resources(self, run: RunSpec) -> Resources:
        return Resources(cpus=run.threads, gpus=0 if run.spec["numerics"]["device"] == "cpu" else 1)

    def _offer_stage(self, stage_id: str) -> None:
        self._enqueue(f"stage:{stage_id}", stage_id)

    def _claim_stage(self, stage_id: str) -> None:
        """Claim and submit the stage, unless another driver holds it or has done it."""
        key = f"stage:{stage_id}"
        if not self.store.claim(key, self.owner):
            self.foreign[key] = stage_id
            return
        if self.store.stage_ready(stage_id):  # another driver finished it meanwhile
            self.store.release(key, self.owner)
            self._stage_available(stage_id, reused=True)
            return
        payload = {"root": str(self.store.shared), "stage_id": stage_id, "spec": self.stage_specs[stage_id]}
        payload["device"] = self.waiting[stage_id][0].device  # where its runs are placed
        self._submit(key, stage_job, payload, self._resources(self.waiting[stage_id][0]))
        self.mine.add(stage_id)

    def _submit_behind_stage(self, stage_id: str) -> None:
        """Engines that order jobs themselves get the waiting runs now, after the stage."""
        for run in self.waiting.pop(stage_id, []):
            self.dependents[stage_id].append(run)
            self._offer_run(run, after=(f"stage:{stage_id}",))

    def _submit(self, key: str, fn: Any, payload: dict, resources: Resources, after: tuple[str, ...] = ()) -> None:
        """Submit a job, or follow the one a previous driver submitted for it (kept in the store)."""
        handle = self.store.submission(key, self.executor.name)
        if handle is not None and self.executor.attach(key, handle, after):
            if not any(k in self.submitted for k in after):
                return
            # Its stage was submitted again (the old stage job died while no driver watched): the
            # old job waits for a stage that will never succeed, so it goes, and a new one waits for
            # the new stage.
            self.executor.cancel(key)
        self.submitted.add(key)
        self.executor.submit(key, fn, payload, resources, after)
        handle = self.executor.handle(key)
        if handle is not None:
            self.store.record_submission(key, self.executor.name, handle)

    def _offer_run(self, run: RunSpec, after: tuple[str, ...] = ()) -> None:
        self._enqueue(f"run:{run.run_id}", run, after)

    def _claim_run(self, run: RunSpec, after: tuple[str, ...] = ()) -> None:
        """Claim and submit the run, unless another driver holds it or has finished it."""
        key = f"run:{run.run_id}"
        if not self.store.claim(key, self.owner):
            self.foreign[key] = run
            return
        if self._finished(run.run_id):  # another driver finished it meanwhile
            self.store.release(key, self.owner)
            self._count(f"finished elsewhere {run.label()}")
            self.summary.finished_elsewhere += 1
            return
        payload: dict[str, Any] = {"root": str(self.store.shared), "grid": self.grid.name, "spec": run.spec}
        payload["device"] = run.device
        if run.stage_id is not None and not after:
            stage = self.store.stage(run.stage_id)
            payload["checkpoint"], payload["checkpoint_sha256"] = stage["checkpoint"], stage["checkpoint_sha256"]
        self._submit(key, run_job, payload, self._resources(run), after)

    def _enqueue(self, key: str, what: Any, after: tuple[str, ...] = ()) -> None:
        self.foreign.pop(key, None)  # offered again (its holder let it go): ours to try, not to watch
        self.ready.append((key, what, after))
        self._fill()

    def _fill(self) -> None:
        """Claim and submit ready jobs while the executor has a free worker (all of them at once for
        engines that queue and cap jobs themselves: `Executor.free_slots` is None). A job is
        claimed only when it can start, so other drivers on the store share what is left."""
        if self._filling:  # a job offered while filling (a stage found done elsewhere) is queued
            return
        self._filling = True
        try:
            while self.ready:
                free = self.executor.free_slots()
                if free is not None and free <= 0:
                    return
                key, what, after = self.ready.popleft()
                if isinstance(what, RunSpec):
                    self._claim_run(what, after)
                else:
                    self._claim_stage(what)
        finally:
            self._filling = False

    def _count(self, message: str) -> None:
        self.done += 1
        self.progress(self.done, self.steps, message)

    # the loop ----------------------------------------------------------------------------------

    def run(self) -> Summary:
        """Plan, submit and record until every run is done. On any exit - an interrupt included -
        the claims are released and queued jobs abandoned (the same command redoes them)."""
        started = time.perf_counter()
        renewal = _Renewal(self.store, self.owner)
        renewal.start()
        try:
            self.start()
            self.loop()
        except sqlite3.OperationalError as exc:  # a full disk; a filesystem SQLite cannot lock
            raise StoreError(f"the store at {self.store.root} cannot be written: {exc}") from None
        finally:
            self.summary.seconds = time.perf_counter() - started
            renewal.stopped.set()
            self.executor.close()
            try:
                self.store.release_all(self.owner)
            except sqlite3.Error:
                pass  # an expired lease is taken over anyway
        return self.summary

    def loop(self) -> None:
        last_look = time.monotonic()
        while self.executor.in_flight() or self.foreign or self.ready:
            timeout = POLL_SECONDS if self.foreign else None
            for key, outcome in self.executor.completed(timeout=timeout):
                kind, _, ident = key.partition(":")
                if kind == "stage":
                    self._stage_done(ident, outcome)
                elif ident not in self.settled:
                    self._run_done(self.runs[ident], outcome)
                self.store.drop_submission(key)
                self.store.release(key, self.owner)
                self._fill()  # a worker is free
            self._fill()
            for key, handle in self.executor.new_handles():  # held back by the engine, submitted now
                self.store.record_submission(key, self.executor.name, handle)
            if self.foreign and time.monotonic() - last_look >= POLL_SECONDS:
                self._look_at_foreign()
                last_look = time.monotonic()
            elif self.foreign and not self.executor.in_flight():
                time.sleep(POLL_SECONDS / 4)

    def _look_at_foreign(self) -> None:
        """Jobs another driver holds: done there, failed there, or free again (its driver died)."""
        held = {c["job"] for c in self.store.claims()}
        for key, what in list(self.foreign.items()):
            if isinstance(what, RunSpec):
                record = self.store.run(what.run_id)
                if self._finished(what.run_id):
                    del self.foreign[key]
                    self.summary.finished_elsewhere += 1
                    self._count(f"finished elsewhere {what.label()}")
                elif record is not None and record["status"] == FAILED and key not in held:
                    del self.foreign[key]
                    self.summary.failed += 1
                    self.summary.failures.append((what.label(), f"(in another invocation) {record['error']}"))
                    self._count(f"FAILED elsewhere {what.label()}: {record['error']}")
                elif key not in held or self.store.claim(key, self.owner):
                    self.store.release(key, self.owner)
                    self._offer_run(what)
                continue
            stage = self.store.stage(what)
            if self.store.stage_ready(what):
                del self.foreign[key]
                self._stage_available(what, reused=True)
            elif stage is not None and stage["status"] == FAILED and key not in held:
                del self.foreign[key]
                self._fail_waiting(what, stage["error"])
            elif key not in held or self.store.claim(key, self.owner):
                self.store.release(key, self.owner)
                self._offer_stage(what)

    # outcomes ----------------------------------------------------------------------------------

    def _label(self, stage_id: str) -> str:
        spec = self.stage_specs[stage_id]
        return f"{spec['pretext']['name']} on {spec['encoder']['name']}, {spec['dataset']['name']}, seed {spec['seed']}"

    def _stage_available(self, stage_id: str, reused: bool) -> None:
        self.ready_stages.add(stage_id)
        if reused:
            self.summary.stages_reused += 1
            self._count(f"pretraining of {self._label(stage_id)} done elsewhere")
        for run in self.waiting.pop(stage_id, []):
            self._offer_run(run)

    def _fail_waiting(self, stage_id: str, error: str) -> None:
        self._count(f"pretraining FAILED ({self._label(stage_id)}): {error}")
        failure = StageFailed(f"its pretraining stage {stage_id} failed: {error}")
        for run in self.waiting.pop(stage_id, []):
            self._run_done(run, failure)
        for run in self.dependents.pop(stage_id, []):  # queued behind it in the engine: withdraw them
            if run.run_id in self.settled:
                continue
            key = f"run:{run.run_id}"
            self.executor.cancel(key)
            self.store.drop_submission(key)
            self.store.release(key, self.owner)
            self._run_done(run, failure)

    def _stage_done(self, stage_id: str, outcome: Any) -> None:
        spec = self.stage_specs[stage_id]
        if isinstance(outcome, BaseException):
            error = error_text(outcome)
            self.store.record_stage(stage_id, spec, FAILED, error, failure_details(outcome))
            self._fail_waiting(stage_id, error)
            return
        self.store.record_stage(
            stage_id,
            spec,
            FINISHED,
            details=outcome["details"],
            checkpoint=outcome["checkpoint"],
            checkpoint_sha256=outcome["checkpoint_sha256"],
        )
        self.summary.stages_computed += 1
        seconds = outcome["details"]["seconds"]
        self._count(f"pretrained {self._label(stage_id)} in {seconds:.1f}s{_resumed(outcome['details'])}")
        self.dependents.pop(stage_id, None)
        self._stage_available(stage_id, reused=False)

    def _run_done(self, run: RunSpec, outcome: Any) -> None:
        self.settled.add(run.run_id)
        if isinstance(outcome, DependencyFailed):  # the engine did not start it: its stage failed
            stage_id = outcome.dependency.partition(":")[2]
            outcome = StageFailed(f"its pretraining stage {stage_id} failed: {error_text(outcome.error)}")
        if isinstance(outcome, BaseException):
            error = error_text(outcome)
            self.summary.failed += 1
            self.summary.failures.append((run.label(), error))
            self.store.record_run(
                run.run_id,
                self.grid.name,
                run.spec,
                FAILED,
                error=error,
                details=failure_details(outcome),
                stage_id=run.stage_id,
                hardware=hardware(),
                git_commit=git_commit(),
            )
            self._count(f"FAILED {run.label()}: {error}")
            return
        record = dict(outcome)
        self.store.record_run(
            record.pop("run_id"), record.pop("grid"), record.pop("spec"), record.pop("status"), **record
        )
        self.summary.finished += 1
        self._count(f"finished {run.label()} in {outcome['seconds']:.1f}s{_resumed(outcome['details'])}")


def _resumed(details: dict[str, Any]) -> str:
    """How a job that was killed or requeued went on: from its training snapshots (`jobs.snapshots_of`),
    taken after an epoch, or after some steps of the next one when a requeue warned it."""
    epochs = details.get("resumed_at_epochs")
    if not epochs:
        return ""
    steps = details.get("resumed_at_steps") or [0] * len(epochs)
    where = [f"{epoch}" + (f" + {step} step(s)" if step else "") for epoch, step in zip(epochs, steps, strict=False)]
    return f" (resumed after epoch {', '.join(where)})"


def run_grid(grid: Grid, store: Store, executor: Executor, progress: Progress) -> Summary:
    """Run every unfinished run of `grid` (and the stages they need) once, whoever else works on
    the same store (`GridRunner.run`)."""
    return GridRunner(grid, store, executor, progress).run()
