"""A third-party plugin written against the contract's older forms (tests only): a protocol with
the old ``report(task, predictions, dataset, split)`` and ``leaderboard_metrics``; a dataset that
declares the 'smiles' capability without a ``smiles()`` method and a pretext task that needs it; a
rebalancer that declares it cannot take multi-label losses, and a classification dataset."""

from __future__ import annotations

import numpy as np
import torch
from synthetic_plugin import SyntheticChains, TinyMasking

from benchbase import hookimpl
from benchbase.compute.metrics import task_metrics
from benchbase.contract.api import Protocol, Rebalancer, TaskInfo


class OldIID(Protocol):
    name = "old-iid"
    description = "random 80/10/10 split, written against the old report signature (tests only)"

    def split(self, dataset, task, seed):
        order = np.random.default_rng(seed).permutation(len(dataset.ids()))
        n = len(order)
        return {
            "train": order[: int(0.8 * n)],
            "valid": order[int(0.8 * n) : int(0.9 * n)],
            "test": order[int(0.9 * n) :],
        }

    def report(self, task, predictions, dataset, split):  # the old signature: no pretrain_pool
        return {f"{name}_{k}": v for name, pred in predictions.items() for k, v in task_metrics(task, pred).items()}

    def leaderboard_metrics(self, task):  # the old form of leaderboard_columns
        return ["test_mae", "test_rmse"]


class SmilesWithoutMethod(SyntheticChains):
    name = "old/no-smiles"
    provides = SyntheticChains.provides | {"smiles"}  # declared, but there is no smiles()


class SmilesMasking(TinyMasking):
    name = "smiles-masking"
    requires = frozenset({"x_categorical", "smiles"})


class ClassChains(SyntheticChains):
    name = "old/class-chains"

    def __init__(self, graphs: int = 120) -> None:
        super().__init__(graphs=graphs)
        self.tasks = [TaskInfo("big", kind="classification", metric="rocauc", higher_is_better=True)]

    def arrays(self):
        arrays = super().arrays()
        arrays.targets = {"big": (arrays.targets.get("count", arrays.targets.get("big")) >= 2).astype(np.float32)}
        return arrays


class SingleLabelOnly(Rebalancer):
    name = "single-label-only"
    description = "weights classes of a multiclass loss only (tests only)"
    supports_multilabel = False

    def loss(self, logits, targets, multilabel=False):
        return torch.nn.functional.cross_entropy(logits, targets)


@hookimpl
def register_protocols(register):
    register(OldIID)


@hookimpl
def register_datasets(register):
    register("old/no-smiles", SmilesWithoutMethod)
    register("old/class-chains", ClassChains)


@hookimpl
def register_pretext_tasks(register):
    register(SmilesMasking)


@hookimpl
def register_rebalancers(register):
    register(SingleLabelOnly)
