"""`--executor ray`: every stage and run is one Ray task (Moritz et al. 2018, ray.io).

Each task asks for the CPUs (the run's thread count) and GPUs its job needs; a run is submitted
right behind its pretraining stage and receives the stage's object reference as an argument, so Ray
itself starts it once the stage succeeded (and fails it, without starting it, when the stage
failed). A task whose worker process dies is retried once by Ray, then reported failed. Results
travel back to the driver as Ray objects; checkpoints and predictions go to the store's shared
directory, which every node must reach (``--shared-dir``).

Options (grid ``[executor.ray]`` or ``--executor-option``): ``address`` of a running cluster
(``ray start --head`` prints it; default: a local cluster started for the grid with ``--jobs`` CPUs).
Install with ``pip install benchbase[ray]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from benchbase.errors import DependencyFailed, GridError, WorkerDied
from benchbase.executors import Executor, Job, Resources
from benchbase.params import Param


def _call(fn: Job, payload: Any, *after: Any) -> Any:
    """The task body: `after` holds the results of the jobs it waited for (Ray resolved them)."""
    return fn(payload)


class RayExecutor(Executor):
    name = "ray"
    description = "a Ray cluster: one task per stage and run, stages ordered before their runs"
    param_spec = {"address": Param(None, "str", "address of a running Ray cluster (default: start a local one)")}
    supports_dependencies = True

    def __init__(self, jobs: int = 1, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise GridError("--executor ray needs Ray: pip install 'benchbase[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                options["num_cpus"] = jobs
            ray.init(address=address, **options)
            self._started = True
        else:
            self._started = False
        # max_retries: a task whose worker died runs once more; its own exceptions are not retried.
        self._remote = ray.remote(max_retries=1, retry_exceptions=False)(_call)
        self._refs: dict[str, Any] = {}
        self._pending: dict[Any, str] = {}
        self._after: dict[str, tuple[str, ...]] = {}

    def submit(
        self, key: str, fn: Job, payload: Any, resources: Resources = Resources(), after: tuple[str, ...] = ()
    ) -> None:
        waits = [self._refs[k] for k in after if k in self._refs]
        options = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
        ref = self._remote.options(**options).remote(fn, payload, *waits)
        self._refs[key], self._pending[ref], self._after[key] = ref, key, tuple(after)

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
