"""Pretext tasks of the molecular plugin, on real molecules featurised the OGB way."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from rdkit import Chem
from toy_molecules import SMILES, ToyMolecules

from benchbase.compute.batching import TensorGraphs
from benchbase.contract.api import GraphArrays, PluginError, PretextContext
from benchbase_molecules.encoders import GIN
from benchbase_molecules.motifs import FUNCTIONAL_GROUPS, GRAPH_PATTERNS
from benchbase_molecules.pretext import (
    PRETEXT_TASKS,
    ContextPrediction,
    EdgeMasking,
    GraphCL,
    GraphPattern,
    Motif,
    NodeMasking,
    hop_distance,
    induced_subbatch,
    nt_xent,
    sample_per_graph,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.usefixtures("module_cache")  # tests/molecules/conftest.py


def gin(toy):
    torch.manual_seed(0)
    return GIN(toy.features, hidden=16, layers=2)


class Recorder(torch.nn.Module):
    """Wraps an encoder and keeps the (corrupted) batch it was given."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.out_dim, self.seen = encoder, encoder.out_dim, []

    def forward(self, batch):
        self.seen.append(batch)
        return self.encoder(batch)


def ctx(seed=0, weights=None, training=True):
    return PretextContext(generator=torch.Generator().manual_seed(seed), selection_weights=weights, training=training)


def test_node_masking_counts_are_element_counts(toy):
    task = NodeMasking()
    pool = np.array([0, 2, 5])
    task.prepare(toy, pool)
    expected = Counter(a.GetSymbol() for i in pool for a in Chem.MolFromSmiles(SMILES[i]).GetAtoms())
    names = task.class_names()
    counts = task.class_counts()
    assert len(names) == len(counts) == 119
    assert names[:6] == ["H", "He", "Li", "Be", "B", "C"]
    assert {names[i]: int(c) for i, c in enumerate(counts) if c} == dict(expected)


def test_node_masking_step_masks_and_targets(toy):
    task = NodeMasking(mask_rate=0.15)
    task.prepare(toy, np.arange(len(SMILES)))
    graphs = TensorGraphs(toy.arrays())
    batch = graphs.batch(np.arange(len(SMILES)))
    enc = Recorder(GIN(toy.features, hidden=16, layers=2))
    head = task.build_head(enc)
    out = task.step(enc, head, batch, ctx())
    corrupted = enc.seen[-1].x
    masked = (corrupted != batch.x).any(1) | (corrupted == torch.tensor(toy.features.node_vocab)).all(1)
    assert (corrupted[masked] == torch.tensor(toy.features.node_vocab)).all()  # every column -> mask token
    assert (corrupted[~masked] == batch.x[~masked]).all()
    sizes = (batch.ptr[1:] - batch.ptr[:-1]).numpy()
    per_graph = np.bincount(batch.batch[masked].numpy(), minlength=len(sizes))
    assert (per_graph == np.maximum(1, np.round(0.15 * sizes))).all()
    assert torch.equal(out.targets, batch.x[masked, 0])
    assert out.logits.shape == (int(masked.sum()), 119) and not out.multilabel and out.loss is None
    torch.nn.functional.cross_entropy(out.logits, out.targets).backward()
    # Same seed -> same mask, another seed -> (here) another mask.
    again = task.choose(batch, ctx(0))
    assert torch.equal(again, task.choose(batch, ctx(0)))
    assert any(not torch.equal(again, task.choose(batch, ctx(s))) for s in range(1, 5))


