"""`--executor slurm`: stages and runs as Slurm jobs, submitted through submitit.

submitit (facebookincubator/submitit) writes the job's function and arguments to a folder and submits
an sbatch script that runs them. Jobs that are ready together go in one Slurm job array (one sbatch):
stages ready at once, the runs waiting for one stage (with ``afterok`` on that stage's task), the runs
whose stage is over. Slurm starts a run when its stage succeeded; when a stage fails, the driver
cancels the runs behind it and records them failed with the stage's reason. Jobs are
checkpointable: a preempted or timed-out job is requeued by submitit with the same arguments. Every
job id - an array task's as ``123_4`` - is kept in the store: a driver that was killed and restarted
follows the jobs in flight instead of submitting them twice, and cancels and confirms them one task
at a time.

Outcomes: a job leaves its outcome - its record, or its error and traceback - as JSON signed with
a key of the job folder (owner-only, like the store's record key) in ``outcomes/<job id>.json``.
The driver reads only that: it never unpickles what jobs leave in the folder, so a file planted
there runs no code in the driver, and an unsigned or misnamed outcome is a failed job.

Job states come from ``squeue``, asked once per poll for every array and job in flight, at an
interval that grows while nothing ends. A job that left the queue without an outcome is recorded
failed only once Slurm confirms it ended - ``sacct`` where accounting exists, else ``scontrol``
(slurmctld keeps a finished job for MinJobAge seconds, then answers that it knows no such job) -
and, when it COMPLETED, after its outcome file had time to show on a shared file system. A failed
``squeue`` (a slurmctld restart, a timeout) tells nothing: the driver asks again with backoff, and
gives up after ``patience`` seconds with one line, leaving the jobs to the next invocation. A run is
not reported before its stage: when the stage failed, the driver withdraws the run with the stage's
reason.

Submission: ``max_queued`` caps this grid's jobs (array tasks) in Slurm's queue (a per-user
``MaxSubmitJobs``, a fair share of ``MaxJobCount``); the rest wait in the driver, oldest first, and
are submitted as jobs end, once a quarter of the cap is free (one array, not one sbatch per job).
A grid with pretraining takes an array per stage for its runs (each waits for its stage's task with
``afterok``; Slurm starts them while no driver runs). With ``runs_after = "driver"``, runs are
submitted once their stage ended instead, gathered across stages into few arrays (until a quarter
of the cap, or 250, wait, the oldest waited ``gather_seconds``, or nothing else is in flight): for
grids of many stages, at the price of runs that wait for a driver.
``array_parallelism`` caps the tasks of one array that run at once (sbatch ``--array=...%N``). An
sbatch refused for a limit or a busy slurmctld is tried again with backoff, with smaller arrays (for
up to ``patience`` seconds), not an error; a refusal for anything else (a wrong partition) is.

The probe: before its first submission, the driver submits one small job that checks, on a compute
node, what the grid's jobs will need: the job folder and the store's shared directory visible and
writable, the interpreter (``python``) running and importing benchbase and the grid's plugins, the
dataset cache (``BENCHBASE_CACHE``) reachable. When it fails, the grid stops with one line naming what
is missing, before any job of the grid was submitted (``probe = false`` skips it).

Options (grid ``[executor.slurm]`` or ``--executor-option``): ``partition``, ``time`` (minutes per
job), ``mem_gb``, ``account``, ``gpus`` (per GPU job), ``extra`` (more sbatch options, a table),
``folder`` (where job files go; default: ``slurm/`` in the store's shared directory), and
``cluster = "local"`` to run the same jobs as local processes through submitit's local executor
(for trying a grid without a cluster; no dependencies, the driver orders the jobs), ``python`` (the
interpreter the job scripts run, default the driver's own - set it when the compute nodes see the
environment at another path), ``patience`` (seconds to wait for a Slurm that does not answer),
``requeues`` (how many times a job that reached its ``time`` is requeued; warned before its limit,
it saves its training state after the step in progress, and the next try resumes from there),
``max_queued``, ``runs_after``, ``gather_seconds``, ``array_parallelism``, ``probe``, and ``others_can_write``
(``refuse``, the default, or ``warn``): what to do when the job folder, or a directory above it, can
be written by the group or by others without the sticky bit. Jobs run the pickled submissions kept
there, so whoever can write them can run code as the user on the compute nodes.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from benchbase.contract.errors import GridError, PluginError, WorkerDied
from benchbase.contract.params import Param
from benchbase.running.executors import Executor, Job, Resources

#: Seconds between looks at the queue while waiting for jobs; doubled up to MAX_POLL_SECONDS while
#: Slurm does not answer, and grown up to IDLE_POLL_SECONDS while no job ends.
POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 30.0
IDLE_POLL_SECONDS = 5.0
#: How long a job Slurm says COMPLETED may take to show its outcome file (NFS caches listings).
RESULT_GRACE_SECONDS = 60.0
#: The most tasks in one array (Slurm's default MaxArraySize is 1001: indices 0 to 1000).
MAX_ARRAY = 1000
#: Where, in the job folder, jobs leave their outcomes.
OUTCOMES = "outcomes"


class _Requeueable:
    """The job body: checkpointable, so that submitit requeues it (same arguments) on preemption or
    at its time limit (``--signal``, USR2). The requeued job resumes from the training snapshot
    the last try left (`_Pausable`, `benchbase.running.jobs.snapshots_of`), bit for bit."""

    def __init__(self, fn: Job) -> None:
        self.fn = fn

    def __call__(self, payload: Any) -> Any:
        return self.fn(payload)

    def checkpoint(self, payload: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, payload)


class _Pausable:
    """The job, paused between two training steps at the scheduler's warning before its time limit.

    submitit's handler of the warning checkpoints and requeues at once, wherever the job is - in
    the middle of an optimiser step, maybe -, so the next try would go back to the last finished
    epoch, and an epoch longer than the limit would never end. Here the warning only asks the
    training loop to pause (`request_pause`): it saves its state after the step in progress and
    stops (`TrainingPaused`), and submitit's handler then requeues the job. A job that reaches no
    training step within `grace` seconds (loading data, predicting) is requeued as it is."""

    def __init__(self, fn: Job, grace: int) -> None:
        self.fn, self.grace = fn, grace

    def __call__(self, payload: Any) -> Any:
        import signal
        import threading

        import submitit

        from benchbase.compute import resume

        warning = submitit.JobEnvironment()._usr_sig()  # the signal submitit's handler listens to
        requeue = signal.getsignal(warning)
        if not callable(requeue) or threading.current_thread() is not threading.main_thread():
            return self.fn(payload)  # not a submitit job's process: nothing to pause for

        def pause(signum: int, frame: Any) -> None:
            resume.request_pause()
            signal.signal(signal.SIGALRM, lambda _alarm, now: requeue(signum, now))
            signal.alarm(self.grace)

        signal.signal(warning, pause)
        try:
            return self.fn(payload)
        except resume.TrainingPaused:
            signal.alarm(0)
            requeue(warning, None)  # checkpoint (the same arguments), requeue, exit
            raise
        finally:
            signal.alarm(0)  # a job that ended within its grace is not requeued
            signal.signal(warning, requeue)
            resume.clear_pause()


def _describe(exc: BaseException) -> dict[str, Any]:
    """An exception as JSON: enough for the driver to record it as the job's own."""
    kind = type(exc)
    return {
        "module": kind.__module__,
        "type": kind.__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _exception(error: dict[str, Any]) -> Exception:
    """The job's exception, rebuilt from its description (`_describe`) without importing anything
    it names: benchbase's own errors and builtins as themselves, others as a RuntimeError named like it."""
    from benchbase.contract import errors

    name, message = str(error.get("type", "Exception")), str(error.get("message", ""))
    known = getattr(errors if error.get("module") == errors.__name__ else builtins, name, None)
    exc: Exception | None = None
    if isinstance(known, type) and issubclass(known, Exception):
        try:
            exc = known(message)
        except TypeError:  # another constructor (DependencyFailed)
            exc = None
    if exc is None:
        exc = type(name.rsplit(".", 1)[-1], (RuntimeError,), {})(message)
    exc.job_traceback = error.get("traceback")  # type: ignore[attr-defined]  # for the record's details
    return exc


def _outcome_path(folder: Path, job_id: str) -> Path:
    return Path(folder) / OUTCOMES / f"{job_id}.json"


def _leave_outcome(folder: Path, key: str, outcome: dict[str, Any]) -> None:
    """Write this job's outcome, signed with the job folder's key, where the driver looks for it."""
    import submitit

    from benchbase.compute.cache import atomic_path
    from benchbase.running.store import sign_record

    job_id = submitit.JobEnvironment().job_id
    with atomic_path(_outcome_path(folder, job_id)) as tmp:
        tmp.write_text(json.dumps(sign_record(folder, {"job": job_id, "key": key, **outcome}), sort_keys=True))


class _Reported:
    """What a job runs on its node: the job itself, then its outcome left as signed JSON; an error
    is raised again, so that Slurm sees the job FAILED (and ``afterok`` holds its dependants)."""

    def __init__(self, fn: Job, folder: Path) -> None:
        self.fn, self.folder = fn, str(folder)

    def __call__(self, task: dict[str, Any]) -> Any:
        try:
            result = self.fn(task["payload"])
        except Exception as exc:
            _leave_outcome(Path(self.folder), task["key"], {"ok": False, "error": _describe(exc)})
            raise
        _leave_outcome(Path(self.folder), task["key"], {"ok": True, "result": result})
        return result


def _probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Run on a compute node before a grid's jobs: what they need is there, or a `GridError` saying
    what is missing."""
    import tempfile

    missing = []
    for folder in payload["folders"]:
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
                pass
        except OSError as exc:
            missing.append(f"cannot write to {folder} ({exc.strerror or exc})")
    cache = payload.get("cache")
    seen = os.environ.get("BENCHBASE_CACHE")
    if cache and seen != cache:
        missing.append(f"BENCHBASE_CACHE is {seen!r} there, not {cache!r} (the driver's)")
    elif cache:
        try:
            Path(cache).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache, prefix=".probe-"):
                pass
        except OSError as exc:
            missing.append(f"the dataset cache {cache} cannot be written ({exc.strerror or exc})")
    try:
        from benchbase.contract.registry import default_registry

        registry = default_registry()
        for kind, name in payload["plugins"]:
            try:
                registry.get(kind, name)
            except PluginError as exc:
                missing.append(f"{exc} (BENCHBASE_EXTRA_PLUGINS, PYTHONPATH or the environment differ)")
    except Exception as exc:  # benchbase imported (this runs), but its plugins do not load
        missing.append(f"the plugins do not load: {type(exc).__name__}: {exc}")
    if missing:
        raise GridError("; ".join(missing))
    return {"ok": True}


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
        f"--executor slurm: {exposed} can be written by others, and the jobs run the pickled submissions "
        f"kept under {folder}: anyone who can write there can run code as you"
    )
    if choice == "refuse":
        raise GridError(f"{message}; chmod go-w {exposed}, or pass --executor-option others_can_write=warn")
    warnings.warn(message, stacklevel=3)


def _array_of(job_id: str) -> str:
    """The Slurm job an id belongs to: ``123`` for the array task ``123_4`` and for the job ``123``."""
    return job_id.split("_", 1)[0]


def _squeue(selection: list[str]) -> dict[str, str]:
    """States of the queued jobs `selection` names (squeue's ``-j ...`` or ``-u ...``), array tasks
    one by one; `QueueUnknown` when squeue gives no answer - an empty dict would read as every job
    having ended."""
    done = _slurm(["squeue", "-h", "-r", "-o", "%i %T", *selection])
    if done.returncode != 0:
        if _forgotten(done):  # asked for one purged job, squeue fails with this (an answer, not a hiccup)
            return {}
        raise QueueUnknown(f"squeue exited {done.returncode}: {done.stderr.strip()[:200]}")
    return dict(parts for parts in map(str.split, done.stdout.splitlines()) if len(parts) == 2)


def _queued(job_ids: list[str]) -> dict[str, str]:
    """States of the jobs still in the queue (pending, running, requeued...), asked once for all of
    them (each array once)."""
    if not job_ids:
        return {}
    return _squeue(["-j", ",".join(dict.fromkeys(map(_array_of, job_ids)))])


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
        "Socket timed out", "Unable to contact slurm controller", "MaxArraySize")  # fmt: skip


class _Waiting(NamedTuple):
    """A job submitted to the executor, not yet to Slurm."""

    key: str
    fn: Job
    payload: Any
    resources: Resources
    after: tuple[str, ...]
    since: float  # time.monotonic() when the driver submitted it


class SlurmExecutor(Executor):
    name = "slurm"
    description = "a Slurm cluster through submitit: job arrays of stages and runs, runs after their stage (afterok)"
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
        "runs_after": Param(
            "slurm",
            "str",
            "how a run waits for its pretraining stage: slurm (submitted with it, afterok: an array per stage; "
            "goes on while no driver runs) or driver (submitted once it ended, gathered into few arrays)",
            choices=("slurm", "driver"),
        ),
        "gather_seconds": Param(
            60, "number", "with runs_after = driver: longest the runs of an ended stage wait for others", min=0
        ),
        "requeues": Param(3, "int", "times a job that reached its time limit is requeued (it resumes)", min=0),
        "array_parallelism": Param(
            None, "int", "most tasks of one job array running at once (sbatch --array=...%N; default: no cap)", min=1
        ),
        "probe": Param(True, "bool", "first check from a compute node that the grid's jobs can run there"),
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
        runs_after: str = "slurm",
        gather_seconds: float = 60,
        requeues: int = 3,
        array_parallelism: int | None = None,
        probe: bool = True,
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
        # submitit's local executor has no dependencies; with runs_after = driver, the driver orders.
        self.supports_dependencies = cluster == "slurm" and runs_after == "slurm"
        self.gather = None if runs_after == "slurm" else float(gather_seconds)
        if cluster == "slurm":
            try:
                self.engine = submitit.SlurmExecutor(folder=str(self.folder), max_num_timeout=requeues, python=python)
            except RuntimeError as exc:  # no srun / sbatch on this machine
                raise GridError(f"--executor slurm: {exc}") from None
        else:
            self.engine = submitit.LocalExecutor(folder=str(self.folder), python=python)
        self.python = python
        self.requeues = requeues
        self.settings = {"partition": partition, "time": time, "mem_gb": mem_gb, "account": account}
        self.settings |= {"gpus": gpus, "extra": extra or {}, "array_parallelism": array_parallelism}
        self._jobs: dict[str, Any] = {}  # key -> submitit job
        self._after: dict[str, tuple[str, ...]] = {}  # key -> keys of the jobs it waits for
        self._gone: dict[str, float] = {}  # key -> when it was first seen ended without a result
        self.patience = patience
        self.max_queued = max_queued
        # The fewest jobs a top-up of a full queue submits: a quarter of the cap.
        self._batch = 1 if max_queued is None else max(1, max_queued // 4)
        # What makes a gathered array worth its sbatch (runs_after = driver): that quarter, or 250.
        self._gathered_enough = self._batch if max_queued is not None else MAX_ARRAY // 4
        self.probe = probe
        self._probed = False
        self._backlog: deque[_Waiting] = deque()  # not submitted yet
        self._new_handles: list[tuple[str, str]] = []  # (key, job id) submitted since the driver last asked
        self._refused_since: float | None = None
        self._largest: int = MAX_ARRAY  # tasks per array; halved when Slurm refuses one for a limit
        self._unknown_since: float | None = None  # since when squeue has not answered
        self._wait = POLL_SECONDS  # between looks at the queue
        self._retry_wait, self._retry_at = POLL_SECONDS / 2, 0.0
        self._snapshot: tuple[float, dict[str, str]] | None = None  # the queue as seen by `attach`

    @property
    def _outcomes(self) -> Path:
        return self.folder / OUTCOMES

    def _parameters(self, resources: Resources, after: list[str], tasks: int = 1) -> dict[str, Any]:
        s = self.settings
        if self.cluster == "local":
            return {"timeout_min": s["time"], "cpus_per_task": resources.cpus}
        extra = dict(s["extra"])
        if after:
            extra["dependency"] = "afterok:" + ":".join(after)
        parameters = {
            "time": s["time"],
            "signal_delay_s": self._warning_seconds(),
            "cpus_per_task": resources.cpus,
            "mem": f"{int(s['mem_gb'] * 1024)}M",
            "additional_parameters": extra,
            "array_parallelism": s["array_parallelism"] or tasks,
        }
        if resources.gpus:
            parameters["gpus_per_node"] = s["gpus"]
        if s["partition"]:
            parameters["partition"] = s["partition"]
        if s["account"]:
            parameters["account"] = s["account"]
        return parameters

    def _warning_seconds(self) -> int:
        """How long before its time limit a job is warned (USR2). submitit asks for 90 s; slurmctld
        sends it up to 30 s early (it looks every 30 s), so with a limit of 2 minutes or less it could
        come before Python installed the handler, and kill the job instead of requeueing it."""
        return min(90, 15 * self.settings["time"])

    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        """Queued in the driver: jobs submitted together reach Slurm together, as arrays, at the
        next `completed` (their ids then come through `new_handles`)."""
        self._backlog.append(_Waiting(key, fn, payload, resources, after, time.monotonic()))

    # submitting ----------------------------------------------------------------------------------

    def _sbatch(self, fn: Job, tasks: list[dict[str, Any]], parameters: dict[str, Any]) -> list[Any] | None:
        """Submit `tasks` as one array (one job when alone); None when Slurm is busy or at a limit
        (asked again later, with backoff), `GridError` when it refuses the options."""
        getattr(self.engine, "parameters", {}).pop("gpus_per_node", None)  # set for GPU jobs only
        self.engine.update_parameters(**parameters)
        try:
            # Half the warning to reach the end of a training step; the rest to save it and requeue.
            job = _Pausable(fn, grace=max(1, self._warning_seconds() // 2))
            return self.engine.map_array(_Requeueable(_Reported(job, self.folder)), tasks)
        except OSError as exc:  # submitit's local executor starting `python`
            raise GridError(f"--executor slurm: cannot start a job: {exc}") from None
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
            self._largest = max(1, min(self._largest, len(tasks)) // 2)  # a limit on tasks: smaller arrays
            self._retry_wait = min(2 * self._retry_wait, MAX_POLL_SECONDS)
            self._retry_at = now + self._retry_wait
            return None

    def _groups(self, batch: list[_Waiting]) -> list[list[_Waiting]]:
        """`batch`'s jobs that can go to Slurm now, as arrays: one per function, resources and the
        jobs waited for; a job waiting for one still in the driver waits for it."""
        held = {waiting.key for waiting in self._backlog}
        groups: dict[tuple, list[_Waiting]] = {}
        for waiting in batch:
            if any(k in held for k in waiting.after):
                continue
            waits = tuple(str(self._jobs[k].job_id) for k in waiting.after if k in self._jobs)
            group = groups.setdefault((waiting.fn, waiting.resources, waits), [])
            if len(group) < self._largest:
                group.append(waiting)
        return list(groups.values())

    def _gathered(self) -> bool:
        """Whether the jobs that wait go to Slurm now. With ``runs_after = "driver"``, runs come
        stage by stage as stages end: they wait for others - until enough wait, the oldest has
        waited ``gather_seconds``, or nothing is in flight that could add to them - so that a grid
        of many stages takes a few arrays, not one per stage."""
        if self.gather is None or not self._jobs or len(self._backlog) >= self._gathered_enough:
            return True
        return time.monotonic() - self._backlog[0].since >= self.gather

    def _top_up(self) -> None:
        """Submit the jobs that wait, oldest first (a stage before its runs) and as arrays, while the
        queue has room (``max_queued``) and Slurm takes them; a busy Slurm is asked again later."""
        while self._backlog and time.monotonic() >= self._retry_at:
            room = len(self._backlog) if self.max_queued is None else self.max_queued - len(self._jobs)
            if room < min(len(self._backlog), self._batch):
                return  # a few places free: wait for more, one array fills them (not one sbatch per job)
            if not self._gathered():
                return
            groups = self._groups(list(self._backlog)[: max(room, 0)])
            if not groups:
                return
            if not self._probed:
                self._prepare()
            for group in groups:
                tasks = [{"key": w.key, "payload": w.payload} for w in group]
                waits = [str(self._jobs[k].job_id) for k in group[0].after if k in self._jobs]
                jobs = self._sbatch(group[0].fn, tasks, self._parameters(group[0].resources, waits, len(tasks)))
                if jobs is None:
                    return
                self._refused_since, self._retry_wait, self._retry_at = None, POLL_SECONDS / 2, 0.0
                for waiting, job in zip(group, jobs, strict=True):
                    self._jobs[waiting.key] = job
                    self._after[waiting.key] = tuple(k for k in waiting.after if k in self._jobs)
                    self._new_handles.append((waiting.key, str(job.job_id)))
                submitted = {waiting.key for waiting in group}
                self._backlog = deque(w for w in self._backlog if w.key not in submitted)

    # the probe -----------------------------------------------------------------------------------

    def _probe_payload(self) -> dict[str, Any]:
        from benchbase.contract.kinds import RUN_KINDS

        folders, plugins = {str(self.folder.resolve())}, set()
        for waiting in self._backlog:
            payload = waiting.payload if isinstance(waiting.payload, dict) else {}
            if "root" in payload:
                folders.add(str(Path(payload["root"]).resolve()))
            spec = payload.get("spec") if isinstance(payload.get("spec"), dict) else {}
            for kind in RUN_KINDS:
                part = spec.get(kind)
                if isinstance(part, dict) and isinstance(part.get("name"), str) and part["name"] != "none":
                    plugins.add((kind, part["name"]))
        return {"folders": sorted(folders), "plugins": sorted(plugins), "cache": os.environ.get("BENCHBASE_CACHE")}

    def _prepare(self) -> None:
        """Before the first submission: the key jobs sign their outcomes with, then the probe."""
        from benchbase.running.store import record_key

        self.folder.mkdir(parents=True, exist_ok=True)
        record_key(self.folder, create=True)
        if self.probe:
            self._run_probe()
        self._probed = True

    def _run_probe(self) -> None:
        """Submit the probe and wait for its outcome; `GridError` naming what is missing."""
        task = {"key": "probe", "payload": self._probe_payload()}
        while True:
            jobs = self._sbatch(_probe, [task], self._parameters(Resources(), []))
            if jobs is not None:
                break
            time.sleep(max(0.0, self._retry_at - time.monotonic()))
        job, job_id, state, ended_at = jobs[0], str(jobs[0].job_id), None, 0.0
        while True:
            outcome = self._read_outcome("probe", job_id) if self._has_result(job) else None
            if outcome is not None:
                break
            if state is None:
                if self.cluster == "local":
                    state = job.state if job.done() else None
                elif job_id not in self._ask_patiently(_queued, [job_id]):
                    state = self._ask_patiently(_final_state, job_id)
                ended_at = time.monotonic()
            elif time.monotonic() - ended_at >= (RESULT_GRACE_SECONDS if state == "COMPLETED" else 3 * POLL_SECONDS):
                break  # ended, and its outcome had time to show on a shared file system
            time.sleep(POLL_SECONDS)
        if outcome is not None and outcome.get("ok"):
            return
        if outcome is not None:
            raise GridError(f"--executor slurm: {self._error_of(outcome)} (probe job {job_id} on a compute node)")
        raise GridError(f"--executor slurm: {self._probe_silence(job, job_id, state)}")

    def _probe_silence(self, job: Any, job_id: str, state: str) -> str:
        """Why a probe left no outcome, from its log when it left one."""
        folder = self.folder.resolve()
        try:
            log = Path(job.paths.stderr).read_text(errors="replace").splitlines()
        except OSError:
            return (
                f"the compute nodes cannot see {folder}, or cannot start {self.python or 'python'} there "
                f"(probe job {job_id} ended {state} and left no log in {folder})"
            )
        lines = [line.strip() for line in log if line.strip()]
        # The cause (execve's error, a Python exception), not srun's summary ("Exited with exit code").
        causes = [line for line in lines if re.search(r"rror|No such file|not found", line) and "Exited" not in line]
        last = (causes or lines or ["an empty log"])[-1][:300]
        python = self.python or "the driver's interpreter"
        return f"the probe job {job_id} could not run on a compute node ({state}, python {python}): {last}"

    # following -----------------------------------------------------------------------------------

    def new_handles(self) -> list[tuple[str, str]]:
        handles, self._new_handles = self._new_handles, []
        return handles

    def handle(self, key: str) -> str | None:
        job = self._jobs.get(key)
        return None if job is None else str(job.job_id)

    def _in_queue(self, handle: str) -> bool:
        """Whether a job is in the queue, from one look at all of this user's jobs every few seconds
        (a restarted driver re-attaches thousands of jobs)."""
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot[0] > 10 * POLL_SECONDS:
            import getpass

            self._snapshot = (now, self._ask_patiently(_squeue, ["-u", getpass.getuser()]))
        return handle in self._snapshot[1]

    def attach(self, key: str, handle: str, after: tuple[str, ...] = ()) -> bool:
        if self.cluster != "slurm":
            return False
        job = self.submitit.SlurmJob(folder=str(self.folder), job_id=handle)
        if not _outcome_path(self.folder, handle).exists() and not self._in_queue(handle):
            return False  # neither finished with an outcome nor in the queue: submit it again
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
        self._backlog = deque(waiting for waiting in self._backlog if waiting.key != key)
        job = self._jobs.pop(key, None)
        self._after.pop(key, None)
        self._gone.pop(key, None)
        if job is not None:
            job.cancel(check=False)

    def in_flight(self) -> int:
        return len(self._jobs) + len(self._backlog)

    # outcomes ------------------------------------------------------------------------------------

    def _read_outcome(self, key: str, job_id: str) -> dict[str, Any] | None:
        """The outcome the job left, if it is its own: signed with the folder's key, naming the job."""
        from benchbase.running.store import signed

        path = _outcome_path(self.folder, job_id)
        try:
            outcome = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not signed(self.folder, outcome) or outcome.get("job") != job_id or outcome.get("key") != key:
            return {"ok": False, "forged": f"{path} was not left by job {job_id} (unsigned or another job's)"}
        return outcome

    def _error_of(self, outcome: dict[str, Any]) -> Exception:
        if "forged" in outcome:
            return WorkerDied(f"the job's outcome is refused: {outcome['forged']}")
        return _exception(outcome.get("error") or {})

    def _outcome(self, key: str, job: Any) -> Any:
        outcome = self._read_outcome(key, str(job.job_id))
        if outcome is None:
            return WorkerDied(f"the job {job.job_id} ended without an outcome")
        return outcome["result"] if outcome.get("ok") else self._error_of(outcome)

    def _reported(self) -> set[str]:
        """Names of the outcome files there are, from one listing of the folder."""
        try:  # on NFS, touching the folder refreshes the cached listing (as submitit does)
            self._outcomes.chmod(self._outcomes.stat().st_mode)
            return set(os.listdir(self._outcomes))
        except OSError:
            return set()

    def _has_result(self, job: Any) -> bool:
        return f"{job.job_id}.json" in self._reported()

    def _ended(self) -> dict[str, str | None]:
        """Jobs that are over: key -> None for those with an outcome, else the state Slurm confirmed
        they ended in. `QueueUnknown` when squeue did not answer."""
        reported = self._reported()
        done: dict[str, str | None] = {k: None for k, job in self._jobs.items() if f"{job.job_id}.json" in reported}
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
            # The outcome file may lag behind the job's end on a shared file system: give it time.
            first = self._gone.setdefault(key, now)
            if now - first >= (RESULT_GRACE_SECONDS if state in ("COMPLETED", FORGOTTEN) else POLL_SECONDS):
                done[key] = state
        return done

    def completed(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._jobs or self._backlog:
            queued = len(self._jobs)
            self._top_up()  # jobs submitted since, room freed by jobs that ended, or a busy Slurm asked again
            if len(self._jobs) > queued:
                return  # the driver stores the new job ids (`new_handles`) before it waits for anything
            try:
                ended = self._ended()
                self._unknown_since = None
            except QueueUnknown as exc:  # nothing learnt: ask again later, more slowly
                # Kept across calls: a driver that also watches other drivers' jobs calls with a timeout.
                self._unknown_since = self._unknown_since or time.monotonic()
                if time.monotonic() - self._unknown_since >= self.patience:
                    raise self._gave_up(exc) from None
                ended, self._wait = {}, min(2 * self._wait, MAX_POLL_SECONDS)
            if ended:
                self._wait = POLL_SECONDS
                for key, state in ended.items():
                    job = self._jobs.pop(key, None)
                    if job is None:  # withdrawn by the driver meanwhile (its stage failed)
                        continue
                    self._after.pop(key, None)
                    self._gone.pop(key, None)
                    if state is None:
                        yield key, self._outcome(key, job)
                    else:
                        yield key, WorkerDied(self._ended_without_outcome(job, state))
                return
            if self._unknown_since is None:  # Slurm answers, nothing ended: look less often
                self._wait = min(self._wait * 1.5, max(self._wait, IDLE_POLL_SECONDS))
            if deadline is not None and time.monotonic() >= deadline:
                return
            wait = self._wait
            time.sleep(wait if deadline is None else max(0.0, min(wait, deadline - time.monotonic())))

    def _ended_without_outcome(self, job: Any, state: str) -> str:
        text = f"Slurm job {job.job_id} ended {state}, no result"
        if state.startswith("TIMEOUT"):  # requeued `requeues` times, then ended at its limit once more
            text += (
                f": it reached its time limit (time={self.settings['time']} min) after {self.requeues} requeue(s), "
                "each resuming where the last try stopped: raise the executor option time or requeues"
            )
        return text

    def close(self) -> None:
        """Jobs already submitted keep running on the cluster: a later `benchbase run` follows them
        (their ids are in the store), `benchbase collect` loads their records."""
        self._jobs.clear()
        self._after.clear()
        self._gone.clear()
        self._backlog.clear()  # never submitted: the next invocation submits them
