"""Encoders of the molecular plugin: build, forward/backward, invariances, parameter checking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims
from rdkit import Chem
from toy_molecules import SMILES

from benchbase.compute.batching import TensorGraphs
from benchbase.contract.api import FeatureSpec, GraphArrays, PluginError
from benchbase_molecules.encoders import ENCODERS, GIN, PNA, FingerprintMLP, SchNet, dropout

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("module_cache")  # tests/molecules/conftest.py


def small(cls):
    """Small but valid parameters for a quick test of encoder `cls`."""
    params = {}
    if "hidden" in cls.defaults:
        params["hidden"] = 20  # divisible by 4 heads and 5 towers
    if "layers" in cls.defaults:
        params["layers"] = 2
    return params


@pytest.mark.parametrize("cls", ENCODERS, ids=lambda c: c.name)
def test_forward_backward_shapes(cls, toy, batch):
    torch.manual_seed(0)
    enc = cls(toy.features, **small(cls))
    if hasattr(enc, "prepare"):
        enc.prepare(toy)
    emb = enc(batch)
    assert emb.node.shape == (batch.x.shape[0], enc.out_dim)
    assert emb.graph.shape == (batch.num_graphs, enc.out_dim)
    assert torch.isfinite(emb.graph).all()
    (emb.graph.pow(2).mean() + emb.node.pow(2).mean()).backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert sum(p.numel() for p in enc.parameters()) > 0
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("cls", ENCODERS, ids=lambda c: c.name)
def test_batch_independent_and_permutation_invariant(cls, toy):
    """In eval mode a graph's embedding does not depend on its batch-mates or on node order."""
    torch.manual_seed(0)
    enc = cls(toy.features, **small(cls)).eval()
    if hasattr(enc, "prepare"):
        enc.prepare(toy)
    graphs = TensorGraphs(toy.arrays())
    with torch.no_grad():
        together = enc(graphs.batch(np.arange(len(SMILES)))).graph
        alone = torch.cat([enc(graphs.batch(np.array([i]))).graph for i in range(len(SMILES))])
        assert torch.allclose(together, alone, atol=1e-4)
        # Reverse the node order of graph 1 (phenol).
        b = graphs.batch(np.array([1]))
        n = b.x.shape[0]
        perm = torch.arange(n - 1, -1, -1)  # new position i holds old node perm[i]
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n)
        shuffled = b.replace(x=b.x[perm], edge_index=inverse[b.edge_index], pos=None if b.pos is None else b.pos[perm])
        assert torch.allclose(enc(b).graph, enc(shuffled).graph, atol=1e-4)


@pytest.mark.parametrize("cls", ENCODERS, ids=lambda c: c.name)
def test_accepts_mask_tokens(cls, toy, batch):
    """Masking pretext tasks write vocab[j] into every column: each table must have that row."""
    enc = cls(toy.features, **small(cls))
    if hasattr(enc, "prepare"):
        enc.prepare(toy)
    x = torch.tensor(toy.features.node_vocab).expand_as(batch.x).clone()
    e = torch.tensor(toy.features.edge_vocab).expand_as(batch.edge_attr).clone()
    emb = enc(batch.replace(x=x, edge_attr=e))
    assert torch.isfinite(emb.graph).all()


@pytest.mark.parametrize("cls", ENCODERS, ids=lambda c: c.name)
def test_rejects_unknown_parameter(cls, toy):
    with pytest.raises(PluginError, match="unknown parameter"):
        cls(toy.features, widht=3)


def test_gin_defaults_are_hu_et_al(toy):
    enc = GIN(toy.features)
    assert (len(enc.convs), enc.out_dim) == (5, 300)
    assert enc.hparams == {"layers": 5, "hidden": 300, "dropout": 0.5, "pooling": "mean"}


def test_gin_pooling_and_bad_values(toy, batch):
    torch.manual_seed(0)
    sums = GIN(toy.features, hidden=8, layers=2, pooling="sum").eval()
    means = GIN(toy.features, hidden=8, layers=2, pooling="mean").eval()
    maxes = GIN(toy.features, hidden=8, layers=2, pooling="max").eval()
    means.load_state_dict(sums.state_dict())
    maxes.load_state_dict(sums.state_dict())
    with torch.no_grad():
        s, m, x = sums(batch), means(batch), maxes(batch)
    sizes = (batch.ptr[1:] - batch.ptr[:-1]).float().unsqueeze(1)
    assert torch.allclose(s.graph, m.graph * sizes, atol=1e-5)
    assert torch.allclose(x.graph[0], s.node[: batch.ptr[1]].max(0).values)
    with pytest.raises(PluginError, match="pooling"):
        GIN(toy.features, pooling="median")
    with pytest.raises(PluginError, match="layers"):
        GIN(toy.features, layers=0)
    with pytest.raises(PluginError, match="dropout"):
        GIN(toy.features, dropout=1.5)