def test_selection_weights_bias_the_masked_elements():
    """Atoms are drawn with probability proportional to their class weight (masked-resampling)."""
    # 20000 copies of ethanol's heavy atoms C, C, O; one atom masked per copy.
    copies = 20000
    group = torch.arange(copies).repeat_interleave(3)
    sizes = torch.full((copies,), 3)
    classes = torch.tensor([5, 5, 7]).repeat(copies)
    gen = torch.Generator().manual_seed(0)
    uniform = sample_per_graph(group, sizes, 0.15, gen)
    assert uniform.sum() == copies
    assert abs(float((classes[uniform] == 7).float().mean()) - 1 / 3) < 0.02
    weights = torch.zeros(119)
    weights[5], weights[7] = 1.0, 2.0
    chosen = sample_per_graph(group, sizes, 0.15, gen, weights[classes])
    assert abs(float((classes[chosen] == 7).float().mean()) - 0.5) < 0.02
    # Zero weight is drawn only when nothing else is left: k = 2 of (C, C, O) with C weight 0.
    weights[5] = 0.0
    two = sample_per_graph(group, sizes, 0.67, gen, weights[classes])
    assert (two.view(copies, 3).sum(1) == 2).all() and two.view(copies, 3)[:, 2].all()


def test_node_masking_uses_context_weights(toy):
    task = NodeMasking()
    task.prepare(toy, np.arange(len(SMILES)))
    batch = TensorGraphs(toy.arrays()).batch(np.arange(len(SMILES)))
    weights = torch.full((119,), 1e-6)
    weights[8] = 1.0  # fluorine
    masked = task.choose(batch, ctx(weights=weights))
    fluorinated = 4  # FC(F)(F)C#N: 6 atoms, round(0.9) = 1 masked, and it is a fluorine
    rows = masked & (batch.batch == fluorinated)
    assert batch.x[rows, 0].tolist() == [8]
    with pytest.raises(PluginError, match="selection weights"):
        task.choose(batch, ctx(weights=torch.ones(5)))


def test_node_masking_evaluation_rounds_mask_every_atom_once(toy, batch):
    """Held-out evaluation: every atom in exactly one round, each round masking per graph the
    count a training step masks (max(1, round(rate * n)), the last one possibly fewer); the same
    rounds for a seed; a step given a round masks and predicts exactly its atoms."""
    task = NodeMasking(mask_rate=0.15)
    task.prepare(toy, np.arange(len(SMILES)))
    rounds = task.evaluation_rounds(batch, torch.Generator().manual_seed(0))
    assert (torch.stack(rounds).sum(0) == 1).all()
    sizes = (batch.ptr[1:] - batch.ptr[:-1]).numpy()
    k = np.maximum(1, np.round(0.15 * sizes))
    per_round = np.stack([np.bincount(batch.batch[m].numpy(), minlength=len(sizes)) for m in rounds])
    assert (per_round <= k).all() and (per_round.max(0) == k).all()
    assert len(rounds) == int(np.ceil(sizes / k).max())
    again = task.evaluation_rounds(batch, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(rounds, again, strict=True))
    other = task.evaluation_rounds(batch, torch.Generator().manual_seed(1))
    assert any(not torch.equal(a, b) for a, b in zip(rounds, other, strict=False))
    enc = Recorder(gin(toy))
    head = task.build_head(enc)
    targets = []
    for mask in rounds:
        out = task.step(enc, head, batch, PretextContext(generator=torch.Generator(), training=False, selection=mask))
        corrupted = enc.seen[-1].x
        assert (corrupted[mask] == torch.tensor(toy.features.node_vocab)).all()
        assert (corrupted[~mask] == batch.x[~mask]).all()
        assert torch.equal(out.targets, batch.x[mask, 0]) and torch.equal(out.item_graph, batch.batch[mask])
        targets += out.targets.tolist()
    assert Counter(targets) == Counter(batch.x[:, 0].tolist())  # every atom scored once
    with pytest.raises(PluginError, match="bool mask over the batch's"):
        task.choose(batch, PretextContext(generator=torch.Generator(), selection=rounds[0][:-1]))


