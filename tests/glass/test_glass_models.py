"""Glass encoders, the edge-pretraining pretext task, descriptors and plugin registration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchbase.compute.batching import TensorGraphs
from benchbase.contract.api import PretextContext
from benchbase_glass.datasets import BotanDataset
from benchbase_glass.descriptors import descriptor_baseline, particle_descriptors
from benchbase_glass.encoders import BotanEncoder, DescriptorEncoder, GNNNodeEncoder
from benchbase_glass.pretext import EdgePretraining
from benchbase_glass.protocols import GlassTime
from benchbase_glass.simulate import ka_pair_energy

ROOT = Path(__file__).resolve().parents[2]
BOTAN_SMALL = ROOT.parent / "shared" / "data" / "botan_small" / "small_data"
needs_botan = pytest.mark.skipif(not BOTAN_SMALL.is_dir(), reason=f"botan_small not found at {BOTAN_SMALL}")


@pytest.fixture(scope="module")
def botan_two():
    """One train and one test configuration of the real botan_small data (N = 4096)."""
    ds = BotanDataset(root=str(BOTAN_SMALL), max_configs=1)
    return ds, TensorGraphs(ds.arrays())


@needs_botan
@pytest.mark.slow
def test_botan_forward_backward_on_real_graph(botan_two):
    torch.manual_seed(0)
    ds, graphs = botan_two
    batch = graphs.batch(np.array([0]))
    encoder = BotanEncoder(ds.features, hidden=16, steps=2)
    emb = encoder(batch)
    assert emb.node.shape == (4096, 16) and emb.edge.shape == (batch.edge_index.shape[1], 16)
    assert emb.graph.shape == (1, 16)
    head = torch.nn.Linear(16, 1)
    loss = ((head(emb.node).squeeze(-1) - batch.targets["propensity"]) ** 2).mean()
    loss = loss + ((head(emb.edge).squeeze(-1) - batch.targets["bond_motion"]) ** 2).mean()
    loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # B particles look different from A ones: the type input reaches the embedding
    x = batch.x[:, 0]
    assert not torch.allclose(emb.node[x == 0].mean(0), emb.node[x == 1].mean(0))


@needs_botan
def test_gnn_node_returns_no_edge_latents(botan_two):
    ds, graphs = botan_two
    emb = GNNNodeEncoder(ds.features, hidden=8, steps=1)(graphs.batch(np.array([1])))
    assert emb.edge is None and emb.node.shape == (4096, 8)


@needs_botan
def test_edge_pretraining_step(botan_two):
    torch.manual_seed(0)
    ds, graphs = botan_two
    task = EdgePretraining()
    task.prepare(ds, np.array([1]))  # statistics of the pool's BOTAN rows only
    a = ds.arrays()
    rows = slice(a.edge_ptr[1], a.edge_ptr[2])
    labelled = a.targets["bond_motion"][rows][a.target_masks["bond_motion"][rows]]
    assert task.mean == pytest.approx(labelled.mean(), rel=1e-5) and task.std == pytest.approx(labelled.std(), rel=1e-4)
    batch = graphs.batch(np.array([1]))
    ctx = PretextContext(generator=torch.Generator().manual_seed(0))
    for cls in (BotanEncoder, GNNNodeEncoder):
        encoder = cls(ds.features, hidden=8, steps=1)
        head = task.build_head(encoder)
        out = task.step(encoder, head, batch, ctx)
        assert out.logits is None and out.loss is not None
        emb = encoder(batch)
        pred = head(emb, batch)[batch.target_masks["bond_motion"]]
        target = (batch.targets["bond_motion"][batch.target_masks["bond_motion"]] - task.mean) / task.std
        assert out.loss.item() == pytest.approx(torch.mean((pred - target) ** 2).item(), rel=1e-5)
        out.loss.backward()
        # (botan's last node update does not reach the edge output, so not every parameter has a grad)
        assert encoder.node_embed.weight.grad is not None and encoder.edge_in[0].weight.grad.abs().sum() > 0
        assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)
    with pytest.raises(Exception, match="edge target"):
        EdgePretraining(target="propensity").prepare(ds, np.array([1]))


def test_descriptors_energy_matches_brute_force():
    rng = np.random.default_rng(0)
    n, box = 200, (200 / 1.2) ** (1 / 3)
    pos = rng.uniform(0, box, (n, 3))
    types = (rng.uniform(size=n) < 0.2).astype(np.int64)
    feats = particle_descriptors(pos, types, np.full(3, box), [1.0, 1.5])
    d = pos[None] - pos[:, None]
    d -= box * np.round(d / box)
    r = np.sqrt((d**2).sum(-1))
    np.fill_diagonal(r, np.inf)
    pair = ka_pair_energy(r, types[:, None], types[None, :])
    energy = 0.5 * pair.sum(1)
    np.testing.assert_allclose(feats[:, 0], energy, rtol=1e-10, atol=1e-10)
    within = r < 1.5
    np.testing.assert_allclose(feats[:, 5], within.sum(1))  # columns: E, (Ebar, n, nB) per radius
    np.testing.assert_allclose(feats[:, 6], (within & (types[None] == 1)).sum(1))
    np.testing.assert_allclose(feats[:, 4], (energy + (within * energy[None]).sum(1)) / (within.sum(1) + 1))


@needs_botan
def test_descriptor_encoder_and_baseline(botan_two):
    ds, graphs = botan_two
    encoder = DescriptorEncoder(ds.features)
    encoder.prepare(ds)
    emb = encoder(graphs.batch(np.array([1, 0])))
    assert emb.node.shape == (8192, encoder.out_dim) and emb.edge is None
    split = {"train": np.array([1]), "test": np.array([0])}
    result = descriptor_baseline(ds, split)
    # structure predicts dynamics at T = 0.44: clearly positive, far from perfect
    assert 0.1 < result["test_pearson_per_graph"] < 0.8


def test_plugin_registers_everything():
    from benchbase.contract.registry import load_registry

    registry = load_registry()
    assert {"glass/botan", "glass/glassbench", "glass/ka-small"} <= set(registry.names("dataset"))
    assert {"botan", "gnn-node", "glass-descriptors"} <= set(registry.names("encoder"))
    assert "edge-pretraining" in registry.names("pretext")
    assert {"glass-time", "glass-temperature-transfer"} <= set(registry.names("protocol"))
    assert registry.get("protocol", "glass-time").obj is GlassTime