def test_gin_uses_bond_features(toy, batch):
    """Changing only the bond types changes the embedding (the bond embeddings are wired in)."""
    torch.manual_seed(0)
    enc = GIN(toy.features, hidden=8, layers=2).eval()
    with torch.no_grad():
        a = enc(batch).graph
        b = enc(batch.replace(edge_attr=torch.zeros_like(batch.edge_attr))).graph
    assert not torch.allclose(a, b)


def test_gin_float_features():
    """Float node features (non-molecular datasets) go through a linear input layer."""
    feats = FeatureSpec(node_dim=3, edge_dim=1)
    arrays = GraphArrays(
        node_ptr=np.array([0, 3]),
        edge_ptr=np.array([0, 4]),
        edge_index=np.array([[0, 1, 1, 2], [1, 0, 2, 1]]),
        x=np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32),
        edge_attr=np.ones((4, 1), dtype=np.float32),
    )
    emb = GIN(feats, hidden=8, layers=2)(TensorGraphs(arrays).batch(np.array([0])))
    assert emb.graph.shape == (1, 8)


def reference_hu_gin(enc: GIN, batch, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Hu et al.'s GIN written out the plain way from `enc`'s parameters: per-column lookups summed,
    one bond embedding gathered per edge, ``h_i + self_loop + sum_j (h_j + e_ij)``, MLP, batch norm
    (batch statistics when training, running ones in eval), ReLU but after the last layer, mean pooling."""

    def lookup(table: torch.Tensor, vocab: tuple[int, ...], values: torch.Tensor) -> torch.Tensor:
        offsets = np.cumsum([0] + [v + 1 for v in vocab])[:-1]
        return sum(table[values[:, j] + int(offsets[j])] for j in range(values.shape[1]))

    features = enc.features
    h = lookup(enc.node_embedding.table.weight, features.node_vocab, batch.x)
    src, dst = batch.edge_index
    for i, (conv, norm) in enumerate(zip(enc.convs, enc.norms, strict=True)):
        e = lookup(conv.edge.table.weight, features.edge_vocab, batch.edge_attr)
        agg = h + conv.self_loop + torch.zeros_like(h).index_add(0, dst, h[src] + e)
        first, _, second = conv.mlp
        z = torch.relu(agg @ first.weight.T + first.bias) @ second.weight.T + second.bias
        mean, var = (z.mean(0), z.var(0, unbiased=False)) if training else (norm.running_mean, norm.running_var)
        h = (z - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias
        if i < len(enc.convs) - 1:
            h = torch.relu(h)
    graph = torch.stack([h[batch.ptr[g] : batch.ptr[g + 1]].mean(0) for g in range(batch.num_graphs)])
    return h, graph


def test_gin_equals_reference_computation(toy, batch):
    """The fast GIN (embedding_bag inputs, bond term as counts @ table) computes Hu et al.'s layer:
    outputs match the gather-based reference to 1e-5 in float32, and gradients too in float64 (in
    float32 they differ by rounding, ~1e-4 where the true gradient is 0), mask tokens included."""
    torch.manual_seed(0)
    enc = GIN(toy.features, hidden=16, layers=3, dropout=0.0)
    assert "convs.0.edge.table.weight" in enc.state_dict() and not any("offsets" in k for k in enc.state_dict())
    with torch.no_grad():
        for norm in enc.norms:  # non-trivial affine parameters and running statistics
            norm.weight.uniform_(0.5, 1.5), norm.bias.normal_(), norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    x, e = batch.x.clone(), batch.edge_attr.clone()
    x[::3] = torch.tensor(toy.features.node_vocab)  # mask tokens
    e[::4] = torch.tensor(toy.features.edge_vocab)
    b = batch.replace(x=x, edge_attr=e)
    for dtype in (torch.float32, torch.float64):
        enc.to(dtype)
        for training in (True, False):
            enc.train(training)
            ref_node, ref_graph = reference_hu_gin(enc, b, training)
            out = enc(b)
            assert out.node.dtype == dtype
            assert torch.allclose(out.node, ref_node, atol=1e-5)
            assert torch.allclose(out.graph, ref_graph, atol=1e-5)
            if dtype == torch.float64:
                params = list(enc.parameters())
                ref_grads = torch.autograd.grad(ref_node.pow(2).sum() + ref_graph.sum(), params)
                grads = torch.autograd.grad(out.node.pow(2).sum() + out.graph.sum(), params)
                for g, r in zip(grads, ref_grads, strict=True):
                    assert torch.allclose(g, r, atol=1e-9, rtol=1e-9)


def test_gin_rejects_out_of_range_bond_values(toy, batch):
    """Counting bond values must not let a bad value slip into another column's counts."""
    enc = GIN(toy.features, hidden=8, layers=1)
    for bad in (toy.features.edge_vocab[0] + 1, -1):
        e = batch.edge_attr.clone()
        e[0, 0] = bad
        with pytest.raises(PluginError, match="vocab"):
            enc(batch.replace(edge_attr=e))


def test_dropout_is_inverted_dropout():
    h = torch.ones(4000, 50)
    assert dropout(h, 0.3, False) is h and dropout(h, 0.0, True) is h
    torch.manual_seed(0)
    out = dropout(h, 0.3, True)
    kept = out != 0
    assert torch.allclose(out[kept], torch.tensor(1 / 0.7))
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.01


def test_requirements_declared():
    names = {cls.name: cls for cls in ENCODERS}
    assert sorted(names) == sorted(["gin", "gine", "gcn", "sage", "gatv2", "pna", "gps", "schnet", "fingerprint-mlp"])
    assert "pos" in names["schnet"].requires and "smiles" in names["fingerprint-mlp"].requires
    for cls in ENCODERS:
        assert cls.description and cls.__doc__
        if cls is not FingerprintMLP:
            assert {"layers", "hidden", "dropout", "pooling"} <= set(cls.defaults)


def test_schnet_needs_positions_and_is_rotation_invariant(toy, batch):
    with pytest.raises(PluginError, match="pos"):
        SchNet(FeatureSpec(node_vocab=toy.features.node_vocab))
    enc = SchNet(toy.features, hidden=16, filters=16, layers=2, cutoff=5.0).eval()
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        a = enc(batch).graph
        b = enc(batch.replace(pos=batch.pos @ q.T + 1.5)).graph
        c = enc(batch.replace(pos=batch.pos * 1.3)).graph
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)


