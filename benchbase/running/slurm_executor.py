"""`--executor slurm`: stages and runs as Slurm jobs, submitted through submitit.

submitit (facebookincubator/submitit) writes the job's function and arguments to a folder, submits
an sbatch script that runs them, and leaves the result there; benchbase's driver collects it and
alone writes the store. Runs are submitted right behind their stage with an ``afterok`` dependency,
so Slurm starts them when the stage succeeded; when a stage fails, the driver cancels the runs
behind it and records them failed with the stage's reason. Jobs are checkpointable: a preempted or
timed-out job is requeued by submitit with the same arguments. Every job id is kept in the store:
a driver that was killed and restarted follows the jobs in flight instead of submitting them twice.

Job states come from ``squeue``; a job that left the queue without a result is recorded failed only
once Slurm confirms it ended - ``sacct`` where accounting exists, else ``scontrol`` (slurmctld keeps
a finished job for MinJobAge seconds, then answers that it knows no such job) - and, when it
COMPLETED, after its result file had time to show on a shared file system. A failed ``squeue`` (a
slurmctld restart, a timeout) tells nothing: the driver asks again with backoff, and gives up after
``patience`` seconds with one line, leaving the jobs to the next invocation. A run is not reported
before its stage: when the stage failed, the driver withdraws the run with the stage's reason.

Submission: ``max_queued`` caps this grid's jobs in Slurm's queue (a per-user ``MaxSubmitJobs``, a
fair share of ``MaxJobCount``); the rest wait in the driver, oldest first, and are submitted as jobs
end. An sbatch refused for a limit or a busy slurmctld is tried again with backoff (for up to
``patience`` seconds), not an error; a refusal for anything else (a wrong partition) is.

Options (grid ``[executor.slurm]`` or ``--executor-option``): ``partition``, ``time`` (minutes per
job), ``mem_gb``, ``account``, ``gpus`` (per GPU job), ``extra`` (more sbatch options, a table),
``folder`` (where job files go; default: ``slurm/`` in the store's shared directory), and
``cluster = "local"`` to run the same jobs as local processes through submitit's local executor
(for trying a grid without a cluster; no dependencies, the driver orders the jobs), ``python`` (the
interpreter the job scripts run, default the driver's own - set it when the compute nodes see the
environment at another path), ``patience`` (seconds to wait for a Slurm that does not answer),
``requeues`` (how many times a job that reached its ``time`` is requeued; it resumes from its last
finished epoch) and
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
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchbase.contract.errors import GridError, WorkerDied
from benchbase.contract.params import Param
from benchbase.running.executors import Executor, Job, Resources

#: Seconds between looks at the queue while waiting for jobs; doubled up to MAX_POLL_SECONDS while
#: Slurm does not answer.
POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 30.0
#: How long a job Slurm says COMPLETED may take to show its result file (NFS caches listings).
RESULT_GRACE_SECONDS = 60.0


class _Requeueable:
    """The job body: checkpointable, so that submitit requeues it (same arguments) on preemption or
    at its time limit (``--signal``, USR2). Nothing is saved at the signal itself - it may come in
    the middle of an optimiser step -: the requeued job resumes from the training snapshot its
    last finished epoch left (`benchbase.running.jobs.snapshots_of`), bit for bit."""

    def __init__(self, fn: Job) -> None:
        self.fn = fn

    def __call__(self, payload: Any) -> Any:
        return self.fn(payload)

    def checkpoint(self, payload: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, payload)


class QueueUnknown(Exception):
    """Slurm could not be asked (``squeue`` failed, timed out or is missing): nothing is known about
    the jobs, which is not the same as their having ended."""


def _slurm(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QueueUnknown(f"{command[0]}: {exc}") from None


def _forgotten(done: subprocess.CompletedProcess) -> bool:
    """slurmctld answered that it knows no such job: it ended long enough ago to be purged (MinJobAge)."""
    return "Invalid job id" in done.stderr


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


def _queued(job_ids: list[str]) -> dict[str, str]:
    """States of the jobs still in the queue (pending, running, requeued...); `QueueUnknown` when
    squeue gives no answer - an empty dict would read as every job having ended."""
    if not job_ids:
        return {}
    done = _slurm(["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)])
    if done.returncode != 0:
        if _forgotten(done):  # asked for one purged job, squeue fails with this (an answer, not a hiccup)
            return {}
        raise QueueUnknown(f"squeue exited {done.returncode}: {done.stderr.strip()[:200]}")
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


#: States of a job that is still alive (it may yet produce a result).
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "CONFIGURING",
          "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}  # fmt: skip

#: The final state of a job Slurm no longer knows (purged from slurmctld, no accounting).
FORGOTTEN = "ENDED (purged from Slurm's memory)"


def _final_state(job_id: str) -> str | None:
    """The state a job ended in, once Slurm confirms it ended; None while it is alive or while
    Slurm cannot say. sacct first (it remembers every job where accounting exists), then
    scontrol (slurmctld's memory, MinJobAge seconds after the end)."""
    sacct = _slurm(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id])
    lines = sacct.stdout.strip().splitlines() if sacct.returncode == 0 else []
    if lines:  # "CANCELLED by 0" -> CANCELLED; the last line is the job's latest try
        state = lines[-1].split()[0]
        return None if state in ACTIVE else state
    scontrol = _slurm(["scontrol", "show", "job", job_id])
    if scontrol.returncode != 0:
        return FORGOTTEN if _forgotten(scontrol) else None
    for field in scontrol.stdout.split():
        if field.startswith("JobState="):
            state = field.split("=", 1)[1]
            return None if state in ACTIVE else state
    return None