def test_edge_masking_evaluation_rounds_mask_every_bond_once(toy, batch):
    task = EdgeMasking()
    task.prepare(toy, np.arange(len(SMILES)))
    rounds = task.evaluation_rounds(batch, torch.Generator().manual_seed(0))
    _, first, bond_graph, sizes = task.bonds(batch)
    assert (torch.stack(rounds).sum(0) == 1).all() and len(rounds[0]) == len(first)
    enc = Recorder(gin(toy))
    head = task.build_head(enc)
    targets = []
    for mask in rounds:
        out = task.step(enc, head, batch, PretextContext(generator=torch.Generator(), training=False, selection=mask))
        masked_edges = (enc.seen[-1].edge_attr == torch.tensor(toy.features.edge_vocab)).all(1)
        assert int(masked_edges.sum()) == 2 * int(mask.sum())  # both directions of each selected bond
        assert len(out.targets) == int(mask.sum())
        targets += out.targets.tolist()
    assert Counter(targets) == Counter(batch.edge_attr[first, 0].tolist())


def test_rounds_per_graph_cover_groups_of_any_size():
    from benchbase_molecules.pretext import rounds_per_graph

    sizes = torch.tensor([0, 1, 2, 9, 10, 23, 40])
    group = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    shuffled = group[torch.randperm(len(group), generator=torch.Generator().manual_seed(0))]
    for g in (group, shuffled):
        rounds = rounds_per_graph(g, sizes, 0.15, torch.Generator().manual_seed(3))
        assert (torch.stack(rounds).sum(0) == 1).all()
        per_round = torch.stack([torch.bincount(g[m], minlength=len(sizes)) for m in rounds])
        assert per_round.sum(0).tolist() == sizes.tolist()
        assert per_round.max(0).values.tolist() == [0, 1, 1, 1, 2, 3, 6]
    assert (
        rounds_per_graph(torch.zeros(0, dtype=torch.long), torch.zeros(3, dtype=torch.long), 0.15, torch.Generator())
        == []
    )


def test_parameters_are_checked():
    with pytest.raises(PluginError, match="unknown parameter"):
        NodeMasking(rate=0.2)
    with pytest.raises(PluginError, match="mask_rate"):
        NodeMasking(mask_rate=0.0)


@pytest.mark.slow
def test_node_masking_on_real_qm9_subset(tmp_path_factory):
    from benchbase.contract.registry import load_registry

    registry = load_registry()
    names = [n for n in registry.names("dataset") if n.startswith("qm9")]
    if not names:
        pytest.skip("no qm9 dataset registered yet")
    dataset = registry.get("dataset", names[0]).obj(subset=200)
    task = NodeMasking()
    pool = np.arange(dataset.arrays().num_graphs)
    task.prepare(dataset, pool)
    counts = dict(zip(task.class_names(), task.class_counts(), strict=True))
    assert counts["C"] > counts["O"] > 0 and counts["C"] > counts["N"]
    assert sum(counts.values()) == int(dataset.arrays().node_ptr[-1])
    batch = TensorGraphs(dataset.arrays()).batch(pool[:64])
    enc = GIN(dataset.features, hidden=16, layers=2)
    out = task.step(enc, task.build_head(enc), batch, ctx())
    assert out.logits.shape[0] == out.targets.shape[0] >= 64


