"""Training state kept at epoch boundaries, and between two steps when asked (`request_pause`), so
that a job that is killed (a local kill, a Slurm time limit or preemption that requeues it) resumes
where it stopped and ends with the numbers of an uninterrupted run, bit for bit.

A snapshot holds everything the training loop carries from one epoch to the next: the weights, the
optimiser's state, the epoch, the early-stopping state and every random generator the loop draws
from (torch's global CPU and CUDA generators, the run's shuffling generator, numpy's and Python's
global generators). Taking one draws nothing and changes no operation of the loop, so a run that
keeps snapshots computes exactly what a run without them computes. A snapshot taken within an epoch
(`EpochBatches.steps`, at a `request_pause`) also holds the steps done and the shuffling generator's
state when the epoch began: the resumed epoch draws the same order again, skips the steps done and
goes on with the generator where it was.

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchbase.compute.batching import TensorGraphs, iterate_batches
from benchbase.compute.cache import atomic_path
from benchbase.contract.types import GraphBatch

#: Bumped when the layout of a snapshot changes: an older snapshot is then not used.
FORMAT = 3


class TrainingPaused(BaseException):
    """Training stopped between two optimiser steps, as `request_pause` asked, after saving its
    state. A BaseException, as KeyboardInterrupt is: no handler meant for failures records it as one."""


#: Set by `request_pause` (from a signal handler: a plain flag, no lock to take).
_pause = {"requested": False}


def request_pause() -> None:
    """Ask this process's training loop to save its state after the step it is in and stop with
    `TrainingPaused` (a scheduler's warning before a time limit). Only a loop that keeps snapshots
    stops; safe to call from a signal handler."""
    _pause["requested"] = True


def pause_requested() -> bool:
    return _pause["requested"]


def clear_pause() -> None:
    _pause["requested"] = False


_MAC_BYTES = 32


def spec_digest(spec: Any) -> str:
    """A digest of what a job computes (its spec, plus anything else that decides its numbers)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


class Snapshots:
    """One job's snapshot file: `load` the state to resume from, `save` one at an epoch boundary,
    `discard` it once the job's outputs are written.

    `resumed_at` lists the epochs this job resumed from, across every process that worked on it
    (a run requeued twice: two entries), and `resumed_steps` the steps it had done of the next
    epoch each time (0: it resumed at the epoch's boundary)."""

    def __init__(self, path: Path | str, spec: Any, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.digest = spec_digest(spec)
        self.key = key
        self.resumed_at: list[int] = []
        self.resumed_steps: list[int] = []

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
        self.resumed_steps = [*state["resumed_steps"], int(state.get("step", 0))]
        return state

    def details(self) -> dict[str, Any]:
        """What a record says of this job's resumptions: nothing for a job that ran in one go."""
        if not self.resumed_at:
            return {}
        steps = {"resumed_at_steps": self.resumed_steps} if any(self.resumed_steps) else {}
        return {"resumed_at_epochs": self.resumed_at, **steps}

    def _unused(self, why: str) -> None:
        warnings.warn(f"the training snapshot {self.path} {why}: not used, training starts over", stacklevel=3)
        return None

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Keep `state` as the one to resume from after `epoch` epochs (and ``state["step"]`` steps of
        the next one, if set; `EpochBatches.steps`), written whole or not at all."""
        state = {
            **state,
            "format": FORMAT,
            "spec": self.digest,
            "epoch": epoch,
            "resumed_at": self.resumed_at,
            "resumed_steps": self.resumed_steps,
        }
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


class EpochBatches:
    """One epoch's shuffled training batches, numbered by the steps done once each is trained on,
    resumable within the epoch: given the `position` a snapshot saved (None: the epoch's start),
    the order is drawn again from the generator's state when the epoch began, the steps done are
    skipped and the generator is put back where the paused step left it."""

    def __init__(
        self,
        graphs: TensorGraphs,
        indices: np.ndarray,
        batch_size: int,
        generator: torch.Generator,
        max_nodes: int | None,
        position: dict[str, Any] | None = None,
    ) -> None:
        self.args = (graphs, indices, batch_size, True, generator, max_nodes)
        self.generator = generator
        self.started = generator.get_state() if position is None else position["epoch_generator"]
        self.done = 0 if position is None else int(position["step"])

    def __iter__(self) -> Iterator[tuple[int, GraphBatch]]:
        now = self.generator.get_state()
        self.generator.set_state(self.started)
        batches = iterate_batches(*self.args)
        for _ in range(self.done):  # the first draws the epoch's order; none draws anything else
            next(batches)
        self.generator.set_state(now)
        yield from enumerate(batches, start=self.done + 1)

    def steps(
        self, snapshots: Snapshots | None, epoch: int, state: Callable[[], dict[str, Any]]
    ) -> Iterator[GraphBatch]:
        """The batches of the epoch's steps still to do; after each step is trained (when the loop
        asks for the next batch), a pause asked for (`request_pause`) saves `state()` - the loop's
        state, read then - with this position as `epoch`'s snapshot and stops with `TrainingPaused`.
        Without `snapshots` there is nothing to resume from: a pause asked for is ignored."""
        for step, batch in self:
            yield batch
            if snapshots is not None and pause_requested():
                snapshots.save(epoch, state() | {"step": step, "epoch_generator": self.started})
                raise TrainingPaused(f"training paused after step {step} of epoch {epoch}")

    @staticmethod
    def saved(state: dict[str, Any]) -> dict[str, Any] | None:
        """The position within an epoch a snapshot holds; None for one taken at an epoch's end."""
        return state if state.get("step") else None