#: sbatch's words for "not now" - a per-user or cluster-wide job limit, a busy or restarting
#: slurmctld: the job waits and is submitted again; any other refusal means wrong options.
BUSY = ("MaxSubmitJob", "job submit limit", "MaxJobCount", "temporarily unable", "temporarily unavailable",
        "Socket timed out", "Unable to contact slurm controller")  # fmt: skip


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
        "python": Param(None, "str", "the interpreter job scripts run (default: the driver's, sys.executable)"),
        "patience": Param(3600, "number", "seconds the driver waits for a Slurm that does not answer", min=0),
        "max_queued": Param(None, "int", "most of this grid's jobs in Slurm's queue at once (default: all)", min=1),
        "requeues": Param(3, "int", "times a job that reached its time limit is requeued (it resumes)", min=0),
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
        python: str | None = None,
        patience: float = 3600,
        max_queued: int | None = None,
        requeues: int = 3,
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
                self.engine = submitit.SlurmExecutor(folder=str(self.folder), max_num_timeout=requeues, python=python)
            except RuntimeError as exc:  # no srun / sbatch on this machine
                raise GridError(f"--executor slurm: {exc}") from None
        else:
            self.engine = submitit.LocalExecutor(folder=str(self.folder), python=python)
        self.settings = {"partition": partition, "time": time, "mem_gb": mem_gb, "account": account}
        self.settings |= {"gpus": gpus, "extra": extra or {}}
        self._jobs: dict[str, Any] = {}  # key -> submitit job
        self._after: dict[str, tuple[str, ...]] = {}  # key -> keys of the jobs it waits for
        self._gone: dict[str, float] = {}  # key -> when it was first seen ended without a result
        self.patience = patience
        self.max_queued = max_queued
        self._backlog: deque[tuple[str, Job, Any, Resources, tuple[str, ...]]] = deque()  # not submitted yet
        self._new_handles: list[tuple[str, str]] = []  # (key, job id) submitted since the driver last asked
        self._refused_since: float | None = None
        self._unknown_since: float | None = None  # since when squeue has not answered
        self._wait = POLL_SECONDS  # between looks at the queue
        self._retry_wait, self._retry_at = POLL_SECONDS / 2, 0.0

    def _parameters(self, resources: Resources, after: list[str]) -> dict[str, Any]:
        s = self.settings
        if self.cluster == "local":
            return {"timeout_min": s["time"], "cpus_per_task": resources.cpus}
        extra = dict(s["extra"])
        if after:
            extra["dependency"] = "afterok:" + ":".join(after)
        parameters = {
            "time": s["time"],
            # submitit asks for USR2 90 s before the time limit; slurmctld sends it up to 30 s early
            # (it looks every 30 s), so with a limit of 2 minutes or less it can come before
            # Python installed the handler, and kill the job instead of requeueing it.
            "signal_delay_s": min(90, 15 * s["time"]),
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
        self._backlog.append((key, fn, payload, resources, after))
        self._top_up()

    def _top_up(self) -> None:
        """Submit the jobs that wait, oldest first (a stage before its runs), while the queue has
        room (``max_queued``) and Slurm takes them; a busy Slurm is asked again later, with backoff."""
        while self._backlog and (self.max_queued is None or len(self._jobs) < self.max_queued):
            if time.monotonic() < self._retry_at:
                return
            key, fn, payload, resources, after = self._backlog[0]
            waits = [self._jobs[k].job_id for k in after if k in self._jobs]  # a stage over already: none
            self.engine.update_parameters(**self._parameters(resources, waits))
            try:
                self._jobs[key] = self.engine.submit(_Requeueable(fn), payload)
            except self.submitit.core.utils.FailedJobError as exc:
                reason = " ".join(line for line in str(exc).splitlines() if "error" in line.lower()) or str(exc)
                if not any(word.lower() in reason.lower() for word in BUSY):  # the options are wrong
                    raise GridError(f"--executor slurm: the cluster refused the job: {reason}") from None
                now = time.monotonic()
                self._refused_since = self._refused_since or now
                if now - self._refused_since >= self.patience:
                    raise GridError(
                        f"--executor slurm: the cluster has refused jobs for {self.patience:.0f}s: {reason}"
                    ) from None
                self._retry_wait = min(2 * self._retry_wait, MAX_POLL_SECONDS)
                self._retry_at = now + self._retry_wait
                return
            self._backlog.popleft()
            self._after[key] = tuple(k for k in after if k in self._jobs)
            self._refused_since, self._retry_wait, self._retry_at = None, POLL_SECONDS / 2, 0.0
            self._new_handles.append((key, str(self._jobs[key].job_id)))

    def new_handles(self) -> list[tuple[str, str]]:
        handles, self._new_handles = self._new_handles, []
        return handles

    def handle(self, key: str) -> str | None:
        job = self._jobs.get(key)
        return None if job is None else str(job.job_id)

    def attach(self, key: str, handle: str, after: tuple[str, ...] = ()) -> bool:
        if self.cluster != "slurm":
            return False
        job = self.submitit.SlurmJob(folder=str(self.folder), job_id=handle)
        if not job.paths.result_pickle.exists() and handle not in self._ask_patiently(_queued, [handle]):
            return False  # neither finished with a result nor in the queue: submit it again
        self._jobs[key] = job
        self._after[key] = tuple(k for k in after if k in self._jobs)
        return True

    def _ask_patiently(self, ask: Callable[..., Any], *args: Any) -> Any:
        """`ask` again with backoff while Slurm gives no answer, up to `patience` seconds."""
        started, wait = time.monotonic(), POLL_SECONDS
        while True:
            try:
                return ask(*args)
            except QueueUnknown as exc:
                if time.monotonic() - started >= self.patience:
                    raise self._gave_up(exc) from None
                time.sleep(wait)
                wait = min(2 * wait, MAX_POLL_SECONDS)

    def _gave_up(self, exc: Exception) -> GridError:
        return GridError(
            f"--executor slurm: Slurm has not answered for {self.patience:.0f}s ({exc}); the jobs submitted "
            "keep running and the same command follows them once Slurm answers"
        )

    def cancel(self, key: str) -> None:
        self._backlog = deque(waiting for waiting in self._backlog if waiting[0] != key)
        job = self._jobs.pop(key, None)
        self._after.pop(key, None)
        self._gone.pop(key, None)
        if job is not None:
            job.cancel(check=False)

    def in_flight(self) -> int:
        return len(self._jobs) + len(self._backlog)

    def _outcome(self, job: Any) -> Any:
        try:
            return job.result()
        except self.submitit.core.utils.FailedJobError as exc:  # the job's own exception, with its trace
            return _job_error(str(exc))
        except self.submitit.core.utils.UncompletedJobError as exc:
            return WorkerDied(f"the job ended without a result: {exc}")

    def _has_result(self, job: Any) -> bool:
        try:  # on NFS, touching the folder refreshes the cached listing (as submitit does)
            job.paths.folder.chmod(job.paths.folder.stat().st_mode)
        except OSError:
            pass
        return job.paths.result_pickle.exists()

    def _ended(self) -> dict[str, str | None]:
        """Jobs that are over: key -> None for those with a result, else the state Slurm confirmed
        they ended in. `QueueUnknown` when squeue did not answer."""
        done: dict[str, str | None] = {k: None for k, job in self._jobs.items() if job.paths.result_pickle.exists()}
        if self.cluster == "local":
            return done | {k: job.state for k, job in self._jobs.items() if k not in done and job.done()}
        rest = {str(job.job_id): k for k, job in self._jobs.items() if k not in done}
        queued = _queued(list(rest))
        now = time.monotonic()
        for job_id, key in rest.items():
            if job_id in queued:
                self._gone.pop(key, None)
                continue
            if any(k in self._jobs for k in self._after.get(key, ())):
                continue  # its stage's outcome first: a stage that failed withdraws it with its reason
            state = _final_state(job_id)  # out of the queue: confirmed ended, or a hiccup of squeue?
            if state is None:
                continue
            if self._has_result(self._jobs[key]):
                done[key] = None
                continue
            # The result file may lag behind the job's end on a shared file system: give it time.
            first = self._gone.setdefault(key, now)
            if now - first >= (RESULT_GRACE_SECONDS if state in ("COMPLETED", FORGOTTEN) else POLL_SECONDS):
                done[key] = state
        return done

    def completed(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._jobs or self._backlog:
            self._top_up()  # room freed by jobs that ended, or a busy Slurm asked again
            try:
                ended = self._ended()
                self._wait, self._unknown_since = POLL_SECONDS, None
            except QueueUnknown as exc:  # nothing learnt: ask again later, more slowly
                # Kept across calls: a driver that also watches other drivers' jobs calls with a timeout.
                self._unknown_since = self._unknown_since or time.monotonic()
                if time.monotonic() - self._unknown_since >= self.patience:
                    raise self._gave_up(exc) from None
                ended, self._wait = {}, min(2 * self._wait, MAX_POLL_SECONDS)
            if ended:
                for key, state in ended.items():
                    job = self._jobs.pop(key, None)
                    if job is None:  # withdrawn by the driver meanwhile (its stage failed)
                        continue
                    self._after.pop(key, None)
                    self._gone.pop(key, None)
                    if state is None:
                        yield key, self._outcome(job)
                    else:
                        yield key, WorkerDied(f"Slurm job {job.job_id} ended {state}, no result")
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            wait = self._wait
            time.sleep(wait if deadline is None else max(0.0, min(wait, deadline - time.monotonic())))

    def close(self) -> None:
        """Jobs already submitted keep running on the cluster: a later `benchbase run` follows them
        (their ids are in the store), `benchbase collect` loads their records."""
        self._jobs.clear()
        self._after.clear()
        self._gone.clear()
        self._backlog.clear()  # never submitted: the next invocation submits them
