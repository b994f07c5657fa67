"""BOTAN's edge output must learn within-configuration variation of an edge target.

The bug this guards against (issue 13): on botan_small the bond-motion output reached a per-graph
Pearson r of ~0 because the per-configuration level of bond motion, which the structure cannot
predict, dominated the MSE; the edge output fitted each configuration's mean and nothing within a
configuration. Here a small glass-like system has an edge target that is a known function of the
pair vector plus a large random offset per graph: trained by the harness with ``center_per_graph``,
BOTAN's edge output must rank the pairs of unseen graphs well; trained on the raw targets, the same
budget must not (so that this test fails when the centring stops working).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botan_tree import write_botan_tree

from benchbase.compute.batching import TensorGraphs
from benchbase.compute.finetuning import FineTuner
from benchbase.contract.api import Dataset, GraphArrays, Predictions
from benchbase.contract.registry import default_registry
from benchbase.running.planning import expand_grid
from benchbase_glass.datasets import EDGE_TASK, FEATURES, NODE_TASK, PROVIDES
from benchbase_glass.metrics import per_graph_r
from benchbase_glass.targets import minimum_image, neighbour_pairs

N, BOX, GRAPHS = 60, 4.2, 36
OFFSET_SCALE = 4.0  # per-graph offset std, against a within-graph std of ~0.5


def edge_function(rel: np.ndarray) -> np.ndarray:
    """The known edge target: a non-monotonic function of the pair distance."""
    return np.sin(4.0 * np.linalg.norm(rel, axis=-1))


class SyntheticGlass(Dataset):
    """Random particles of two types in a periodic box; targets a known structure + offsets."""

    name = "synthetic/glass"
    tasks = [NODE_TASK, EDGE_TASK]
    features = FEATURES
    provides = PROVIDES

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        xs, eis, rels, props, bonds = [], [], [], [], []
        node_ptr, edge_ptr = [0], [0]
        for _ in range(GRAPHS):
            pos = rng.uniform(0, BOX, (N, 3))
            ei = neighbour_pairs(pos, BOX, 2.0)
            rel = minimum_image(pos[ei[1]] - pos[ei[0]], BOX)
            degree = np.bincount(ei[0], minlength=N).astype(float)
            xs.append((rng.uniform(size=N) < 0.2).astype(np.int64)[:, None])
            eis.append(ei)
            rels.append(rel.astype(np.float32))
            props.append((degree - degree.mean()) / 3.0 + OFFSET_SCALE * rng.normal())
            bonds.append(edge_function(rel) + OFFSET_SCALE * rng.normal())
            node_ptr.append(node_ptr[-1] + N)
            edge_ptr.append(edge_ptr[-1] + ei.shape[1])
        self._arrays = GraphArrays(
            node_ptr=np.array(node_ptr),
            edge_ptr=np.array(edge_ptr),
            edge_index=np.concatenate(eis, axis=1),
            x=np.concatenate(xs),
            edge_attr=np.concatenate(rels),
            targets={"propensity": np.concatenate(props), "bond_motion": np.concatenate(bonds)},
        )

    def arrays(self) -> GraphArrays:
        return self._arrays

    def ids(self) -> np.ndarray:
        return np.arange(GRAPHS)


def _edge_r(tmp_path, centred: bool) -> float:
    """Per-graph Pearson r of BOTAN's edge output on held-out graphs after the harness's training."""
    torch.set_num_threads(1)
    root = write_botan_tree(tmp_path / "spec", temps=(0.5,), n_train=2, n_test=1, times=(0,))
    raw = {
        "seeds": [0],
        "train": {
            "epochs": 12,
            "patience": 12,
            "batch_size": 1,
            "lr": 3e-3,
            "head_hidden": 32,
            "grad_clip": 1.0,
            "center_per_graph": centred,
            "task_weights": {"propensity": 0.4, "bond_motion": 0.6},
        },
        "params": {"dataset": {"glass/botan": {"root": str(root)}}, "encoder": {"botan": {"hidden": 32, "steps": 2}}},
        "study": [{"datasets": ["glass/botan"], "protocols": ["glass-time"], "encoders": ["botan"]}],
    }
    registry = default_registry()
    run = expand_grid(registry, raw).runs[0]
    dataset = SyntheticGlass()
    tuner = FineTuner(registry, run, dataset, TensorGraphs(dataset.arrays()))
    order = np.arange(GRAPHS)
    tuner.fit({"train": order[:24], "valid": order[24:28], "test": order[28:]})
    pred: Predictions = tuner.predict(order[28:])["bond_motion"]
    values, defined = per_graph_r(pred, pred.graph - 28, GRAPHS - 28)
    assert defined.all()
    return float(values.mean())


@pytest.mark.slow
def test_edge_output_learns_a_known_function_of_the_pair_vector(tmp_path):
    threads = torch.get_num_threads()
    try:  # one thread: the numbers (and the time, ~15 s) are those of one core
        centred = _edge_r(tmp_path, centred=True)
        raw = _edge_r(tmp_path, centred=False)
    finally:
        torch.set_num_threads(threads)
    print(f"per-graph edge r: centred {centred:.3f}, raw {raw:.3f}")
    assert centred > 0.8, f"centred per graph, the edge output reached r = {centred:.3f}"
    assert raw < 0.6, f"on raw targets the edge output reached r = {raw:.3f}: the test no longer tells them apart"


def test_edge_pretraining_centres_per_graph_when_set():
    """The pretraining stage's loss follows ``center_per_graph`` too (through `PretextContext`)."""
    from benchbase.contract.api import PretextContext
    from benchbase_glass.encoders import BotanEncoder
    from benchbase_glass.pretext import EdgePretraining

    torch.manual_seed(0)
    dataset = SyntheticGlass()
    graphs = TensorGraphs(dataset.arrays())
    pretext = EdgePretraining()
    pretext.prepare(dataset, np.arange(4))
    encoder = BotanEncoder(dataset.features, hidden=8, steps=1)
    head = pretext.build_head(encoder)
    batch = graphs.batch(np.arange(4))
    targets = dict(batch.targets, bond_motion=batch.targets["bond_motion"] + 2.0 * batch.edge_batch)
    shifted = batch.replace(targets=targets)
    for centred in (True, False):
        ctx = PretextContext(generator=torch.Generator(), center_per_graph=centred)
        with torch.no_grad():
            a = float(pretext.step(encoder, head, batch, ctx).loss)
            b = float(pretext.step(encoder, head, shifted, ctx).loss)
        assert np.isclose(a, b, rtol=1e-5) == centred