def test_held_out_evaluation_scores_every_atom_once(tmp_path):
    """`evaluate_pretext` on real QM9 molecules: every atom of every test graph is scored exactly
    once (one item per atom, its true element), and the result is the same on a second call."""
    from benchbase.compute.loading import dataset_tensors
    from benchbase.compute.pretext_scores import evaluate_pretext
    from benchbase.compute.pretraining import make_split, pretrain
    from benchbase.contract.registry import default_registry
    from benchbase.running.planning import expand_grid

    registry = default_registry()
    if "qm9/homo_lumo_gap" not in registry.names("dataset"):
        pytest.skip("no qm9 dataset registered")
    raw = {
        "seeds": [0],
        "train": {"pretrain_epochs": 1, "batch_size": 32, "pretrain_pool": "train"},
        "params": {"dataset": {"qm9/homo_lumo_gap": {"subset": 200}}, "encoder": {"gin": {"layers": 2, "hidden": 16}}},
        "study": [
            {
                "datasets": ["qm9/homo_lumo_gap"],
                "protocols": ["imbalance"],
                "encoders": ["gin"],
                "pretext": ["node-masking"],
            }
        ],
    }
    run = expand_grid(registry, raw).runs[0]
    dataset, graphs = dataset_tensors(registry, *run.component("dataset"))
    protocol, _, split = make_split(registry, run.spec, dataset)
    pool = protocol.pretrain_pool(split, "train")
    checkpoint = tmp_path / "stage.pt"
    pretrain(registry, run.stage_spec(), checkpoint)
    test = split["test"]
    labels, names = evaluate_pretext(registry, run, dataset, graphs, checkpoint, test, pool)
    arrays = dataset.arrays()
    sizes = arrays.node_ptr[test + 1] - arrays.node_ptr[test]
    assert len(labels.y_true) == sizes.sum()
    np.testing.assert_array_equal(np.bincount(labels.graph, minlength=len(arrays.node_ptr) - 1)[test], sizes)
    for g in test[:20]:  # each graph's items are its atoms' elements
        atoms = np.asarray(arrays.x)[arrays.node_ptr[g] : arrays.node_ptr[g + 1], 0]
        assert sorted(labels.y_true[labels.graph == g].astype(int).tolist()) == sorted(atoms.tolist())
    again, _ = evaluate_pretext(registry, run, dataset, graphs, checkpoint, test, pool)
    for field in ("y_true", "y_pred", "graph"):
        np.testing.assert_array_equal(getattr(labels, field), getattr(again, field))
    report = protocol.report_pretext(labels, names)
    elements = Counter(names[c] for c in labels.y_true.astype(int))
    assert {k: report[f"pretext_n_{k}"] for k in elements} == dict(elements)


def test_registered_tasks():
    assert [t.name for t in PRETEXT_TASKS] == [
        "node-masking",
        "edge-masking",
        "graph-pattern",
        "motif",
        "context-prediction",
        "graphcl",
    ]


def test_graph_pattern_labels(toy, batch):
    task = GraphPattern()
    pool = np.arange(len(SMILES))
    task.prepare(toy, pool)
    names = task.class_names()
    assert names == GRAPH_PATTERNS and len(set(names)) == len(names) >= 25

    def has(i):
        return {n for n, v in zip(names, task.labels[i], strict=True) if v}

    assert {"acyclic", "path_--", "chain_3"} <= has(0) and not has(0) & {"ring_3", "ring_6", "bond_double"}  # CCO
    assert {"ring_6", "ring_aromatic", "bond_aromatic", "path_::", "path_-:", "branch_3"} <= has(1)  # phenol
    assert {"ring_3", "branch_3"} <= has(3) and "ring_aromatic" not in has(3)  # C1CC1Cl
    assert {"bond_triple", "branch_4", "path_-#", "terminal_3"} <= has(4)  # FC(F)(F)C#N
    assert (task.class_counts() == task.labels[pool].sum(0)).all()
    # Element-agnostic: swapping every element for carbon or silicon changes no label.
    from benchbase_molecules.motifs import graph_patterns

    for smi, other in [("C1CC1Cl", "C1CC1C"), ("OC1CCCCC1S", "[SiH3]C1CCCCC1[SiH3]")]:
        assert (graph_patterns(Chem.MolFromSmiles(smi)) == graph_patterns(Chem.MolFromSmiles(other))).all()
    enc = gin(toy)
    out = task.step(enc, task.build_head(enc), batch, ctx())
    assert out.multilabel and out.logits.shape == out.targets.shape == (len(SMILES), len(names))
    assert torch.equal(out.targets, torch.tensor(task.labels, dtype=torch.float32))


