"""Executors run jobs and hand back their outcomes as they complete.

The driver (`benchbase.running.driver`) decides what is ready to run - a run as soon as its pretraining
stage is done, no barrier between stages and runs - and submits it; the executor decides where it
runs. A job is a picklable module-level function and its payload; its outcome is the function's
return value, or the exception it raised, or `WorkerDied` when its process vanished.

`local` is the built-in: in-process for ``--jobs 1`` (fast start, easy debugging), else a pool of
spawned worker processes kept for the executor's lifetime, so that pretraining stages and runs share
warm workers (each imports torch and loads a dataset once).
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from benchbase.contract.errors import WorkerDied
from benchbase.contract.params import Param, declare

Job = Callable[[Any], Any]


@dataclass(frozen=True)
class Resources:
    """What one job asks of a worker."""

    cpus: int = 1
    gpus: int = 0


class Executor(ABC):
    """Runs submitted jobs; `completed` blocks until at least one has finished and yields
    ``(key, outcome)`` pairs, the outcome being the job's result or the exception it raised.

    Built as ``cls(jobs=N, **options)`` with `options` declared in ``param_spec`` (`benchbase.contract.params`).
    A job's result must travel back to the driver (picklable); the driver alone writes the store."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    param_spec: ClassVar[dict[str, Param]] = {}
    #: True for engines that order jobs themselves (Ray object references, Slurm ``afterok``): the
    #: driver then submits a run together with its stage, naming the stage in ``after``; otherwise
    #: it submits the run once the stage is done.
    supports_dependencies: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare(cls)

    @abstractmethod
    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        """Queue one job under a unique `key`, to start after the jobs `after` succeeded."""

    def handle(self, key: str) -> str | None:
        """An id of the submitted job that outlives this process (a Slurm job id), which the driver
        keeps in the store, or None."""
        return None

    def attach(self, key: str, handle: str, after: tuple[str, ...] = ()) -> bool:
        """Follow a job a previous driver submitted (found by its `handle`) instead of submitting it
        again, a job that waits for the jobs `after`; False when that job cannot be followed (it is
        gone)."""
        return False

    def new_handles(self) -> list[tuple[str, str]]:
        """``(key, handle)`` of jobs that reached the engine since the last call, later than their
        `submit` (an engine that holds jobs back while its queue is full); the driver stores them."""
        return []

    def cancel(self, key: str) -> None:
        """Give up a submitted job (its stage failed): it must not run, nor be reported."""

    @abstractmethod
    def completed(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        """Outcomes of finished jobs; blocks until at least one job has finished, or `timeout`
        seconds have passed (then it yields nothing)."""

    @abstractmethod
    def in_flight(self) -> int:
        """Jobs submitted whose outcome has not been yielded yet."""

    def free_slots(self) -> int | None:
        """How many more jobs would start now; the driver claims a job only when one would, so that
        other drivers on the same store share the rest. None: submit every ready job at once (an
        engine that queues, orders and caps jobs itself)."""
        return None

    def close(self) -> None:
        """Release workers. Jobs still queued are abandoned."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: How often a worker checks that its driver is still alive.
WATCHDOG_SECONDS = 0.5


def _watch_driver(driver: int) -> None:
    """End this worker as soon as its driver is gone. A killed driver (SIGKILL, out of memory) runs
    no cleanup, and its workers would go on training for minutes, holding memory, while another
    driver trains the same runs again. An orphan is re-parented, so its parent id changes; polling
    it works on every POSIX system, unlike Linux's parent-death signal, which also fires when
    the *thread* that started the worker ends."""
    import time

    while os.getppid() == driver:
        time.sleep(WATCHDOG_SECONDS)
    os._exit(1)  # the main thread is busy in a job: nothing to clean up that the driver would read


def _init_worker(driver: int | None = None) -> None:
    # Each job sets its own intra-op thread count (part of its identity); start from one.
    import torch

    torch.set_num_threads(1)
    if driver is not None:
        import threading

        threading.Thread(target=_watch_driver, args=(driver,), name="benchbase-driver-watchdog", daemon=True).start()


class LocalExecutor(Executor):
    """In-process for one job at a time; otherwise a pool of `jobs` spawned worker processes."""

    name = "local"
    description = "this machine: in-process (--jobs 1) or a pool of worker processes"

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError("jobs must be >= 1")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None
        self._queue: deque[tuple[str, Job, Any]] = deque()  # in-process jobs not run yet
        self._futures: dict[Future, tuple[str, Job, Any]] = {}
        self._deferred: list[tuple[str, Job, Any]] = []  # submitted while the pool was broken

    def close(self) -> None:
        """Stop the workers. Jobs still running are abandoned (after an interrupt or an error): their
        processes are terminated rather than waited for; the next invocation redoes them."""
        if self._pool is not None:
            if self._futures:
                # concurrent.futures has no public way to stop busy workers before Python 3.14
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.terminate()
            self._pool.shutdown(wait=not self._futures, cancel_futures=True)
            self._pool = None
        self._queue.clear()
        self._futures.clear()
        self._deferred.clear()

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.jobs, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
            )
        return self._pool

    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        if self.jobs == 1:
            self._queue.append((key, fn, payload))
            return
        try:
            self._futures[self._get_pool().submit(fn, payload)] = (key, fn, payload)
        except BrokenProcessPool:  # a worker died; `completed` reports it and restarts the pool
            self._deferred.append((key, fn, payload))

    def in_flight(self) -> int:
        return len(self._queue) + len(self._futures) + len(self._deferred)

    def free_slots(self) -> int:
        return max(0, self.jobs - self.in_flight())

    def completed(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        if self.jobs == 1:  # in-process: the next job runs now, whatever the timeout
            if self._queue:
                key, fn, payload = self._queue.popleft()
                try:
                    outcome = fn(payload)
                except Exception as exc:  # recorded by the driver; the grid goes on
                    outcome = exc
                yield key, outcome
            return
        if not self._futures:
            if self._deferred:  # the pool broke with nothing in flight (an idle worker died)
                self._restart([])
            return
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        broken, retry = False, []
        for future in done:
            key, fn, payload = self._futures.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                # A worker died (killed, out of memory) and took the pool down: every job in flight
                # fails with it. One of them killed it; report the first, retry the others.
                if broken:
                    retry.append((key, fn, payload))
                    continue
                broken, outcome = True, WorkerDied("the worker process died (killed or out of memory)")
            except Exception as exc:
                outcome = exc
            yield key, outcome
        if broken:
            self._restart(retry)

    def _restart(self, retry: list[tuple[str, Job, Any]]) -> None:
        waiting = retry + list(self._futures.values()) + self._deferred
        self._futures.clear()
        self._deferred = []
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        for key, fn, payload in waiting:
            self.submit(key, fn, payload)


def default_jobs() -> int:
    return os.cpu_count() or 1


def check_executor(name: str, options: dict[str, Any] | None = None, registry: Any = None) -> dict[str, Any]:
    """The executor's name and options checked, nothing started: `benchbase run` calls this before
    it creates a store, so that a typo leaves nothing behind. Returns the validated options."""
    from benchbase.contract.params import validate
    from benchbase.contract.registry import default_registry

    spec = (registry or default_registry()).get("executor", name).param_spec
    if spec is not None:  # `jobs` and `workdir` are the harness's to give, not options
        spec = {key: param for key, param in spec.items() if key not in ("jobs", "workdir")}
    return validate(spec, options or {}, f"executor {name!r} options")


def make_executor(
    name: str, jobs: int | None = None, options: dict[str, Any] | None = None, workdir: Path | None = None
) -> Executor:
    """The registered executor `name` with `jobs` workers (None: one per CPU core) and its options,
    validated against its ``param_spec``; executors that keep files of their own get `workdir`."""
    import inspect

    from benchbase.contract.registry import default_registry

    entry = default_registry().get("executor", name)
    checked = check_executor(name, options)
    if workdir is not None and "workdir" in inspect.signature(entry.obj).parameters:
        checked["workdir"] = workdir
    return entry.obj(jobs=jobs or default_jobs(), **checked)
