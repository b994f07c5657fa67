"""Cube-symmetry augmentation of glass graphs: the group, what it changes, and where it applies."""

from __future__ import annotations

import numpy as np
import torch
from botan_tree import write_botan_tree

from benchbase.compute.batching import TensorGraphs
from benchbase.contract.registry import default_registry
from benchbase_glass.datasets import BotanDataset
from benchbase_glass.symmetry import CUBE_SYMMETRIES, augment_batch, draw_symmetries


def _graphs(tmp_path, **params):
    ds = BotanDataset(root=str(write_botan_tree(tmp_path / "data")), **params)
    return ds, TensorGraphs(ds.arrays())


def test_48_distinct_orthogonal_signed_permutations():
    mats = CUBE_SYMMETRIES
    assert mats.shape == (48, 3, 3)
    assert len({tuple(m.flatten().tolist()) for m in mats}) == 48
    eye = torch.eye(3).expand(48, 3, 3)
    assert torch.equal(mats @ mats.transpose(1, 2), eye)
    assert torch.equal(mats.abs().sum(1), torch.ones(48, 3)) and torch.equal(mats.abs().sum(2), torch.ones(48, 3))
    # a group: closed under products
    keys = {tuple(m.flatten().tolist()) for m in mats}
    assert all(tuple((a @ b).flatten().tolist()) in keys for a in mats[::7] for b in mats)


def test_every_element_is_reachable():
    generator = torch.Generator().manual_seed(0)
    drawn = draw_symmetries(5000, generator)
    assert set(drawn.tolist()) == set(range(48))


def test_lengths_preserved_and_one_symmetry_per_graph(tmp_path):
    _, graphs = _graphs(tmp_path)
    batch = graphs.batch(np.array([0, 1, 2]))
    out = augment_batch(batch, torch.Generator().manual_seed(3))
    assert torch.allclose(out.edge_attr.norm(dim=1), batch.edge_attr.norm(dim=1))
    assert not torch.equal(out.edge_attr, batch.edge_attr)
    for g in range(batch.num_graphs):  # the same matrix for all edges of a graph: solve for it
        rows = batch.edge_batch == g
        sym, *_ = torch.linalg.lstsq(batch.edge_attr[rows], out.edge_attr[rows])
        assert torch.allclose(sym.T.round(), sym.T, atol=1e-4)
        assert any(torch.allclose(sym.T, m, atol=1e-4) for m in CUBE_SYMMETRIES)
    # targets, graph and types untouched; the original batch is not changed in place
    assert torch.equal(out.edge_index, batch.edge_index) and torch.equal(out.x, batch.x)
    assert out.targets is batch.targets
    assert torch.equal(batch.edge_attr, graphs.batch(np.array([0, 1, 2])).edge_attr)


def test_deterministic_for_a_seed(tmp_path):
    ds, graphs = _graphs(tmp_path)
    batch = graphs.batch(np.array([0, 1]))
    a = ds.augment(batch, torch.Generator().manual_seed(7)).edge_attr
    b = ds.augment(batch, torch.Generator().manual_seed(7)).edge_attr
    c = ds.augment(batch, torch.Generator().manual_seed(8)).edge_attr
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_parameter_turns_it_off(tmp_path):
    ds, graphs = _graphs(tmp_path, augment=False)
    batch = graphs.batch(np.array([0]))
    assert ds.augment(batch, torch.Generator().manual_seed(0)) is batch
    spec = default_registry().get("dataset", "glass/botan").param_spec
    assert spec["augment"].default is True


def test_evaluation_batches_are_never_augmented(tmp_path, monkeypatch):
    """The harness calls `augment` on training batches only: predictions on any slice are the
    same whether the dataset augments or not, for the same trained weights."""
    from benchbase.compute.finetuning import FineTuner
    from benchbase.compute.pretraining import make_split
    from benchbase.running.planning import expand_grid

    root = write_botan_tree(tmp_path / "data")
    calls = []
    original = BotanDataset.augment

    def counting(self, batch, generator):
        calls.append(batch.num_graphs)
        return original(self, batch, generator)

    monkeypatch.setattr(BotanDataset, "augment", counting)
    raw = {
        "seeds": [0],
        "train": {"epochs": 1, "batch_size": 1},
        "params": {"dataset": {"glass/botan": {"root": str(root)}}, "encoder": {"botan": {"hidden": 8, "steps": 1}}},
        "study": [{"datasets": ["glass/botan"], "protocols": ["glass-time"], "encoders": ["botan"]}],
    }
    registry = default_registry()
    run = expand_grid(registry, raw).runs[0]
    ds = BotanDataset(root=str(root))
    graphs = TensorGraphs(ds.arrays())
    _, _, split = make_split(registry, run.spec, ds)
    tuner = FineTuner(registry, run, ds, graphs)
    tuner.fit(split)
    assert len(calls) == len(split["train"])  # one call per training batch of one graph
    calls.clear()
    first = tuner.predict(split["test"])
    tuner._evaluate_loss(split["valid"])
    assert calls == []
    ds.symmetry_augment = False
    second = tuner.predict(split["test"])
    for name in first:
        assert np.array_equal(first[name].y_pred, second[name].y_pred)
