"""`--executor slurm`: stages and runs as Slurm jobs, submitted through submitit.

submitit (facebookincubator/submitit) writes the job's function and arguments to a folder, submits
an sbatch script that runs them, and leaves the result there; benchbase's driver collects it and
alone writes the store. Runs are submitted right behind their stage with an ``afterok`` dependency,
so Slurm starts them when the stage succeeded; when a stage fails, the driver cancels the runs
behind it and records them failed with the stage's reason. Jobs are checkpointable: a preempted or
timed-out job is requeued by submitit with the same arguments. Every job id is kept in the store:
a driver that was killed and restarted follows the jobs in flight instead of submitting them twice.

Job states come from ``squeue`` and ``scontrol`` (not ``sacct``, which needs Slurm's accounting
database, absent on small clusters): a job that left the queue without a result ended badly
(cancelled, failed, out of time or memory) and is recorded failed with its state.

Options (grid ``[executor.slurm]`` or ``--executor-option``): ``partition``, ``time`` (minutes per
job), ``mem_gb``, ``account``, ``gpus`` (per GPU job), ``extra`` (more sbatch options, a table),
``folder`` (where job files go; default: ``slurm/`` in the store's shared directory), and
``cluster = "local"`` to run the same jobs as local processes through submitit's local executor
(for trying a grid without a cluster; no dependencies, the driver orders the jobs), and
``others_can_write`` (``refuse``, the default, or ``warn``): what to do when the job folder, or a
directory above it, can be written by the group or by others without the sticky bit. The driver
unpickles the results that jobs leave there, so whoever can write them can run code as the user.
"""

from __future__ import annotations

import builtins
import re
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchbase.errors import GridError, WorkerDied
from benchbase.executors import Executor, Job, Resources
from benchbase.params import Param

#: Seconds between looks at the queue while waiting for jobs.
POLL_SECONDS = 1.0


class _Requeueable:
    """The job body: checkpointable, so that submitit requeues it (same arguments) on preemption."""

    def __init__(self, fn: Job) -> None:
        self.fn = fn

    def __call__(self, payload: Any) -> Any:
        return self.fn(payload)

    def checkpoint(self, payload: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, payload)


def writable_by_others(folder: Path) -> Path | None:
    """The first of `folder` and the directories above it that the group or others may write
    (a sticky directory such as /tmp or /scratch excepted: others cannot replace what is in it)."""
    import stat

    for path in [folder.resolve(), *folder.resolve().parents]:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue  # created later, with the user's umask
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            return path
    return None


def _check_writers(folder: Path, choice: str) -> None:
    exposed = writable_by_others(folder)
    if exposed is None:
        return
    message = (
        f"--executor slurm: {exposed} can be written by others, and the driver unpickles the job results "
        f"kept under {folder}: anyone who can write there can run code as you"
    )
    if choice == "refuse":
        raise GridError(f"{message}; chmod go-w {exposed}, or pass --executor-option others_can_write=warn")
    warnings.warn(message, stacklevel=3)


