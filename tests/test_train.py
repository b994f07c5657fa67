"""Training-loop details: the few-label setting and early stopping on the validation split."""

from __future__ import annotations

import numpy as np

from benchbase.grid import PROFILES, expand_grid
from benchbase.loading import dataset_tensors
from benchbase.registry import default_registry
from benchbase.train import FineTuner, make_split


def _run(train_overrides):
    raw = {
        "seeds": [0],
        "train": {"epochs": 6, "patience": 2, **train_overrides},
        "study": [{"datasets": ["synthetic/chains"], "protocols": ["iid"], "encoders": ["tiny"]}],
    }
    return expand_grid(default_registry(), raw).runs[0]


def test_few_label_keeps_k_training_labels(synthetic_env):
    run = _run({"few_label": {"task": "count", "k": 7}})
    registry = default_registry()
    dataset, graphs = dataset_tensors(registry, *run.component("dataset"))
    _, _, split = make_split(registry, run.spec, dataset)
    tuner = FineTuner(registry, run, dataset, graphs)
    keep = tuner._label_keep(split)["count"].numpy()
    assert keep[split["train"]].sum() == 7
    assert keep[split["valid"]].all() and keep[split["test"]].all()


def test_best_validation_epoch_is_the_one_kept(synthetic_env):
    run = _run({})
    registry = default_registry()
    dataset, graphs = dataset_tensors(registry, *run.component("dataset"))
    _, _, split = make_split(registry, run.spec, dataset)
    tuner = FineTuner(registry, run, dataset, graphs)
    info = tuner.fit(split)
    assert info["epochs_run"] <= PROFILES["quick"]["epochs"]
    assert np.isclose(tuner._evaluate_loss(split["valid"]), info["best_valid_loss"], rtol=1e-5)