def test_motif_functional_groups_and_brics(toy, batch):
    task = Motif()
    task.prepare(toy, np.arange(len(SMILES)))
    names = task.class_names()
    assert names == FUNCTIONAL_GROUPS and len(names) == 85 and all(n.startswith("fr_") for n in names)
    labels = dict(zip(names, task.labels.T, strict=True))
    assert labels["fr_phenol"].tolist() == [0, 1, 0, 0, 0, 0]
    assert labels["fr_amide"][2] == 1 and labels["fr_nitrile"][4] == 1 and labels["fr_halogen"][3] == 1
    assert labels["fr_SH"][5] == 1
    assert task.class_counts().sum() == task.labels.sum()
    both = Motif(brics=10, brics_min_count=1)
    both.prepare(toy, np.arange(len(SMILES)))
    extra = both.class_names()[85:]
    assert extra and all(n.startswith("brics:") for n in extra)
    assert both.labels.shape == (len(SMILES), len(both.class_names()))
    with pytest.raises(PluginError, match="functional_groups"):
        Motif(functional_groups=False)
    enc = gin(toy)
    out = task.step(enc, task.build_head(enc), batch, ctx())
    assert out.logits.shape == (len(SMILES), 85)


def test_edge_masking(toy, batch):
    task = EdgeMasking()
    task.prepare(toy, np.arange(len(SMILES)))
    bond_counts = Counter(str(b.GetBondType()).lower() for s in SMILES for b in Chem.MolFromSmiles(s).GetBonds())
    assert {n: int(c) for n, c in zip(task.class_names(), task.class_counts(), strict=True) if c} == dict(bond_counts)
    enc = Recorder(gin(toy))
    out = task.step(enc, task.build_head(enc), batch, ctx())
    corrupted = enc.seen[-1].edge_attr
    masked = (corrupted == torch.tensor(toy.features.edge_vocab)).all(1)
    assert (corrupted[~masked] == batch.edge_attr[~masked]).all()
    # Both directions of a masked bond are masked.
    pairs = {tuple(e) for e in batch.edge_index[:, masked].t().tolist()}
    assert all((b, a) in pairs for a, b in pairs)
    bonds_per_graph = np.bincount(batch.batch[batch.edge_index[0]].numpy(), minlength=len(SMILES)) // 2
    masked_per_graph = np.bincount(batch.batch[batch.edge_index[0, masked]].numpy(), minlength=len(SMILES)) // 2
    assert (masked_per_graph == np.maximum(1, np.round(0.15 * bonds_per_graph))).all()
    assert out.targets.shape[0] == masked_per_graph.sum() and out.logits.shape[1] == 5
    # Targets are the true bond types of the masked bonds (each bond counted once, not per direction).
    per_direction = Counter(batch.edge_attr[masked, 0].tolist())
    assert Counter(out.targets.tolist()) == Counter({t: c // 2 for t, c in per_direction.items()})


def test_hop_distance_matches_rdkit(toy, batch):
    sizes = batch.ptr[1:] - batch.ptr[:-1]
    centres = batch.ptr[:-1] + torch.minimum(torch.tensor(2), sizes - 1)
    dist = hop_distance(batch, centres, max_hops=10)
    for g, smi in enumerate(SMILES):
        matrix = Chem.GetDistanceMatrix(Chem.MolFromSmiles(smi))
        local = int(centres[g] - batch.ptr[g])
        assert dist[batch.ptr[g] : batch.ptr[g + 1]].tolist() == matrix[local].astype(int).tolist()


def test_context_prediction(toy):
    bigger = ToyMolecules(["CCCCCCO", "c1ccccc1CCN", "CC(C)CC(=O)OCC", "OCCCCCCl", "N#CCCCC(F)F"])
    batch = TensorGraphs(bigger.arrays()).batch(np.arange(5))
    task = ContextPrediction()
    task.prepare(bigger, np.arange(5))
    assert task.class_counts().tolist() == [5, 5]
    enc = gin(bigger)
    head = task.build_head(enc)
    out = task.step(enc, head, batch, ctx())
    n = out.targets.shape[0] // 2
    assert n >= 4 and out.targets.tolist() == [1] * n + [0] * n and out.logits.shape == (2 * n, 2)
    assert (out.logits[:, 0] == 0).all()
    torch.nn.functional.cross_entropy(out.logits, out.targets).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.context_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    with pytest.raises(PluginError, match="r1"):
        ContextPrediction(k=1, r1=2, r2=4)


def test_induced_subbatch_is_a_valid_batch(toy, batch):
    keep = torch.ones(batch.x.shape[0], dtype=torch.bool)
    keep[batch.ptr[1:-1]] = False  # drop the first atom of graphs 1..5
    sub = induced_subbatch(batch, keep)
    assert sub.x.shape[0] == int(keep.sum()) and sub.edge_index.max() < sub.x.shape[0]
    assert (sub.batch[sub.edge_index[0]] == sub.batch[sub.edge_index[1]]).all()
    assert (sub.ptr[1:] - sub.ptr[:-1]).tolist() == torch.bincount(sub.batch, minlength=6).tolist()
    # Same embedding as the same atoms (same features) and bonds built into a graph by hand.
    enc = gin(toy).eval()
    sub0 = induced_subbatch(batch, torch.arange(batch.x.shape[0]) != 0)
    ethanol = batch.edge_index[:, (batch.edge_index < 3).all(0) & (batch.edge_index > 0).all(0)]
    by_hand = GraphArrays(
        node_ptr=np.array([0, 2]),
        edge_ptr=np.array([0, ethanol.shape[1]]),
        edge_index=(ethanol - 1).numpy(),
        x=batch.x[1:3].numpy(),
        edge_attr=batch.edge_attr[(batch.edge_index < 3).all(0) & (batch.edge_index > 0).all(0)].numpy(),
    )
    with torch.no_grad():
        direct = enc(TensorGraphs(by_hand).batch(np.array([0]))).graph[0]
        assert torch.allclose(enc(sub0).graph[0], direct, atol=1e-5)


def test_graphcl(toy, batch):
    task = GraphCL()
    assert not task.class_labelled
    task.prepare(toy, np.arange(len(SMILES)))
    gen = torch.Generator().manual_seed(0)
    dropped = task.augment(batch, "node-drop", gen)
    kept = (dropped.ptr[1:] - dropped.ptr[:-1]).numpy()
    sizes = (batch.ptr[1:] - batch.ptr[:-1]).numpy()
    assert (kept >= 1).all() and (kept == sizes - np.minimum(np.round(0.2 * sizes), sizes - 1)).all()
    no_edges = task.augment(batch, "edge-drop", gen)
    pairs = {tuple(e) for e in no_edges.edge_index.t().tolist()}
    assert no_edges.edge_index.shape[1] < batch.edge_index.shape[1] and all((b, a) in pairs for a, b in pairs)
    masked = task.augment(batch, "attr-mask", gen)
    assert (masked.x == torch.tensor(toy.features.node_vocab)).all(1).sum() > 0
    enc = gin(toy)
    out = task.step(enc, task.build_head(enc), batch, ctx())
    assert out.logits is None and out.loss.dim() == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    with pytest.raises(PluginError, match="augmentations"):
        GraphCL(augmentations=["rotate"])


def test_nt_xent_formula():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, generator=gen, dtype=torch.float64), torch.randn(3, 4, generator=gen, dtype=torch.float64)
    t = 0.5
    z = [v / v.norm() for v in list(a) + list(b)]
    total = 0.0
    for i in range(6):
        twin = (i + 3) % 6
        num = float(torch.exp(z[i] @ z[twin] / t))
        den = sum(float(torch.exp(z[i] @ z[k] / t)) for k in range(6) if k != i)
        total += -np.log(num / den)
    assert nt_xent(a, b, t).item() == pytest.approx(total / 6)
