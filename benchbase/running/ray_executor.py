"""`--executor ray`: every stage and run is one Ray job (Moritz et al. 2018, ray.io), asking for
the CPUs (the run's thread count) and GPUs it needs.

On a running cluster (``address``, ``RAY_ADDRESS``, a ``ray start`` on this machine) a job runs in
the constructor of a *detached* actor of its own, named after the job in a namespace of the store
(``benchbase-<hash of the shared directory>``): it belongs to the cluster, not to the driver, so
killing the driver stops no job. The driver keeps the actor's name in the store as the job's
handle; the same command, run again, finds the actors of the jobs still running (or finished but
not yet recorded) by that name and follows them instead of starting them again - a stage that
finished while no driver watched is recorded, not recomputed. The driver kills an actor once it has
recorded its outcome, and on an orderly exit (an interrupt) those still running. A run is submitted
once its pretraining stage has finished: an actor holds its CPUs from its start, so none may wait.

On a local cluster started for the grid, which ends with its driver (and its jobs with it), jobs
are plain Ray tasks: a worker runs many (keeping its imports and loaded datasets), and a run is
submitted right behind its stage with the stage's object reference as an argument, so Ray starts it
once the stage succeeded (and fails it, without starting it, when the stage failed).

Either way a job whose worker process dies is run once more, then reported failed. Results travel
back to the driver as Ray objects; checkpoints and predictions go to the store's shared directory,
which every node must reach (``--shared-dir``).

Options (grid ``[executor.ray]`` or ``--executor-option``): ``address`` of a running cluster
(``ray start --head`` prints it; ``auto`` finds one on this machine; default: the one ``RAY_ADDRESS``
or a ``ray start`` on this machine names, else a local cluster started for the grid with ``--jobs``
CPUs). A running cluster keeps its own size: ``--jobs`` does not resize it, its CPUs bound the
parallelism. The driver's plugin and cache settings (``BENCHBASE_PLUGINS``,
``BENCHBASE_EXTRA_PLUGINS``, ``BENCHBASE_CACHE``, ``PYTHONPATH``) travel to the workers in the job's
``runtime_env``: workers a ``ray start`` launched long before do not have them in their environment.
Runs on a GPU (``--device cuda``) need a cluster with GPUs: without one the grid stops at once
rather than leaving its tasks waiting for a GPU that never comes.
Install with ``pip install benchbase[ray]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from benchbase.contract.errors import DependencyFailed, GridError, WorkerDied
from benchbase.contract.identity import content_hash
from benchbase.contract.params import Param
from benchbase.running.executors import Executor, Job, Resources


class _JobActor:
    """One job, run by the constructor as soon as Ray places the actor - whether or not the driver
    that created it still lives - and its outcome kept for `result`."""

    def __init__(self, fn: Job, payload: Any) -> None:
        try:
            self.outcome, self.error = fn(payload), None
        except Exception as exc:  # the job's own failure: its outcome, raised again by `result`
            self.outcome, self.error = None, exc

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.outcome


def _call(fn: Job, payload: Any, *after: Any) -> Any:
    """The task body: `after` holds the results of the jobs it waited for (Ray resolved them)."""
    return fn(payload)


def _owns_cluster(ray: Any) -> bool:
    """Whether this process started the Ray cluster it is connected to (``ray.init`` without a
    running one to join), which then ends with it."""
    node = getattr(getattr(ray, "_private", None) and ray._private.worker, "_global_node", None)
    return bool(getattr(node, "head", False))


def namespace_of(root: str) -> str:
    """The Ray namespace of the jobs of one store (its shared directory), so that two stores on
    one cluster never follow each other's jobs."""
    return f"benchbase-{content_hash(os.path.abspath(root), 16)}"


#: The driver's settings a worker needs to find the plugins, the datasets' cache and benchbase itself.
WORKER_VARIABLES = ("BENCHBASE_PLUGINS", "BENCHBASE_EXTRA_PLUGINS", "BENCHBASE_CACHE", "PYTHONPATH")


def worker_environment() -> dict[str, str]:
    """The driver's WORKER_VARIABLES that are set, paths made absolute (a worker starts elsewhere)."""
    env = {name: os.environ[name] for name in WORKER_VARIABLES if os.environ.get(name)}
    if "PYTHONPATH" in env:
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    if "BENCHBASE_CACHE" in env:
        env["BENCHBASE_CACHE"] = os.path.abspath(env["BENCHBASE_CACHE"])
    return env