def test_pna_prepare_sets_degree_statistics(toy):
    enc = PNA(toy.features, hidden=20, layers=2)
    enc.prepare(toy)
    arrays = toy.arrays()
    degrees = np.concatenate(
        [
            np.bincount(arrays.edge_index[1, arrays.edge_ptr[g] : arrays.edge_ptr[g + 1]], minlength=n)
            for g, n in enumerate(np.diff(arrays.node_ptr))
        ]
    )
    aggr = enc.convs[0].conv.aggr_module
    assert aggr.avg_deg_lin.item() == pytest.approx(degrees.mean())
    assert aggr.avg_deg_log.item() == pytest.approx(np.log(degrees + 1).mean())
    assert "convs.0.conv.aggr_module.avg_deg_log" in enc.state_dict()
    with pytest.raises(PluginError, match="towers"):
        PNA(toy.features, hidden=16)


def test_fingerprint_mlp_reads_smiles_fingerprints(toy, batch, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path))
    enc = FingerprintMLP(toy.features, hidden=20, layers=2).eval()
    with pytest.raises(PluginError, match="prepare"):
        enc(batch)
    enc.prepare(toy)
    from rdkit.Chem import rdFingerprintGenerator

    fp = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048).GetFingerprint(Chem.MolFromSmiles(SMILES[1]))
    assert enc.fingerprints[1].nonzero().squeeze(1).tolist() == list(fp.GetOnBits())
    again = FingerprintMLP(toy.features, hidden=20, layers=2)
    again.prepare(toy)  # from the disk cache
    assert torch.equal(again.fingerprints, enc.fingerprints)
    assert not FingerprintMLP.supports_pretext


def test_input_embedding_gradient_matches_embedding_bag_and_repeats_bit_for_bit(toy, batch):
    """The input embedding's own backward (index_add per column) gives embedding_bag's gradient,
    and the same bits on every call (the run-identity promise needs a deterministic backward)."""
    torch.manual_seed(0)
    enc = GIN(toy.features, hidden=8, layers=1)
    table = enc.node_embedding.table.weight
    ids = batch.x + enc.node_embedding.offsets
    upstream = torch.randn(batch.x.shape[0], 8)
    bag = torch.nn.functional.embedding_bag(ids, table, mode="sum")
    (expected,) = torch.autograd.grad((bag * upstream).sum(), table)
    grads = [torch.autograd.grad((enc.node_embedding(batch.x, len(ids)) * upstream).sum(), table)[0] for _ in range(2)]
    assert torch.allclose(grads[0], expected, atol=1e-5)  # summation order differs: rounding only
    assert torch.equal(grads[0], grads[1])


def test_a_training_batch_of_one_single_atom_molecule_trains():
    """Methane alone in the last training batch (FreeSolv: 513 training graphs in batches of 32):
    nn.BatchNorm1d raises on one row; the encoders' norm uses its running statistics there and
    normalises every larger batch exactly as nn.BatchNorm1d does."""
    from benchbase_molecules.encoders import BatchNorm
    from benchbase_molecules.featurize import featurize_smiles

    features = FeatureSpec(node_vocab=tuple(get_atom_feature_dims()), edge_vocab=tuple(get_bond_feature_dims()))
    graphs = featurize_smiles(["C"])
    arrays = GraphArrays(graphs.node_ptr, graphs.edge_ptr, graphs.edge_index, graphs.node_feat, graphs.edge_feat)
    torch.manual_seed(0)
    enc = GIN(features, layers=2, hidden=16)
    enc.train()
    emb = enc(TensorGraphs(arrays).batch(np.arange(1)))
    emb.graph.sum().backward()
    assert torch.isfinite(emb.graph).all()
    norm, reference = BatchNorm(8), torch.nn.BatchNorm1d(8)
    rows = torch.randn(5, 8)
    assert torch.equal(norm(rows), reference(rows))
    assert torch.equal(norm.running_mean, reference.running_mean)
