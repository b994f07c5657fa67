"""Encoders for glass graphs (see `benchbase_glass.datasets` for the graph layout).

`botan`: the encode-process-decode graph network of Bapst et al. (Nature Physics 2020) as used by
BOTAN (Shiba et al. 2023, h3-Open-BDEC/pyg_botan): node input the particle type (an embedding),
edge input the relative position vector (``edge_attr``, minimum image, from the dataset), `steps`
rounds with one shared set of weights of an edge update MLP([h_src, h_dst, e, e0]) then a node
update MLP([h, h0, sum of incoming e]), two-layer ReLU MLPs of width `hidden`. It returns node and
edge latents, so the harness puts the propensity head on nodes and the bond-motion head on edges
(BOTAN's two decoders: two-layer MLPs 64-64-1 with the train setting ``head_hidden = 64``).

`gnn-node`: the same network returning no edge latents (Bapst et al.'s node-only model); an edge
task then falls back to the harness's concat(node[src], node[dst]) head. It is meant to be run with
task weights {propensity: 1, bond_motion: 0} (p = 1), where the edge head is untrained and its
bond-motion numbers mean nothing.

`glass-descriptors`: no message passing: per-particle local-structure descriptors (potential energy,
its coarse-grained averages, local densities; see `benchbase_glass.descriptors`) standardised, so
that the harness's linear head is a linear regression (the structural baseline of the Roadmap on
machine learning glassy dynamics). Computed once in `prepare`.

Speed: the first layer of each update MLP acting on a concatenation [e0, e, h_src, h_dst] is split
into per-part linear maps; the node parts are multiplied at node level (N rows) and gathered, and
the encoded-input part is computed once per forward (weights are shared over steps), instead of
multiplying an E x 4w concatenation at every step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import scatter

from benchbase import Dataset, Embeddings, Encoder, FeatureSpec, GraphBatch, Param, PluginError, concat_ranges


class _SplitLinear(nn.Module):
    """Linear map of a concatenation, kept as one weight per part (see the module docstring)."""

    def __init__(self, widths: list[int], out: int) -> None:
        super().__init__()
        self.parts = nn.ModuleList(nn.Linear(w, out, bias=(i == 0)) for i, w in enumerate(widths))


class BotanEncoder(Encoder):
    name = "botan"
    description = "BOTAN / Bapst encode-process-decode GNN (shared weights, node + edge latents)"
    requires = frozenset({"glass"})
    param_spec = {
        "hidden": Param(64, "int", "latent width", min=1),
        "steps": Param(7, "int", "message-passing steps (weights shared)", min=1),
    }
    returns_edge = True

    def __init__(self, features: FeatureSpec, hidden: int = 64, steps: int = 7) -> None:
        super().__init__()
        if len(features.node_vocab) != 1 or features.edge_dim != 3:
            raise PluginError(f"{self.name!r} needs one categorical node column and 3-D edge vectors; got {features}")
        self.out_dim = hidden
        self.steps = int(steps)
        # Two-layer ReLU MLPs throughout, as in BOTAN. One extra embedding row: the mask token.
        self.node_embed = nn.Embedding(features.node_vocab[0] + 1, hidden)
        self.node_in = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.edge_in = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        # Edge update: MLP([h_src, h_dst, e, e0]); node update: MLP([h, h0, sum of incoming e]).
        self.e_first = _SplitLinear([hidden] * 4, hidden)
        self.e_second = nn.Linear(hidden, hidden)
        self.n_first = _SplitLinear([hidden] * 3, hidden)
        self.n_second = nn.Linear(hidden, hidden)

    def forward(self, batch: GraphBatch) -> Embeddings:
        src, dst = batch.edge_index
        n = batch.x.shape[0]
        h0 = self.node_in(self.node_embed(batch.x[:, 0]))
        e0 = self.edge_in(batch.edge_attr)
        w_src, w_dst, w_e, w_e0 = self.e_first.parts
        w_h, w_h0, w_agg = self.n_first.parts
        e_const = w_e0(e0)  # weights are shared over steps: the encoded-input terms never change
        h_const = w_h0(h0)
        h, e = h0, e0
        for _ in range(self.steps):
            # addmm fuses the sum of the other terms into the E x w x w product of the edge term
            others = e_const + w_src(h).index_select(0, src) + w_dst(h).index_select(0, dst)
            pre = torch.relu_(torch.addmm(others, e, w_e.weight.t()))
            e = torch.relu_(self.e_second(pre))
            agg = scatter(e, dst, dim=0, dim_size=n, reduce="sum")
            h = torch.relu(self.n_second(torch.relu(w_h(h) + w_agg(agg) + h_const)))
        graph = scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean")
        return Embeddings(node=h, graph=graph, edge=e if self.returns_edge else None)


class GNNNodeEncoder(BotanEncoder):
    name = "gnn-node"
    description = "Bapst et al. 2020 node-only GNN (no edge latents; run with p = 1)"
    returns_edge = False


class DescriptorEncoder(Encoder):
    name = "glass-descriptors"
    description = "Local-structure descriptors (energy, coarse-grained energy, densities); linear head = regression"
    requires = frozenset({"glass"})
    param_spec = {"radii": Param([1.0, 1.5, 2.0], "list", "coarse-graining radii (sigma)", items="number")}
    supports_pretext = False

    def __init__(self, features: FeatureSpec, radii: list[float] | None = None) -> None:
        super().__init__()
        self.radii = [float(r) for r in (radii or self.defaults["radii"])]
        self.out_dim = 1 + 3 * len(self.radii)
        self._table: torch.Tensor | None = None
        self._node_ptr: torch.Tensor | None = None

    def prepare(self, dataset: Dataset) -> None:
        from benchbase_glass.descriptors import dataset_descriptors

        table = dataset_descriptors(dataset, self.radii)
        mean, std = table.mean(0), table.std(0)
        std[std == 0] = 1.0
        self._table = torch.from_numpy(((table - mean) / std).astype(np.float32))
        self._node_ptr = torch.from_numpy(np.asarray(dataset.arrays().node_ptr, dtype=np.int64))

    def forward(self, batch: GraphBatch) -> Embeddings:
        if self._table is None:
            raise PluginError("glass-descriptors: prepare(dataset) was not called before forward")
        g = batch.graph_index
        rows = concat_ranges(self._node_ptr[g], self._node_ptr[g + 1] - self._node_ptr[g])
        node = self._table[rows]
        graph = scatter(node, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean")
        return Embeddings(node=node, graph=graph, edge=None)


ENCODERS = [BotanEncoder, GNNNodeEncoder, DescriptorEncoder]