class RayExecutor(Executor):
    name = "ray"
    description = "a Ray cluster: one task per stage and run, stages ordered before their runs"
    param_spec = {
        "address": Param(
            None, "str", "address of a running Ray cluster, or auto (default: RAY_ADDRESS, else start a local one)"
        )
    }
    supports_dependencies = True  # tasks on a cluster of the grid's own; see `__init__`

    def __init__(self, jobs: int = 1, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise GridError("--executor ray needs Ray: pip install 'benchbase[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            options["runtime_env"] = {"env_vars": worker_environment()}
            try:
                ray.init(address=address, **options, **({"num_cpus": jobs} if address is None else {}))
            except ValueError as exc:
                # address=None still joins a running instance (RAY_ADDRESS, or the last `ray start`
                # here), which refuses to be sized; Ray says so before connecting, so join it as it is.
                if "must not be provided" not in str(exc):
                    raise
                ray.init(address=address, **options)
            self._started = True
        else:
            self._started = False
        # On a running cluster jobs are detached actors, which outlive the driver. On a cluster started
        # for the grid, which ends with the driver, they are plain tasks: a worker runs many, keeping
        # its imports and loaded datasets, and Ray orders runs behind their stages.
        self.detached = not _owns_cluster(ray)
        # An actor holds its CPUs from its start: the driver orders the jobs, so that no run's actor
        # waits for its stage (Ray would fill the cluster with waiting runs).
        self.supports_dependencies = not self.detached
        self._gpus: float | None = None  # GPUs of the cluster, looked up at the first GPU job
        # max_retries: a task whose worker died runs once more; its own exceptions are not retried.
        self._remote = ray.remote(max_retries=1, retry_exceptions=False)(_call)
        # max_restarts: a job whose worker died runs once more (the constructor again), and the
        # driver's call for its result is sent to the restarted actor.
        self._actor_class = ray.remote(max_restarts=1, max_task_retries=1)(_JobActor)
        self._refs: dict[str, Any] = {}
        self._pending: dict[Any, str] = {}
        self._after: dict[str, tuple[str, ...]] = {}
        self._actors: dict[str, Any] = {}
        self._handles: dict[str, str] = {}

    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        if resources.gpus:
            self._check_gpus(resources.gpus)
        if not self.detached:
            waits = [self._refs[k] for k in after if k in self._refs]
            ref = self._remote.options(num_cpus=resources.cpus, num_gpus=resources.gpus).remote(fn, payload, *waits)
            self._refs[key], self._pending[ref], self._after[key] = ref, key, tuple(after)
            return
        namespace = namespace_of(payload["root"]) if isinstance(payload, dict) and "root" in payload else "benchbase"
        options = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "lifetime": "detached"}
        # get_if_exists: an actor of that name already running (a driver that died between starting it
        # and recording its name) is followed, not started twice.
        actor = self._actor_class.options(name=key, namespace=namespace, get_if_exists=True, **options).remote(
            fn, payload
        )
        self._follow(key, actor, f"{namespace}/{key}", after)

    def _follow(self, key: str, actor: Any, handle: str, after: tuple[str, ...]) -> None:
        ref = actor.result.remote()
        self._actors[key], self._handles[key] = actor, handle
        self._refs[key], self._pending[ref], self._after[key] = ref, key, tuple(after)

    def handle(self, key: str) -> str | None:
        return self._handles.get(key)

    def attach(self, key: str, handle: str, after: tuple[str, ...] = ()) -> bool:
        """Follow the actor a previous driver started for `key`, found by its name; False when it
        is gone (it ended with its cluster, or its driver collected it)."""
        namespace, _, name = handle.partition("/")
        try:
            actor = self.ray.get_actor(name, namespace=namespace)
        except ValueError:
            return False
        self._follow(key, actor, handle, after)
        return True

    def _check_gpus(self, wanted: int) -> None:
        """Ray queues a task no node can run without a word (an autoscaler might add such a node):
        here that is a grid waiting forever, so it stops with the cluster's resources named."""
        if self._gpus is None:
            self._gpus = float(self.ray.cluster_resources().get("GPU", 0))
        if self._gpus < wanted:
            have = {k: v for k, v in self.ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}
            raise GridError(
                f"--executor ray: the runs ask for {wanted} GPU each (--device cuda), but the Ray cluster "
                f"has {self._gpus:g} GPUs ({have}); use --device cpu or a cluster with GPUs"
            )

    def in_flight(self) -> int:
        return len(self._pending)

    def cancel(self, key: str) -> None:
        ref = self._refs.get(key)
        if ref is not None and ref in self._pending:
            del self._pending[ref]
            self._stop(key, ref)

    def _stop(self, key: str, ref: Any) -> None:
        if self.detached:
            self._kill(key)
        else:
            self.ray.cancel(ref, force=True)

    def _kill(self, key: str) -> None:
        actor = self._actors.pop(key, None)
        if actor is not None:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone: nothing left to stop
                pass

    def _outcome(self, key: str, ref: Any) -> Any:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            for dependency in self._after.get(key, ()):
                if self._failed(dependency):
                    return DependencyFailed(dependency, self._cause(self._refs[dependency]))
            return cause
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError, exceptions.RayActorError) as exc:
            return WorkerDied(f"the Ray worker died twice (retried once): {exc}")
        except exceptions.TaskCancelledError as exc:
            return WorkerDied(f"the Ray task was cancelled: {exc}")

    def _failed(self, key: str) -> bool:
        ref = self._refs.get(key)
        if ref is None:
            return False
        ready, _ = self.ray.wait([ref], timeout=0)
        return bool(ready) and isinstance(self._cause(ref), BaseException)

    def _cause(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            return exc.as_instanceof_cause()
        except Exception as exc:  # a crashed worker, a cancelled task
            return exc

    def completed(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        if not self._pending:
            return
        ready, _ = self.ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        for ref in ready:
            key = self._pending.pop(ref)
            outcome = self._outcome(key, ref)
            # The actor goes before its outcome is recorded: a driver killed in between finds no actor
            # of that name on restart and runs the job again, never taking up a stale outcome (a run
            # that failed, run again, would otherwise be given its old actor and old failure).
            self._kill(key)
            yield key, outcome

    def close(self) -> None:
        """Stop the jobs still running (an orderly exit abandons them, as other executors do; a
        killed driver never gets here, and its jobs go on)."""
        for ref, key in list(self._pending.items()):
            self._stop(key, ref)
        for key in list(self._actors):  # finished, their outcome given
            self._kill(key)
        self._pending.clear()
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
