"""Jobs that start together build a dataset's cache once: the first builds it under the dataset's
lock, the others wait and read it (`benchbase.running.datalock`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

LOAD = """
import sys, hashlib
from benchbase.contract.registry import default_registry
from benchbase.running.datalock import load_datasets
from benchbase.compute.loading import dataset_tensors
spec = {"dataset": {"name": "synthetic/cached", "params": {"cache": sys.argv[1], "graphs": 120}}}
load_datasets(default_registry(), spec)
dataset, _ = dataset_tensors(default_registry(), "synthetic/cached", spec["dataset"]["params"])
print(hashlib.sha256(dataset.arrays().x.tobytes()).hexdigest())
"""


@pytest.mark.slow
def test_two_jobs_loading_one_dataset_build_its_cache_once(synthetic_env, tmp_path):
    cache = tmp_path / "chains.npz"
    jobs = [
        subprocess.Popen([sys.executable, "-c", LOAD, str(cache)], env=synthetic_env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0]
    assert len((tmp_path / "chains.npz.builds").read_text().splitlines()) == 1  # built once
    assert outputs[0] == outputs[1] and outputs[0].strip()  # the same data for both


def test_a_run_pretrained_elsewhere_loads_only_its_own_dataset():
    from benchbase.running.datalock import datasets_of

    own, other = {"name": "qm9/gap", "params": {}}, {"name": "pcqm4mv2", "params": {}}
    assert datasets_of({"dataset": own, "pretrain_dataset": other}) == [own]  # its stage reads `other`
    pool = {"finetune": {"dataset": own}}
    assert datasets_of({"dataset": other, "pool": pool}) == [other, own]  # a stage pretraining on both


def test_a_file_system_without_locks_warns_once_and_goes_on(monkeypatch, tmp_path):
    import errno
    import fcntl
    import warnings

    from benchbase.running import datalock

    def no_flock(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path))
    monkeypatch.setattr(fcntl, "flock", no_flock)
    entered = []
    with pytest.warns(UserWarning, match="does not support file locks"):
        with datalock.dataset_lock("d", {}):
            entered.append(1)
    with warnings.catch_warnings(record=True) as later:  # warned once per folder
        warnings.simplefilter("always")
        with datalock.dataset_lock("d", {"other": 1}):
            entered.append(2)
    assert later == []
    assert entered == [1, 2]

    def broken(handle, operation):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(OSError, match="Bad file descriptor"):
        with datalock.dataset_lock("d", {}):
            pass