def _scontrol_state(job_id: str) -> str | None:
    """A job's state from ``scontrol`` (None when Slurm has forgotten it)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=60)
    for field in out.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return None


def _queued(job_ids: list[str]) -> dict[str, str]:
    """States of the jobs still in the queue (pending, running, requeued...)."""
    if not job_ids:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True, timeout=60
    )
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Failed|Diverged|Died)): (.*)$")


def _job_error(trace: str) -> Exception:
    """The job's own exception from submitit's failure text (its traceback, then log paths)."""
    found = [m for m in map(_EXCEPTION_LINE.match, trace.splitlines()) if m]
    if not found:
        return RuntimeError(f"the job failed: {trace.strip()[:300]}")
    kind, message = found[-1].group(1).rsplit(".", 1)[-1], found[-1].group(2)
    builtin = getattr(builtins, kind, None)
    if isinstance(builtin, type) and issubclass(builtin, Exception):
        return builtin(message)
    return type(kind, (RuntimeError,), {})(message)  # named like the job's exception in the record


class SlurmExecutor(Executor):
    name = "slurm"
    description = "a Slurm cluster through submitit: one job per stage and run, runs after their stage (afterok)"
    param_spec = {
        "partition": Param(None, "str", "Slurm partition"),
        "time": Param(120, "int", "minutes per job", min=1),
        "mem_gb": Param(8, "number", "memory per job (GB)", min=0.0, min_open=True),
        "account": Param(None, "str", "Slurm account"),
        "gpus": Param(1, "int", "GPUs of a job that trains on a GPU", min=0),
        "extra": Param(None, "dict", "more sbatch options, e.g. {qos = 'high'}"),
        "folder": Param(None, "str", "where job files go (default: slurm/ in the store's shared directory)"),
        "cluster": Param(
            "slurm", "str", "slurm, or local to run the jobs as local processes", choices=("slurm", "local")
        ),
        "others_can_write": Param(
            "refuse",
            "str",
            "a job folder that the group or others can write: refuse, or warn and go on",
            choices=("refuse", "warn"),
        ),
    }
    supports_dependencies = True

    def __init__(
        self,
        jobs: int = 1,
        partition: str | None = None,
        time: int = 120,
        mem_gb: float = 8,
        account: str | None = None,
        gpus: int = 1,
        extra: dict | None = None,
        folder: str | None = None,
        cluster: str = "slurm",
        others_can_write: str = "refuse",
        workdir: Path | None = None,
    ) -> None:
        try:
            import submitit
        except ImportError:
            raise GridError("--executor slurm needs submitit: pip install 'benchbase[slurm]'") from None
        self.submitit = submitit
        self.folder = Path(folder) if folder else (workdir or Path("benchbase-jobs")) / "slurm"
        _check_writers(self.folder, others_can_write)
        self.cluster = cluster
        self.supports_dependencies = cluster == "slurm"  # submitit's local executor has no dependencies
        if cluster == "slurm":
            try:
                self.engine = submitit.SlurmExecutor(folder=str(self.folder), max_num_timeout=3)
            except RuntimeError as exc:  # no srun / sbatch on this machine
                raise GridError(f"--executor slurm: {exc}") from None
        else:
            self.engine = submitit.LocalExecutor(folder=str(self.folder))
        self.settings = {"partition": partition, "time": time, "mem_gb": mem_gb, "account": account}
        self.settings |= {"gpus": gpus, "extra": extra or {}}
        self._jobs: dict[str, Any] = {}  # key -> submitit job

    def _parameters(self, resources: Resources, after: list[str]) -> dict[str, Any]:
        s = self.settings
        if self.cluster == "local":
            return {"timeout_min": s["time"], "cpus_per_task": resources.cpus}
        extra = dict(s["extra"])
        if after:
            extra["dependency"] = "afterok:" + ":".join(after)
        parameters = {
            "time": s["time"],
            "cpus_per_task": resources.cpus,
            "mem": f"{int(s['mem_gb'] * 1024)}M",
            "additional_parameters": extra,
        }
        if resources.gpus:
            parameters["gpus_per_node"] = s["gpus"]
        if s["partition"]:
            parameters["partition"] = s["partition"]
        if s["account"]:
            parameters["account"] = s["account"]
        return parameters

    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        waits = [self._jobs[k].job_id for k in after if k in self._jobs]
        self.engine.update_parameters(**self._parameters(resources, waits))
        try:
            self._jobs[key] = self.engine.submit(_Requeueable(fn), payload)
        except self.submitit.core.utils.FailedJobError as exc:  # sbatch refused it: the options are wrong
            reason = " ".join(line for line in str(exc).splitlines() if "error" in line.lower()) or str(exc)
            raise GridError(f"--executor slurm: the cluster refused the job: {reason}") from None

    def handle(self, key: str) -> str | None:
        job = self._jobs.get(key)
        return None if job is None else str(job.job_id)

    def attach(self, key: str, handle: str) -> bool:
        if self.cluster != "slurm":
            return False
        job = self.submitit.SlurmJob(folder=str(self.folder), job_id=handle)
        if not job.paths.result_pickle.exists() and handle not in _queued([handle]):
            return False  # neither finished with a result nor in the queue: submit it again
        self._jobs[key] = job
        return True

    def cancel(self, key: str) -> None:
        job = self._jobs.pop(key, None)
        if job is not None:
            job.cancel(check=False)

    def in_flight(self) -> int:
        return len(self._jobs)

    def _outcome(self, job: Any) -> Any:
        try:
            return job.result()
        except self.submitit.core.utils.FailedJobError as exc:  # the job's own exception, with its trace
            return _job_error(str(exc))
        except self.submitit.core.utils.UncompletedJobError as exc:
            return WorkerDied(f"the job ended without a result: {exc}")

    def _ended(self) -> list[str]:
        """Keys of jobs that are over: with a result, or out of the queue without one."""
        done = [k for k, job in self._jobs.items() if job.paths.result_pickle.exists()]
        rest = {str(job.job_id): k for k, job in self._jobs.items() if k not in done}
        if self.cluster == "local":
            return done + [k for k, job in self._jobs.items() if k not in done and job.done()]
        queued = _queued(list(rest))
        for job_id, key in rest.items():
            if job_id not in queued:
                done.append(key)
        return done

    def completed(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._jobs:
            ended = self._ended()
            if ended:
                for key in ended:
                    job = self._jobs.pop(key)
                    if job.paths.result_pickle.exists():
                        yield key, self._outcome(job)
                    else:
                        state = _scontrol_state(str(job.job_id)) if self.cluster == "slurm" else job.state
                        yield key, WorkerDied(f"Slurm job {job.job_id} ended {state or 'without a trace'}, no result")
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(POLL_SECONDS)

    def close(self) -> None:
        """Jobs already submitted keep running on the cluster: a later `benchbase run` follows them
        (their ids are in the store), `benchbase collect` loads their records."""
        self._jobs.clear()
