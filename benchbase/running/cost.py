"""What a grid will cost, before it is submitted (`benchbase run --dry-run`).

Estimating a cost loads no data beyond a calibration's sample (planning itself makes a `size`
protocol's splits, which needs its dataset's graph sizes, and checks them). A run's time is
bounded by its maximum epochs times the seconds one epoch can take, plus an allowance for starting
its job; a pretraining stage's, by its pretraining epochs times the seconds one pass over its pool
can take, counted once however many runs share it.
An epoch's seconds are the number of graphs times the seconds per graph, where

- the number of graphs is dataset metadata: the ``size`` the plugin's `describe()` reports (cheap,
  no loading), else the count this module recorded when it last loaded the dataset;
- the seconds per graph come, in this order, from finished runs in the store with the same dataset,
  encoder, batch size and device (their job's wall time over the epochs they ran, the slowest), or
  from a calibration: a few timed training steps of the encoder on the dataset's graphs. A
  calibration is cached in ``$BENCHBASE_CACHE/cost/`` under a key of the hardware, the code
  fingerprints (harness and encoder), the dataset and its data key, the encoder's parameters, the
  batch size, the device and the threads, so that it runs once per machine and code: the same
  inputs give the same estimate. A dataset whose plugin says it is not prepared (``describe()``
  reports ``cached: False``) is not calibrated - featurising it would take the time the estimate
  is meant to spare - and its runs are named as not estimated, as are those of a dataset whose data
  is absent (skipped at planning) and those on a device this machine does not have.

The result is an upper bound, not a forecast: every run to its maximum epochs (early stopping ends
most sooner), an epoch counted as training on every graph of the dataset and evaluating every graph
again at half a training step's cost (`EPOCH_PASSES`), the calibrated step time doubled (`MARGIN`:
the micro-benchmark leaves out task heads, batching and a loaded machine's jitter), and
`JOB_START_SECONDS` per job. It is in CPU- or GPU-hours of the device the runs ask for (one run
per core or GPU); a GPU calibration runs on this machine's GPU. `benchmarks/cost_bound.py`
compares it with a real grid that runs to its epoch limit.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchbase.compute.runspec import RunSpec
from benchbase.contract.identity import content_hash
from benchbase.contract.registry import Registry
from benchbase.running.planning import Grid

#: Timed training steps per calibration, after one untimed warm-up step.
CALIBRATION_STEPS = 3
#: Factor on calibrated step times (heads, batching and jitter the micro-benchmark leaves out).
MARGIN = 2.0
#: Passes over the dataset an epoch is counted as: training on every graph, then evaluating every
#: graph (a forward pass, counted at half a training step).
EPOCH_PASSES = 1.5
#: Seconds allowed per job for what is not training: interpreter start, imports, loading a prepared
#: dataset, writing predictions.
JOB_START_SECONDS = 20.0
#: Bumped when what a calibration measures changes: older cached calibrations are then ignored.
CALIBRATION_FORMAT = "benchbase-cost/2"

FROM_STORE = "finished runs in the store"
FROM_CALIBRATION = "a calibration on this machine"
FROM_CACHE = "a cached calibration on this machine"


def _probe(spec: dict[str, Any]) -> dict[str, Any]:
    """What an epoch's cost depends on, from a run's spec or a stage's: dataset and its data key,
    encoder, batch size, node cap, numerics and the code that trains."""
    code = spec.get("code", {})
    return {
        "dataset": spec["dataset"],
        "data": spec.get("data"),
        "encoder": spec["encoder"],
        "batch_size": spec["train"]["batch_size"],
        "max_nodes": spec["train"].get("max_nodes"),
        "numerics": spec["numerics"],
        "code": [code.get("harness"), code.get("encoder")],
    }


def _store_key(spec: dict[str, Any]) -> str:
    """Finished runs inform runs with the same dataset, encoder, batch size and device."""
    numerics = spec["numerics"]
    return json.dumps(
        [spec["dataset"], spec["encoder"], spec["train"]["batch_size"], numerics["device"], numerics["threads"]],
        sort_keys=True,
    )


@dataclass(frozen=True)
class Calibration:
    seconds_per_graph: float  # one training step (forward, backward, update), per graph
    graphs: int  # graphs of the dataset, as loaded


@dataclass
class StudyCost:
    study: int
    runs: int = 0
    stages: int = 0
    seconds: float = 0.0
    unknown: int = 0  # runs whose cost could not be estimated
    unknown_stages: int = 0  # stages whose cost could not be estimated
    sources: set[str] = field(default_factory=set)
    device: str = "cpu"

    def line(self) -> str:
        text = f"study {self.study}: {self.runs} runs and {self.stages} pretraining stages"
        text += f", at most {_amount(self.seconds, self.device)}"
        counts = ((self.unknown, "run"), (self.unknown_stages, "stage"))
        missing = [f"{n} {what}{'s' * (n != 1)}" for n, what in counts if n]
        if missing:
            text += f" ({' and '.join(missing)} not estimated)"
        return text + (f" [from {', '.join(sorted(self.sources))}]" if self.sources else "")


def _amount(seconds: float, device: str) -> str:
    unit = "GPU" if device == "cuda" else "CPU" if device == "cpu" else "device"
    hours = seconds / 3600
    if hours >= 10:
        return f"{hours:,.0f} {unit}-hours"
    return f"{hours:,.2f} {unit}-hours ({seconds:,.0f} s)"


class Estimator:
    """Seconds per graph by what the cost depends on, from the store, the calibration cache or a
    calibration; what cannot be estimated, with the reason, in `not_estimated`."""

    def __init__(self, registry: Registry, runs: list[dict[str, Any]]) -> None:
        self.registry = registry
        self.store_per_epoch: dict[str, float] = {}
        self.calibrations: dict[str, Calibration | str] = {}  # probe hash -> calibration or why none
        self.sizes: dict[str, int | str] = {}
        self.sources_used: dict[str, str] = {}
        self.not_estimated: dict[str, set[str]] = defaultdict(set)  # reason -> what
        self._passes: dict[str, tuple[float, str] | str] = {}
        self._machine: list[str] | None = None
        self._learn(runs)

    def _learn(self, runs: list[dict[str, Any]]) -> None:
        """Seconds per fine-tuning epoch of finished runs: their job's wall time (loading and
        evaluation included) over the epochs they ran, the slowest of each kind. A run that resumed
        from a snapshot is left out: its time is the last job's, its epochs those of every job."""
        for run in runs:
            details = run.get("details") or {}
            if details.get("resumed_at_epochs"):
                continue
            epochs = (details.get("fit") or {}).get("epochs_run")
            seconds = run.get("seconds") or (details.get("seconds") or {}).get("total")
            if run.get("status") == "finished" and epochs and seconds:
                key = _store_key(run["spec"])
                self.store_per_epoch[key] = max(self.store_per_epoch.get(key, 0.0), float(seconds) / epochs)

    # metadata -----------------------------------------------------------------------------------

    def _describe(self, probe: dict[str, Any]) -> dict[str, Any]:
        from benchbase.compute.loading import build_dataset
        from benchbase.contract.errors import PluginError

        try:
            return dict(build_dataset(self.registry, probe["dataset"]["name"], probe["dataset"]["params"]).describe())
        except PluginError:
            return {}

    def graphs(self, probe: dict[str, Any]) -> int | str:
        """The dataset's number of graphs (metadata, no loading), or why it is not known."""
        key = content_hash([probe["dataset"], probe["data"]])
        if key not in self.sizes:
            size = self._describe(probe).get("size")
            if isinstance(size, int) and not isinstance(size, bool) and size >= 0:
                self.sizes[key] = size
            else:
                # Only a size is kept per dataset: why a calibration failed is the probe's own
                # (another study's device or encoder may calibrate fine).
                calibration = self.calibration(probe)
                if isinstance(calibration, str):
                    return calibration
                self.sizes[key] = calibration.graphs
        return self.sizes[key]

    # calibration --------------------------------------------------------------------------------

    def _key(self, probe: dict[str, Any]) -> str:
        """The calibration's cache key: the probe on this hardware, with this torch."""
        if self._machine is None:
            from benchbase.running.provenance import hardware

            self._machine = [CALIBRATION_FORMAT, hardware(), _torch_version()]
        return content_hash([*self._machine, probe], 24)

    def calibration(self, probe: dict[str, Any]) -> Calibration | str:
        """The cached calibration of `probe` on this hardware and code, else a fresh one (cached),
        else why there is none."""
        from benchbase.compute.cache import atomic_path, cache_dir

        key = self._key(probe)
        if key in self.calibrations:
            return self.calibrations[key]
        path = cache_dir("cost") / f"{key}.json"
        try:
            cached = json.loads(path.read_text())
            result: Calibration | str = Calibration(float(cached["seconds_per_graph"]), int(cached["graphs"]))
            self.sources_used[key] = FROM_CACHE
        except (OSError, ValueError, KeyError, TypeError):
            result = self._calibrate(probe)
            if isinstance(result, Calibration):
                self.sources_used[key] = FROM_CALIBRATION
                with atomic_path(path) as tmp:
                    tmp.write_text(json.dumps({"probe": probe, **result.__dict__}, sort_keys=True))
        self.calibrations[key] = result
        return result

    def source(self, probe: dict[str, Any]) -> str:
        return self.sources_used.get(self._key(probe), FROM_CALIBRATION)

    def _calibrate(self, probe: dict[str, Any]) -> Calibration | str:
        """A few timed training steps of the encoder on a sample of the dataset's graphs."""
        import torch

        from benchbase.compute import loading
        from benchbase.compute.batching import iterate_batches
        from benchbase.compute.runtime import on
        from benchbase.contract.errors import PluginError

        name = probe["dataset"]["name"]
        if probe["numerics"]["device"] == "cuda" and not torch.cuda.is_available():
            return "no CUDA device on this machine to calibrate on"
        if self._describe(probe).get("cached") is False:
            return f"not prepared on this machine: `benchbase datasets prepare {name}` first"
        try:
            dataset, graphs = loading.dataset_tensors(self.registry, name, probe["dataset"]["params"])
            torch.manual_seed(0)
            encoder = loading.build_encoder(self.registry, *_component(probe["encoder"]), dataset.features)
            encoder.prepare(dataset)
        except PluginError as exc:
            return f"cannot be loaded here: {exc}"
        device = torch.device(probe["numerics"]["device"])
        encoder.to(device)
        params = list(encoder.parameters())
        # An encoder without parameters (precomputed descriptors) has only its forward to time.
        optimizer = torch.optim.Adam(params, lr=1e-3) if params else None
        batch_size = int(probe["batch_size"])
        sample = np.random.default_rng(0).permutation(graphs.num_graphs)[: batch_size * (CALIBRATION_STEPS + 1)]
        batches = [on(device, b) for b in iterate_batches(graphs, sample, batch_size, max_nodes=probe["max_nodes"])]
        before = torch.get_num_threads()
        torch.set_num_threads(int(probe["numerics"]["threads"]))
        try:
            steps = [_timed_step(encoder, optimizer, batch) for batch in batches]
        finally:
            torch.set_num_threads(before)
        if len(steps) > 1:
            steps = steps[1:]  # the first step warms up
        seen = sum(n for _, n in steps)
        return Calibration(sum(t for t, _ in steps) / max(seen, 1), graphs.num_graphs)

    # per epoch ----------------------------------------------------------------------------------

    def epoch_seconds(self, spec: dict[str, Any]) -> tuple[float, str] | str:
        """At most the seconds of one fine-tuning epoch of `spec` and where the number comes
        from, or why there is none."""
        stored = self.store_per_epoch.get(_store_key(spec))
        if stored is not None:
            return stored, FROM_STORE
        return self.pass_seconds(_probe(spec))

    def pass_seconds(self, probe: dict[str, Any], extra_graphs: int = 0) -> tuple[float, str] | str:
        """At most the seconds of one epoch over the dataset of `probe` (and `extra_graphs` more
        graphs), or why it cannot be told (memoised: a grid asks per run)."""
        memo = json.dumps([probe, extra_graphs], sort_keys=True)
        if memo not in self._passes:
            self._passes[memo] = self._pass_seconds(probe, extra_graphs)
        return self._passes[memo]

    def _pass_seconds(self, probe: dict[str, Any], extra_graphs: int) -> tuple[float, str] | str:
        graphs = self.graphs(probe)
        if isinstance(graphs, str):
            return graphs
        calibration = self.calibration(probe)
        if isinstance(calibration, str):
            return calibration
        seconds = calibration.seconds_per_graph * MARGIN * EPOCH_PASSES * (graphs + extra_graphs)
        return seconds, self.source(probe)

    def stage_pass_seconds(self, run: RunSpec) -> tuple[float, str] | str:
        """At most the seconds of one pass over the pool of `run`'s pretraining stage: its
        dataset's graphs, and the fine-tuning dataset's when the pool adds them."""
        stage = run.stage_spec()
        assert stage is not None
        extra = 0
        if isinstance(stage["pool"], dict):  # another dataset, plus graphs of the fine-tuning one
            finetune = self.graphs(_probe(run.spec))
            if isinstance(finetune, str):
                return finetune
            extra = finetune
        return self.pass_seconds(_probe(stage), extra)

    # a grid ---------------------------------------------------------------------------------------

    def study_costs(self, grid: Grid, finished: set[str], stages_ready: set[str]) -> list[StudyCost]:
        costs: dict[int, StudyCost] = {}
        counted: set[str] = set(stages_ready)
        for run in grid.runs:
            run_id = run.run_id  # a hash of the spec: worked out once
            if run_id in finished:
                continue
            study = grid.study_of.get(run_id, 1)
            cost = costs.setdefault(study, StudyCost(study, device=run.spec["numerics"]["device"]))
            cost.runs += 1
            per_epoch = self.epoch_seconds(run.spec)
            if isinstance(per_epoch, str):
                self._not_estimated(run.spec, per_epoch)
                cost.unknown += 1
            else:
                cost.sources.add(per_epoch[1])
                cost.seconds += per_epoch[0] * run.train.epochs + JOB_START_SECONDS
            stage = run.stage_id
            if stage is not None and stage not in counted:
                counted.add(stage)
                self._add_stage(cost, run)
        return [costs[k] for k in sorted(costs)]

    def _add_stage(self, cost: StudyCost, run: RunSpec) -> None:
        per_pass = self.stage_pass_seconds(run)
        if isinstance(per_pass, str):
            self._not_estimated(run.stage_spec() or {}, per_pass, "pretraining on ")
            cost.unknown_stages += 1
            return
        cost.stages += 1
        cost.sources.add(per_pass[1])
        cost.seconds += per_pass[0] * run.train.pretrain_epochs + JOB_START_SECONDS

    def _not_estimated(self, spec: dict[str, Any], reason: str, prefix: str = "") -> None:
        self.not_estimated[reason].add(f"{prefix}{spec['dataset']['name']}")


