"""Training state kept at epoch boundaries, so that a job that is killed (a local kill, a Slurm time
limit or preemption that requeues it) resumes where it stopped and ends with the numbers of an
uninterrupted run, bit for bit.

A snapshot holds everything the training loop carries from one epoch to the next: the weights, the
optimiser's state, the epoch, the early-stopping state and every random generator the loop draws
from (torch's global CPU and CUDA generators, the run's shuffling generator, numpy's and Python's
global generators). Taking one draws nothing and changes no operation of the loop, so a run that
keeps snapshots computes exactly what a run without them computes.

Snapshots are read with ``torch.load(weights_only=True)`` (tensors and plain values only: no code
runs on loading), carry the digest of the job's spec (a snapshot of another job is never used) and,
given a key, an HMAC of their bytes (the directory they live in may be writable by others).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchbase.compute.cache import atomic_path

#: Bumped when the layout of a snapshot changes: an older snapshot is then not used.
FORMAT = 1
_MAC_BYTES = 32


def spec_digest(spec: Any) -> str:
    """A digest of what a job computes (its spec, plus anything else that decides its numbers)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class Snapshots:
    """One job's snapshot file: `load` the state to resume from, `save` one at an epoch boundary,
    `discard` it once the job's outputs are written.

    `resumed_at` lists the epochs this job resumed from, across every process that worked on it
    (a run requeued twice: two entries)."""

    def __init__(self, path: Path | str, spec: Any, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.digest = spec_digest(spec)
        self.key = key
        self.resumed_at: list[int] = []

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none to use (absent, damaged, another job's, or
        not sealed with the key: then training starts from its first epoch, with a warning)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._unused(f"cannot be read ({exc})")
        if self.key is not None:
            mac, data = data[:_MAC_BYTES], data[_MAC_BYTES:]
            if not hmac.compare_digest(mac, hmac.new(self.key, data, hashlib.sha256).digest()):
                return self._unused("is not sealed with this store's key")
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: start over
            return self._unused(f"cannot be loaded ({type(exc).__name__})")
        if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("spec") != self.digest:
            return self._unused("belongs to another job or another version")
        self.resumed_at = [*state["resumed_at"], int(state["epoch"])]
        return state

    def _unused(self, why: str) -> None:
        warnings.warn(f"the training snapshot {self.path} {why}: not used, training starts over", stacklevel=3)
        return None

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Keep `state` as the one to resume from after `epoch` epochs (written whole or not at all)."""
        state = {**state, "format": FORMAT, "spec": self.digest, "epoch": epoch, "resumed_at": self.resumed_at}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as handle:
                if self.key is not None:
                    handle.write(hmac.new(self.key, data, hashlib.sha256).digest())
                handle.write(data)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def random_state(device: torch.device) -> dict[str, Any]:
    """Every global random generator a training loop may draw from, as tensors and plain values."""
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }


def restore_random_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
