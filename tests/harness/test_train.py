"""Training-loop details: the few-label setting and early stopping on the validation split."""

from __future__ import annotations

import numpy as np

from benchbase.compute.finetuning import FineTuner
from benchbase.compute.loading import dataset_tensors
from benchbase.compute.pretraining import make_split
from benchbase.compute.settings import PROFILES
from benchbase.contract.registry import default_registry
from benchbase.running.planning import expand_grid


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


def _clip_recorder(monkeypatch):
    """Wraps torch's clip_grad_norm_: records (max_norm, global norm after clipping) per call."""
    import torch

    calls = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(params, max_norm, *args, **kwargs):
        params = list(params)
        total = original(params, max_norm, *args, **kwargs)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        calls.append((max_norm, float(total), float(after)))
        return total

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    return calls


def test_grad_clip_in_fine_tuning(synthetic_env, monkeypatch):
    calls = _clip_recorder(monkeypatch)
    registry = default_registry()
    run = _run({"epochs": 1, "grad_clip": 1e-3})
    dataset, graphs = dataset_tensors(registry, *run.component("dataset"))
    _, _, split = make_split(registry, run.spec, dataset)
    FineTuner(registry, run, dataset, graphs).fit(split)
    assert calls and all(max_norm == 1e-3 and after <= 1e-3 * 1.01 for max_norm, _, after in calls)
    assert any(total > 1e-3 for _, total, _ in calls)  # it did clip something
    calls.clear()
    FineTuner(registry, _run({"epochs": 1}), dataset, graphs).fit(split)
    assert calls == []  # unset: no clipping


def test_grad_clip_in_pretraining(synthetic_env, monkeypatch, tmp_path):
    from benchbase.compute.pretraining import pretrain

    calls = _clip_recorder(monkeypatch)
    raw = {
        "seeds": [0],
        "train": {"pretrain_epochs": 1, "grad_clip": 1e-3, "center_per_graph": True},
        "study": [
            {"datasets": ["synthetic/chains"], "protocols": ["iid"], "encoders": ["tiny"], "pretext": ["tiny-masking"]}
        ],
    }
    run = expand_grid(default_registry(), raw).runs[0]
    stage = run.stage_spec()
    assert stage["train"]["grad_clip"] == 1e-3 and stage["train"]["center_per_graph"] is True
    pretrain(default_registry(), stage, tmp_path / "stage.pt")
    assert calls and all(max_norm == 1e-3 and after <= 1e-3 * 1.01 for max_norm, _, after in calls)


def test_center_per_graph_is_typed():
    import pytest

    from benchbase.contract.errors import GridError

    raw = {
        "seeds": [0],
        "train": {"center_per_graph": "yes"},
        "study": [{"datasets": ["synthetic/chains"], "protocols": ["iid"], "encoders": ["tiny"]}],
    }
    with pytest.raises(GridError, match="center_per_graph"):
        expand_grid(default_registry(), raw)
    assert PROFILES["quick"]["center_per_graph"] is False


def test_center_per_graph_ignores_per_graph_offsets(tmp_path):
    """Centred, the loss of node and edge tasks does not see a constant added to one graph's
    targets; uncentred it does. Predictions then sit around the training mean in every graph."""
    import torch
    from botan_tree import write_botan_tree

    from benchbase.compute.batching import TensorGraphs
    from benchbase_glass.datasets import BotanDataset

    root = write_botan_tree(tmp_path / "data")
    registry = default_registry()
    dataset = BotanDataset(root=str(root), augment=False)
    graphs = TensorGraphs(dataset.arrays())
    losses = {}
    for centred in (False, True):
        raw = {
            "seeds": [0],
            "train": {"epochs": 1, "batch_size": 2, "center_per_graph": centred},
            "params": {
                "dataset": {"glass/botan": {"root": str(root)}},
                "encoder": {"botan": {"hidden": 8, "steps": 1}},
            },
            "study": [{"datasets": ["glass/botan"], "protocols": ["glass-time"], "encoders": ["botan"]}],
        }
        run = expand_grid(registry, raw).runs[0]
        _, _, split = make_split(registry, run.spec, dataset)
        tuner = FineTuner(registry, run, dataset, graphs)
        tuner.fit(split)
        batch = graphs.batch(split["test"])
        shifted = batch.replace(
            targets={
                k: v + 5.0 * batch.edge_batch if k == "bond_motion" else v + 3.0 * batch.batch
                for k, v in batch.targets.items()
            }
        )
        with torch.no_grad():
            losses[centred] = (float(tuner._loss(batch, False)), float(tuner._loss(shifted, False)))
        if centred:
            pred = tuner.predict(split["test"])["propensity"]
            for g in np.unique(pred.graph):
                assert np.isclose(pred.y_pred[pred.graph == g].mean(), tuner.scaler.mean["propensity"], atol=1e-4)
    assert np.isclose(*losses[True], rtol=1e-5)
    assert losses[False][1] > 2 * losses[False][0]


def test_evaluation_rounds_are_checked():
    """The harness runs a task's evaluation rounds only when they select every item exactly once."""
    import pytest
    import torch

    from benchbase.compute.pretext_scores import evaluation_contexts
    from benchbase.contract.api import PluginError, PretextContext

    class Rounds:
        name = "stub"

        def __init__(self, rounds):
            self.rounds = rounds

        def evaluation_rounds(self, batch, generator):
            return self.rounds

    ctx = PretextContext(generator=torch.Generator())
    a, b = torch.tensor([True, False, False]), torch.tensor([False, True, True])
    empty = torch.zeros(3, dtype=torch.bool)
    contexts = evaluation_contexts(Rounds([a, empty, b]), None, ctx)
    assert [n for _, n in contexts] == [1, 2]  # the empty round is skipped
    assert torch.equal(contexts[1][0].selection, b) and contexts[1][0].generator is ctx.generator
    assert evaluation_contexts(Rounds(None), None, ctx) == [(ctx, None)]  # no rounds: one ordinary step
    for bad in ([a, a | b], [a], [a, torch.tensor([False, True])], [a.long(), b.long()]):
        with pytest.raises(PluginError, match="exactly once"):
            evaluation_contexts(Rounds(bad), None, ctx)
