"""Datasets loaded by a job under a lock, so that jobs starting together build a dataset's cache
once: the first featurises and writes it, the others wait and read it.

The lock is a file in ``$BENCHBASE_CACHE/locks/`` named by the dataset's name and parameters, held
with ``flock`` while the job loads the dataset (the plugin builds its cache then, if it has none).
With ``BENCHBASE_CACHE`` on a file system every node shares (NFSv4, Lustre, GPFS all honour
``flock``), that is once per cluster; on a node-local cache, once per node. Plugins write their
cache files atomically (a temporary file renamed into place), so a reader never sees half a file;
the lock only spares the duplicated work - and the memory of many jobs featurising at once.
"""

from __future__ import annotations

import errno
import fcntl
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchbase.contract.identity import content_hash
from benchbase.contract.registry import Registry


@contextmanager
def dataset_lock(name: str, params: dict[str, Any]) -> Iterator[None]:
    """Hold the lock of dataset `name` with `params` (blocking until it is free)."""
    from benchbase.compute.cache import cache_dir

    path = cache_dir("locks") / f"dataset-{content_hash([name, params])}.lock"
    with open(path, "a") as handle:
        locked = _lock(handle, path)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _lock(handle: Any, path: Any) -> bool:
    """Take the lock on `handle`; False on a file system without `flock` (Lustre mounted without
    -o flock), which goes on unlocked: the lock only spares duplicated work, cache files are
    written atomically."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError as exc:
        if exc.errno not in _NO_LOCKS:
            raise
        _warn_once(path.parent, exc)
        return False
    return True


#: What `flock` says on a file system that does not offer it.
_NO_LOCKS = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP}
_warned: set[str] = set()


def _warn_once(folder: Any, exc: OSError) -> None:
    if str(folder) not in _warned:
        _warned.add(str(folder))
        warnings.warn(
            f"{folder} does not support file locks ({exc.strerror}): jobs that start together may each "
            "build a dataset's cache (the same files; more time and memory)",
            stacklevel=4,
        )


def datasets_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The datasets a run's or a stage's spec reads: ``{"name", "params"}`` each. A run pretrained
    on another dataset (``pretrain_dataset``) reads only its own: its stage's ``dataset`` is the other."""
    found = [spec["dataset"]]
    pool = spec.get("pool")
    if isinstance(pool, dict) and "finetune" in pool:
        found.append(pool["finetune"]["dataset"])
    return found


def load_datasets(registry: Registry, spec: dict[str, Any]) -> None:
    """Load every dataset `spec` reads, each under its lock; the process keeps them loaded
    (`benchbase.compute.loading`), so the job that follows reads them from memory."""
    from benchbase.compute.loading import build_dataset

    for dataset in datasets_of(spec):
        with dataset_lock(dataset["name"], dataset["params"]):
            build_dataset(registry, dataset["name"], dataset["params"]).arrays()
