"""`--executor ray`: every stage and run is one Ray task (Moritz et al. 2018, ray.io).

Each task asks for the CPUs (the run's thread count) and GPUs its job needs; a run is submitted
right behind its pretraining stage and receives the stage's object reference as an argument, so Ray
itself starts it once the stage succeeded (and fails it, without starting it, when the stage
failed). A task whose worker process dies is retried once by Ray, then reported failed. Results
travel back to the driver as Ray objects; checkpoints and predictions go to the store's shared
directory, which every node must reach (``--shared-dir``).

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
from benchbase.contract.params import Param
from benchbase.running.executors import Executor, Job, Resources


def _call(fn: Job, payload: Any, *after: Any) -> Any:
    """The task body: `after` holds the results of the jobs it waited for (Ray resolved them)."""
    return fn(payload)


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
    supports_dependencies = True

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
        self._gpus: float | None = None  # GPUs of the cluster, looked up at the first GPU job
        # max_retries: a task whose worker died runs once more; its own exceptions are not retried.
        self._remote = ray.remote(max_retries=1, retry_exceptions=False)(_call)
        self._refs: dict[str, Any] = {}
        self._pending: dict[Any, str] = {}
        self._after: dict[str, tuple[str, ...]] = {}

    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        if resources.gpus:
            self._check_gpus(resources.gpus)
        waits = [self._refs[k] for k in after if k in self._refs]
        options = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
        ref = self._remote.options(**options).remote(fn, payload, *waits)
        self._refs[key], self._pending[ref], self._after[key] = ref, key, tuple(after)

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
            self.ray.cancel(ref, force=True)

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
        except (exceptions.WorkerCrashedError, exceptions.NodeDiedError) as exc:
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
            yield key, self._outcome(key, ref)

    def close(self) -> None:
        for ref in list(self._pending):
            self.ray.cancel(ref, force=True)
        self._pending.clear()
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
