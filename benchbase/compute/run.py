"""One fine-tuning run end to end: its split, fine-tuning, predictions, pretext scores and the report
the store records."""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchbase.compute import loading
from benchbase.compute.batching import TensorGraphs
from benchbase.compute.finetuning import FineTuner
from benchbase.compute.metrics import subset
from benchbase.compute.pretext_scores import evaluate_pretext
from benchbase.compute.pretraining import make_split
from benchbase.compute.resume import Snapshots
from benchbase.compute.runspec import RunSpec
from benchbase.compute.runtime import count_parameters
from benchbase.contract.api import (
    Dataset,
    Predictions,
    Protocol,
    Split,
    TaskInfo,
)
from benchbase.contract.registry import Registry


@dataclass
class RunOutcome:
    """What a fine-tuning run produced: metrics per task, predictions per slice and task (derived
    slices and the pretext head's held-out items, slice ``pretext``, included), its split."""

    metrics: dict[str, dict[str, float]]
    predictions: dict[str, dict[str, Predictions]]
    split: Split
    details: dict[str, Any]


def with_derived_slices(
    protocol: Protocol, dataset: Dataset, split: Split, by_slice: dict[str, Predictions]
) -> dict[str, Predictions]:
    """One task's predictions per slice, with the protocol's derived slices (subsets) added."""
    out = dict(by_slice)
    for name, (parent, graphs) in protocol.derived_slices(dataset, split).items():
        mask = np.zeros(dataset.arrays().num_graphs, dtype=bool)
        mask[np.asarray(graphs, dtype=np.int64)] = True
        out[name] = subset(by_slice[parent], mask)
    return out


@dataclass
class FineTuning:
    """One run set up for fine-tuning as ``benchbase run`` sets it up: its dataset (and its tensors),
    the protocol's split, and its `FineTuner`, built when `tuner` is first read (a script that
    needs only the data and the split builds no model)."""

    registry: Registry
    run: RunSpec
    dataset: Dataset
    graphs: TensorGraphs
    protocol: Protocol
    #: The task whose labels define the split (`Protocol.task_of`).
    split_task: TaskInfo
    split: Split

    @functools.cached_property
    def tuner(self) -> FineTuner:
        return FineTuner(self.registry, self.run, self.dataset, self.graphs)


def prepare_finetune(registry: Registry, run: RunSpec) -> FineTuning:
    """The dataset and split of one run, and its tuner to come (`FineTuning`)."""
    dataset, graphs = loading.dataset_tensors(registry, *run.component("dataset"))
    protocol, split_task, split = make_split(registry, run.spec, dataset)
    return FineTuning(registry, run, dataset, graphs, protocol, split_task, split)


def run_finetune(
    registry: Registry, run: RunSpec, checkpoint: Path | None, snapshots: Snapshots | None = None
) -> RunOutcome:
    """Fine-tune and evaluate one run; with `snapshots`, resumable between epochs (`Snapshots`)."""
    started = time.perf_counter()
    prepared = prepare_finetune(registry, run)
    dataset, graphs, protocol = prepared.dataset, prepared.graphs, prepared.protocol
    split_task, split, tuner = prepared.split_task, prepared.split, prepared.tuner
    if checkpoint is not None:
        tuner.load_pretrained(checkpoint)
    fit_info = tuner.fit(split, snapshots=snapshots)
    train_seconds = time.perf_counter() - started
    by_slice = {name: tuner.predict(indices) for name, indices in split.items() if name != "train"}
    pool, evaluation_pool = _finetuning_pool(run, protocol, split) if checkpoint is not None else (None, None)
    metrics: dict[str, dict[str, float]] = {}
    predictions: dict[str, dict[str, Predictions]] = {}
    for task in dataset.tasks:
        if tuner.weights[task.name] == 0:  # an untrained head: its numbers would mean nothing
            continue
        per_slice = {slice_name: preds[task.name] for slice_name, preds in by_slice.items()}
        per_slice = with_derived_slices(protocol, dataset, split, per_slice)
        metrics[task.name] = protocol.report(task, per_slice, dataset, split, pool)
        for slice_name, pred in per_slice.items():
            predictions.setdefault(slice_name, {})[task.name] = pred
    if protocol.evaluates_pretext and checkpoint is not None and split_task.name in metrics:
        evaluated = evaluate_pretext(registry, run, dataset, graphs, checkpoint, split["test"], evaluation_pool)
        if evaluated is not None:
            labels, class_names = evaluated
            metrics[split_task.name].update(protocol.report_pretext(labels, class_names))
            predictions["pretext"] = {split_task.name: labels}
    details = {
        "split_task": split_task.name,
        "n_params": count_parameters(tuner.encoder, tuner.heads),
        "fit": fit_info,
        "seconds": {"train": train_seconds, "total": time.perf_counter() - started},
        "tasks": {t.name: dataclasses.asdict(t) for t in dataset.tasks if t.name in metrics},
        **_skipped_inputs(dataset),
    }
    if snapshots is not None:
        details |= snapshots.details()
    return RunOutcome(metrics=metrics, predictions=predictions, split=split, details=details)


def _finetuning_pool(run: RunSpec, protocol: Protocol, split: Split) -> tuple[np.ndarray | None, np.ndarray]:
    """(the graphs of the run's dataset that its pretraining pool held, for `Protocol.report`; the
    graphs its pretext task is prepared on for `evaluate_pretext`). With another pretraining dataset
    the first is None - the pool's statistics (the imbalance protocol's ``pool_nodes_<class>``) would
    count only part of a pool that is mostly elsewhere - and the second the train and valid graphs:
    what the task's preparation reads of the dataset whose held-out graphs it scores (vocabularies
    that come from the features, which the two datasets share)."""
    mode = run.train.pretrain_pool
    if "pretrain_dataset" in run.spec:
        return None, protocol.pretrain_pool(split, "train")
    pool = protocol.pretrain_pool(split, "train" if mode == "train" else "all")
    return pool, pool


def _skipped_inputs(dataset: Dataset) -> dict[str, Any]:
    """Inputs the dataset plugin could not use (unparsable records): counted and listed (the first
    100) in the run record, so that nothing is dropped silently."""
    skipped = list(dataset.skipped)
    return {"skipped_inputs": len(skipped), "skipped_examples": [list(item) for item in skipped[:100]]}