def _timed_step(encoder: Any, optimizer: Any, batch: Any) -> tuple[float, int]:
    """Seconds of one training step on `batch`, and its number of graphs."""
    import torch

    started = time.perf_counter()
    loss = encoder(batch).graph.square().mean()
    if optimizer is not None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if loss.device.type == "cuda":  # the step has only been queued
        torch.cuda.synchronize(loss.device)
    return time.perf_counter() - started, batch.num_graphs


def _component(part: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return part["name"], part["params"]


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def absent_datasets(grid: Grid) -> dict[str, int]:
    """Datasets whose data is not on this machine, with how many runs that skipped."""
    counts: dict[str, int] = defaultdict(int)
    for skipped in grid.skipped:
        if skipped.absent:
            counts[skipped.absent] += 1
    return dict(sorted(counts.items()))


def summary_lines(costs: list[StudyCost], estimator: Estimator | None = None, grid: Grid | None = None) -> list[str]:
    """One line per study, the total, then what is not in it: datasets whose data is absent (their
    runs are skipped) and runs that could not be estimated, with why."""
    lines = [cost.line() for cost in costs]
    total = sum(c.seconds for c in costs)
    units = {c.device for c in costs}
    device = units.pop() if len(units) == 1 else "device"
    if costs:
        lines.append(f"total: at most {_amount(total, device)}")
    if grid is not None:
        for name, count in absent_datasets(grid).items():
            lines.append(f"not estimated: {name} (data absent: its {count} runs are skipped)")
    if estimator is not None:
        for reason in sorted(estimator.not_estimated):
            names = ", ".join(sorted(estimator.not_estimated[reason]))
            lines.append(f"not estimated: {names} ({reason})")
    return lines
