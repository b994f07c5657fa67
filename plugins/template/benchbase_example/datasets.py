"""A dataset: graphs as contiguous arrays, tasks, and the graph properties protocols read.

`Rings` is synthetic so that it runs anywhere; replace `_generate` with your own reader. Molecules
need no code (the built-in `csv` dataset reads a CSV of SMILES and targets); a molecular dataset in
code should subclass `benchbase_molecules.smiles_dataset.SmilesDataset`, which brings the
featuriser, the cache, skipped-row bookkeeping and scaffolds.
"""

from __future__ import annotations

import numpy as np
from benchbase import Dataset, FeatureSpec, GraphArrays, Param, TaskInfo

KINDS = ("a", "b", "c")


class Rings(Dataset):
    """Random rings of 4-12 nodes of three kinds, half of them with one chord. The edge feature says
    ring bond (0) or chord (1); the label counts the bonds joining two different kinds, which message
    passing can learn and a model that sees one node at a time cannot."""

    name = "example/rings"
    description = "random rings of three node kinds; label: bonds joining two kinds (benchbase-example)"
    tasks = [TaskInfo("mixed_bonds", unit="bonds", description="bonds joining two different node kinds")]
    # Capabilities (what encoders and pretext tasks may require) and graph properties (protocols).
    provides = frozenset({"x_categorical", "edge_attr", "size", "group", "node_class_counts"})
    features = FeatureSpec(node_vocab=(len(KINDS),), edge_vocab=(2,))
    param_spec = {
        "graphs": Param(300, "int", "number of graphs", min=10),
        "seed": Param(0, "int", "seed of the data (fixed: every run of a grid sees the same graphs)", min=0),
    }

    def __init__(self, graphs: int = 300, seed: int = 0) -> None:
        self.graphs, self.seed = graphs, seed
        self._arrays: GraphArrays | None = None

    def arrays(self) -> GraphArrays:
        if self._arrays is None:  # built on first use: constructing a dataset must stay cheap
            self._arrays = self._generate()
        return self._arrays

    def _generate(self) -> GraphArrays:
        rng = np.random.default_rng(self.seed)
        sizes = rng.integers(4, 13, self.graphs)
        node_ptr = np.concatenate([[0], np.cumsum(sizes)])
        kinds = rng.integers(0, len(KINDS), int(node_ptr[-1]))
        edges, types = [], []
        for n in sizes:
            src = np.arange(n)
            dst = (src + 1) % n
            bond_type = np.zeros(n, dtype=np.int64)
            if rng.random() < 0.5:  # a chord between two nodes that are not neighbours on the ring
                src, dst = np.append(src, 0), np.append(dst, n // 2)
                bond_type = np.append(bond_type, 1)
            edges.append(np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1))  # both directions
            types.append(np.concatenate([bond_type, bond_type]))
        edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in edges])])
        edge_index = np.concatenate(edges, axis=1)  # node indices local to each graph
        first_node = np.repeat(node_ptr[:-1], np.diff(edge_ptr))
        mixed = kinds[edge_index[0] + first_node] != kinds[edge_index[1] + first_node]
        label = np.add.reduceat(mixed.astype(np.float32), edge_ptr[:-1]) / 2  # each bond is two edges
        return GraphArrays(
            node_ptr=node_ptr,
            edge_ptr=edge_ptr,
            edge_index=edge_index,
            x=kinds[:, None],
            edge_attr=np.concatenate(types)[:, None],
            targets={"mixed_bonds": label},
        )

    def ids(self) -> np.ndarray:
        return np.arange(self.graphs)

    def graph_property(self, key: str) -> np.ndarray | None:
        arrays = self.arrays()
        sizes = np.diff(arrays.node_ptr)
        if key == "size":
            return sizes
        if key == "group":  # what `scaffold` holds out: here, rings of one size form a group
            return np.array([f"ring-{n}" for n in sizes])
        if key == "node_class_counts":  # what `imbalance` and rebalancers count: nodes of each kind
            graph_of = np.repeat(np.arange(arrays.num_graphs), sizes)
            counts = np.bincount(graph_of * len(KINDS) + arrays.x[:, 0], minlength=arrays.num_graphs * len(KINDS))
            return counts.reshape(-1, len(KINDS))
        return None

    def node_class_names(self) -> list[str]:
        return list(KINDS)
