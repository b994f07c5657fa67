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
    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError("jobs must be >= 1")
        self.jobs = jobs

    def map_unordered(self, fn, items):
        items = list(items)
        if self.jobs == 1:
            for item in items:
                try:
                    yield item, fn(item)
                except Exception as exc:  # recorded by the caller; the grid goes on
                    yield item, exc
            return
        yield from self._pool_map(fn, items)

    def _pool_map(self, fn, items):
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        remaining = list(items)
        while remaining:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                self.jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)
            ) as pool:
                futures = {pool.submit(fn, item): item for item in remaining}
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
                            # A worker died (killed, out of memory): jobs in flight are lost.
                            # Report this one and retry the rest in a fresh pool.
                            if not broken:
                                yield item, RuntimeError("the worker process died (killed or out of memory)")
                                broken = True
                            else:
                                remaining.append(item)
                        except Exception as exc:
                            yield item, exc


def make_executor(name: str, jobs: int) -> Executor:
    if name == "local":
        return LocalExecutor(jobs)
    raise ValueError(f"unknown executor {name!r}; available: local")
