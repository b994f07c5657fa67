"""What a grid will cost, before it is submitted (`benchbase run --dry-run`).

A run's time is its epochs times the seconds one epoch takes; a pretraining stage's, its epochs
times the seconds one pass over its pool takes, counted once however many runs share it (on another
dataset, ``pretrain_dataset``: an epoch over that dataset; the fine-tuning graphs a pool may add are
not counted). Seconds
per epoch come, in this order, from:

1. finished runs and stages in the store with the same dataset, encoder and batch size (their
   recorded training seconds over the epochs they ran);
2. a short calibration on this machine: a few timed training steps of the encoder on a sample of
   the dataset, scaled to the dataset's size;
3. nothing, when the dataset is not on this machine: the estimate says so.

Estimates are upper bounds (every run to its maximum epochs, early stopping ends most sooner) and
in CPU- or GPU-hours of the device the runs ask for (one run per core or GPU).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchbase.compute.runspec import RunSpec
from benchbase.contract.registry import Registry
from benchbase.running.planning import Grid

#: Timed training steps per calibration, after one untimed warm-up step.
CALIBRATION_STEPS = 3


def _key(spec: dict[str, Any]) -> str:
    """What an epoch's cost depends on: dataset, encoder, batch size, device."""
    return json.dumps(
        [spec["dataset"], spec["encoder"], spec["train"]["batch_size"], spec["numerics"]["device"]], sort_keys=True
    )


@dataclass
class StudyCost:
    study: int
    runs: int = 0
    stages: int = 0
    seconds: float = 0.0
    unknown: int = 0  # runs whose cost could not be estimated
    sources: set[str] = field(default_factory=set)
    device: str = "cpu"

    def line(self) -> str:
        unit = "GPU" if self.device == "cuda" else "CPU"
        hours = self.seconds / 3600
        text = f"study {self.study}: {self.runs} runs and {self.stages} pretraining stages"
        text += f", at most {hours:,.1f} {unit}-hours"
        if self.unknown:
            text += f" ({self.unknown} runs not estimated: their data is not on this machine)"
        return text + (f" [from {', '.join(sorted(self.sources))}]" if self.sources else "")


class Estimator:
    def __init__(self, registry: Registry, runs: list[dict[str, Any]], stages: list[dict[str, Any]]) -> None:
        self.registry = registry
        self.per_epoch: dict[str, float] = {}
        self.sources: dict[str, str] = {}
        self._learn(runs, stages)

    def _learn(self, runs: list[dict[str, Any]], stages: list[dict[str, Any]]) -> None:
        """Seconds per fine-tuning epoch of finished runs, by what the cost depends on."""
        seen: dict[str, list[float]] = defaultdict(list)
        for run in runs:
            details = run.get("details") or {}
            fit = details.get("fit") or {}
            if run.get("status") == "finished" and fit.get("epochs_run") and details.get("seconds"):
                seen[_key(run["spec"])].append(details["seconds"]["train"] / fit["epochs_run"])
        for key, values in seen.items():
            self.per_epoch[key] = float(np.median(values))
            self.sources[key] = "finished runs in the store"

    def epoch_seconds(self, run: RunSpec) -> float | None:
        key = _key(run.spec)
        if key not in self.per_epoch:
            calibrated = self._calibrate(run)
            if calibrated is None:
                return None
            self.per_epoch[key], self.sources[key] = calibrated, "a calibration on this machine"
        return self.per_epoch[key]

    def _calibrate(self, run: RunSpec) -> float | None:
        """A few timed training steps on a sample of the dataset, scaled to one epoch."""
        from benchbase.compute import loading
        from benchbase.compute.batching import iterate_batches
        from benchbase.contract.errors import PluginError

        if run.spec["numerics"]["device"] == "cuda" and not torch.cuda.is_available():
            return None
        try:
            dataset, graphs = loading.dataset_tensors(self.registry, *run.component("dataset"))
        except PluginError:
            return None
        torch.manual_seed(0)
        encoder = loading.build_encoder(self.registry, *run.component("encoder"), dataset.features)
        encoder.prepare(dataset)
        params = list(encoder.parameters())
        # An encoder without parameters (precomputed descriptors) has only its forward to time.
        optimizer = torch.optim.Adam(params, lr=1e-3) if params else None
        batch_size = run.train.batch_size
        sample = np.random.default_rng(0).permutation(graphs.num_graphs)[: batch_size * (CALIBRATION_STEPS + 1)]
        batches = list(iterate_batches(graphs, sample, batch_size, max_nodes=run.train.max_nodes))
        torch.set_num_threads(run.threads)
        elapsed, seen = 0.0, 0
        for i, batch in enumerate(batches):
            started = time.perf_counter()
            loss = encoder(batch).graph.square().mean()
            if optimizer is not None:
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if i:  # the first step warms up
                elapsed, seen = elapsed + time.perf_counter() - started, seen + batch.num_graphs
        if not seen:
            return None
        # An epoch trains on ~80% of the graphs and evaluates ~10% at about a third of the cost.
        return elapsed / seen * graphs.num_graphs * (0.8 + 0.1 / 3)

    def study_costs(self, grid: Grid, finished: set[str], stages_ready: set[str]) -> list[StudyCost]:
        costs: dict[int, StudyCost] = {}
        counted: set[str] = set(stages_ready)
        for run in grid.runs:
            if run.run_id in finished:
                continue
            study = grid.study_of.get(run.run_id, 1)
            cost = costs.setdefault(study, StudyCost(study, device=run.spec["numerics"]["device"]))
            cost.runs += 1
            per_epoch = self.epoch_seconds(run)
            if per_epoch is None:
                cost.unknown += 1
                continue
            cost.sources.add(self.sources[_key(run.spec)])
            cost.seconds += per_epoch * run.train.epochs
            stage = run.stage_id
            if stage is not None and stage not in counted:
                counted.add(stage)
                cost.stages += 1
                pass_seconds = per_epoch  # a pool pass, as a fine-tuning epoch
                if "pretrain_dataset" in run.spec:  # a pass over another dataset (its size, not the run's)
                    on_other = RunSpec(run.stage_spec())
                    pass_seconds = self.epoch_seconds(on_other) or per_epoch
                    cost.sources.add(self.sources.get(_key(on_other.spec), self.sources[_key(run.spec)]))
                cost.seconds += pass_seconds * run.train.pretrain_epochs
        return [costs[k] for k in sorted(costs)]


def summary_lines(costs: list[StudyCost]) -> list[str]:
    lines = [cost.line() for cost in costs]
    total = sum(c.seconds for c in costs)
    units = {c.device for c in costs}
    unit = "GPU" if units == {"cuda"} else "CPU" if units == {"cpu"} else "device"
    if costs:
        lines.append(f"total: at most {total / 3600:,.1f} {unit}-hours")
    return lines
