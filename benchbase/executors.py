"""Executors run picklable jobs and yield their results as they complete.

`local` is the built-in: in-process for one job (fast start, easy debugging), a pool of spawned
processes for several. Other executors (ray, slurm) implement the same `Executor` interface.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol


class Executor(Protocol):
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (item, result) pairs as jobs finish. A job that raises yields its exception as the
        result; a job whose process dies yields a RuntimeError saying so."""
        ...


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class LocalExecutor:
    """In-process for one job; otherwise one pool of spawned workers, kept for the executor's
    lifetime so that pretraining stages and fine-tuning runs share warm workers (each worker
    imports torch and loads a dataset once)."""

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError("jobs must be >= 1")
        self.jobs = jobs
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # One torch thread per worker: small graphs gain nothing from intra-op threads, and
            # oversubscribed cores slow every worker down.
            threads = max(1, (os.cpu_count() or 1) // self.jobs)
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)
            )
        return self._pool

    def map_unordered(self, fn, items):
        items = list(items)
        if self.jobs == 1:
            for item in items:
                try:
                    yield item, fn(item)
                except Exception as exc:  # recorded by the caller; the grid goes on
                    yield item, exc
            return
        remaining = items
        while remaining:
            futures = {self._get_pool().submit(fn, item): item for item in remaining}
            remaining = []
            pending = set(futures)
            broken = False
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = futures[future]
                    try:
                        yield item, future.result()
                    except BrokenProcessPool:
                        # A worker died (killed, out of memory): every job in flight is lost.
                        # Report one and retry the rest in a fresh pool.
                        if not broken:
                            yield item, RuntimeError("the worker process died (killed or out of memory)")
                            broken = True
                        else:
                            remaining.append(item)
                    except Exception as exc:
                        yield item, exc
            if broken:
                self.close()


def make_executor(name: str, jobs: int | None = None) -> LocalExecutor:
    """`jobs=None` means one job per CPU core."""
    jobs = jobs or os.cpu_count() or 1
    if name == "local":
        return LocalExecutor(jobs)
    raise ValueError(f"unknown executor {name!r}; available: local")
