"""Mini-batches cut straight from contiguous arrays.

A batch of graphs is built with a handful of vectorised gathers instead of collating one Python
object per graph (the PyG `DataLoader` way), which is where most CPU time of small-molecule
training goes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from benchbase.contract.types import GraphArrays, GraphBatch


def concat_ranges(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenation of arange(start, start + length) for each pair, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long)
    offsets = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
    return torch.arange(total, dtype=torch.long) + offsets


class TensorGraphs:
    """`GraphArrays` converted once to torch tensors, sliceable into `GraphBatch` objects."""

    def __init__(self, arrays: GraphArrays) -> None:
        def tensor(a: np.ndarray | None) -> torch.Tensor | None:
            if a is None:
                return None
            t = torch.from_numpy(np.ascontiguousarray(a))
            return t.float() if t.is_floating_point() else t.long() if t.dtype != torch.bool else t

        self.node_ptr = torch.from_numpy(np.asarray(arrays.node_ptr, dtype=np.int64))
        self.edge_ptr = torch.from_numpy(np.asarray(arrays.edge_ptr, dtype=np.int64))
        self.edge_index = tensor(arrays.edge_index)
        self.x = tensor(arrays.x)
        self.edge_attr = tensor(arrays.edge_attr)
        self.pos = tensor(arrays.pos)
        self.targets = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.targets.items()}
        self.target_masks = {k: torch.from_numpy(np.asarray(v, dtype=bool)) for k, v in arrays.target_masks.items()}
        self.graph_attr = {k: tensor(v) for k, v in arrays.graph_attr.items()}
        self.num_nodes = self.node_ptr[1:] - self.node_ptr[:-1]
        self.num_edges = self.edge_ptr[1:] - self.edge_ptr[:-1]
        n_graphs, n_nodes, n_edges = len(self.node_ptr) - 1, int(self.node_ptr[-1]), int(self.edge_ptr[-1])
        self._level_of = {}
        for name, values in self.targets.items():
            rows = len(values)
            self._level_of[name] = "graph" if rows == n_graphs else "node" if rows == n_nodes else "edge"
            if rows not in (n_graphs, n_nodes, n_edges):
                raise ValueError(f"target {name!r} has {rows} rows; expected {n_graphs}, {n_nodes} or {n_edges}")

    @property
    def num_graphs(self) -> int:
        return len(self.node_ptr) - 1

    def batch(self, graph_index: torch.Tensor | np.ndarray) -> GraphBatch:
        graphs = torch.as_tensor(np.asarray(graph_index), dtype=torch.long)
        n_nodes = self.num_nodes[graphs]
        n_edges = self.num_edges[graphs]
        node_rows = concat_ranges(self.node_ptr[graphs], n_nodes)
        edge_rows = concat_ranges(self.edge_ptr[graphs], n_edges)
        ptr = torch.zeros(len(graphs) + 1, dtype=torch.long)
        torch.cumsum(n_nodes, 0, out=ptr[1:])
        edge_batch = torch.repeat_interleave(torch.arange(len(graphs)), n_edges)
        # Local edge indices become batch-global by adding the first node of their graph.
        edge_index = self.edge_index[:, edge_rows] + ptr[:-1][edge_batch]
        rows_of = {"graph": graphs, "node": node_rows, "edge": edge_rows}
        return GraphBatch(
            x=self.x[node_rows],
            edge_index=edge_index,
            batch=torch.repeat_interleave(torch.arange(len(graphs)), n_nodes),
            ptr=ptr,
            num_graphs=len(graphs),
            graph_index=graphs,
            edge_attr=None if self.edge_attr is None else self.edge_attr[edge_rows],
            pos=None if self.pos is None else self.pos[node_rows],
            edge_batch=edge_batch,
            targets={k: v[rows_of[self._level_of[k]]] for k, v in self.targets.items()},
            target_masks={k: v[rows_of[self._level_of[k]]] for k, v in self.target_masks.items()},
            graph_attr={k: v[graphs] for k, v in self.graph_attr.items()},
        )


def iterate_batches(
    graphs: TensorGraphs,
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    max_nodes: int | None = None,
) -> Iterator[GraphBatch]:
    """Yield batches over `indices`; `max_nodes` additionally caps nodes per batch (large graphs)."""
    order = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    if shuffle:
        order = order[torch.randperm(len(order), generator=generator)]
    if max_nodes is None:
        for start in range(0, len(order), batch_size):
            yield graphs.batch(order[start : start + batch_size])
        return
    sizes = graphs.num_nodes[order].tolist()
    current: list[int] = []
    nodes = 0
    for pos, size in enumerate(sizes):
        if current and (len(current) >= batch_size or nodes + size > max_nodes):
            yield graphs.batch(order[current])
            current, nodes = [], 0
        current.append(pos)
        nodes += size
    if current:
        yield graphs.batch(order[current])


def center_per_graph(values: torch.Tensor, graph: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """`values` minus the mean of its graph's rows (`graph`: the graph of each row, 0..num_graphs-1).

    A per-graph offset (a level shared by every node or edge of one graph) then carries no loss:
    what is fitted is the variation within each graph, which a per-graph correlation measures.
    """
    from torch_geometric.utils import scatter

    means = scatter(values, graph, dim=0, dim_size=num_graphs, reduce="mean")
    return values - means.index_select(0, graph)
