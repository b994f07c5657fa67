"""Training steps per second of benchbase's `botan` encoder on botan_small, against a reference
written the way pyg_botan (h3-Open-BDEC/pyg_botan, Shiba et al. 2023) does it: a PyG model whose
updates concatenate [h_src, h_dst, e, e0] per edge and [h, h0, sum of e] per node, a list of
`torch_geometric.data.Data` objects and a PyG `DataLoader`, one configuration per batch.

Both sides: width 64, 7 message-passing steps with shared weights, node and edge heads, MSE on
the propensity (type A) and bond-motion (A-A pairs < 1.35) targets, Adam, one thread. Rounds of
the two are interleaved; rates are steps per CPU-second of this process (one thread, so this is
the work done, unaffected by other processes on a shared machine) and wall-clock rates are
printed too. Prints the ratio of the medians (benchbase / reference). Target: >= 1.5.

    python benchmarks/glass_train.py [--steps 2] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

# Imported before torch, as in a grid run: importing benchbase pins the portable CPU numerics.
import benchbase  # isort: skip  # noqa: F401

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MessagePassing

from benchbase.compute.batching import TensorGraphs, iterate_batches
from benchbase_glass.datasets import BotanDataset
from benchbase_glass.encoders import BotanEncoder

BOTAN_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "botan_small" / "small_data"
WIDTH, STEPS = 64, 7


# ----------------------------------------------------------------------------------------------
# The reference, pyg_botan style.


def mlp(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, out), nn.ReLU(), nn.Linear(out, out), nn.ReLU())


class NodeUpdate(MessagePassing):
    def __init__(self) -> None:
        super().__init__(aggr="add")
        self.mlp = mlp(3 * WIDTH, WIDTH)

    def forward(self, x, x0, edge_index, edge_attr):
        received = self.propagate(edge_index, x=x, edge_attr=edge_attr)
        return self.mlp(torch.cat([x, x0, received], dim=1))

    def message(self, edge_attr):
        return edge_attr


class ReferenceModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.node_encoder = mlp(1, WIDTH)
        self.edge_encoder = mlp(3, WIDTH)
        self.edge_update = mlp(4 * WIDTH, WIDTH)
        self.node_update = NodeUpdate()
        self.node_decoder = nn.Sequential(mlp(WIDTH, WIDTH), nn.Linear(WIDTH, 1))
        self.edge_decoder = nn.Sequential(mlp(WIDTH, WIDTH), nn.Linear(WIDTH, 1))

    def forward(self, data):
        row, col = data.edge_index
        x0 = self.node_encoder(data.x)
        e0 = self.edge_encoder(data.edge_attr)
        x, e = x0, e0
        for _ in range(STEPS):
            e = self.edge_update(torch.cat([x[row], x[col], e, e0], dim=1))
            x = self.node_update(x, x0, data.edge_index, e)
        return self.node_decoder(x).squeeze(-1), self.edge_decoder(e).squeeze(-1)


def reference_data(dataset: BotanDataset, graphs: list[int]) -> list[Data]:
    a = dataset.arrays()
    out = []
    for g in graphs:
        n0, n1, e0, e1 = a.node_ptr[g], a.node_ptr[g + 1], a.edge_ptr[g], a.edge_ptr[g + 1]
        out.append(
            Data(
                x=torch.tensor(a.x[n0:n1], dtype=torch.float32),
                edge_index=torch.tensor(a.edge_index[:, e0:e1]),
                edge_attr=torch.tensor(a.edge_attr[e0:e1]),
                y=torch.tensor(a.targets["propensity"][n0:n1]),
                y_mask=torch.tensor(a.target_masks["propensity"][n0:n1]),
                y_edge=torch.tensor(a.targets["bond_motion"][e0:e1]),
                y_edge_mask=torch.tensor(a.target_masks["bond_motion"][e0:e1]),
            )
        )
    return out


def _rates(started: tuple[float, float], steps: int) -> tuple[float, float]:
    """(steps per CPU-second, steps per wall-second) since `started` = (process_time, perf_counter)."""
    return steps / (time.process_time() - started[0]), steps / (time.perf_counter() - started[1])


def reference_rate(model, optimizer, loader, steps: int) -> tuple[float, float]:
    it = iter(loader)
    started = time.process_time(), time.perf_counter()
    for _ in range(steps):
        try:
            data = next(it)
        except StopIteration:
            it = iter(loader)
            data = next(it)
        node, edge = model(data)
        loss = (
            0.4 * ((node - data.y)[data.y_mask] ** 2).mean()
            + 0.6 * ((edge - data.y_edge)[data.y_edge_mask] ** 2).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return _rates(started, steps)


# ----------------------------------------------------------------------------------------------
# benchbase: the registered encoder + linear heads, batches cut from contiguous arrays.


class Ours(nn.Module):
    def __init__(self, features) -> None:
        super().__init__()
        self.encoder = BotanEncoder(features, hidden=WIDTH, steps=STEPS)
        self.node_head = nn.Sequential(mlp(WIDTH, WIDTH), nn.Linear(WIDTH, 1))
        self.edge_head = nn.Sequential(mlp(WIDTH, WIDTH), nn.Linear(WIDTH, 1))

    def forward(self, batch):
        emb = self.encoder(batch)
        return self.node_head(emb.node).squeeze(-1), self.edge_head(emb.edge).squeeze(-1)


def our_rate(model, optimizer, graphs: TensorGraphs, train: np.ndarray, steps: int, generator) -> tuple[float, float]:
    batches = iterate_batches(graphs, train, 1, shuffle=True, generator=generator)
    started = time.process_time(), time.perf_counter()
    for _ in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iterate_batches(graphs, train, 1, shuffle=True, generator=generator)
            batch = next(batches)
        node, edge = model(batch)
        nm, em = batch.target_masks["propensity"], batch.target_masks["bond_motion"]
        loss = (
            0.4 * ((node - batch.targets["propensity"])[nm] ** 2).mean()
            + 0.6 * ((edge - batch.targets["bond_motion"])[em] ** 2).mean()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return _rates(started, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2, help="training steps per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=str(BOTAN_SMALL))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not Path(args.root).is_dir():
        raise SystemExit(f"botan_small not found at {args.root}; pass --root")
    dataset = BotanDataset(root=args.root)
    official = dataset.graph_property("official_split")
    train = np.flatnonzero(official == "train")
    graphs = TensorGraphs(dataset.arrays())
    ours = Ours(dataset.features)
    ours_opt = torch.optim.Adam(ours.parameters(), lr=1e-3)
    ref = ReferenceModel()
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    loader = DataLoader(reference_data(dataset, list(train)), batch_size=1, shuffle=True)
    generator = torch.Generator().manual_seed(0)
    print(f"botan_small: {len(train)} training configurations, N = 4096, ~{graphs.num_edges[0].item()} edges each")
    print(
        f"parameters: benchbase {sum(p.numel() for p in ours.parameters())}, "
        f"reference {sum(p.numel() for p in ref.parameters())}"
    )
    our_rate(ours, ours_opt, graphs, train, 1, generator)  # warm-up
    reference_rate(ref, ref_opt, loader, 1)
    mine, theirs = [], []
    for r in range(args.rounds):
        mine.append(our_rate(ours, ours_opt, graphs, train, args.steps, generator))
        theirs.append(reference_rate(ref, ref_opt, loader, args.steps))
        print(
            f"round {r}: benchbase {mine[-1][0]:.4f} steps/CPU-s ({mine[-1][1]:.4f}/wall-s), "
            f"reference {theirs[-1][0]:.4f} steps/CPU-s ({theirs[-1][1]:.4f}/wall-s)",
            flush=True,
        )
    a, b = statistics.median(m[0] for m in mine), statistics.median(t[0] for t in theirs)
    wall = statistics.median(m[1] for m in mine) / statistics.median(t[1] for t in theirs)
    print(f"median: benchbase {a:.4f} steps/CPU-s, reference (pyg_botan style) {b:.4f} steps/CPU-s")
    print(f"ratio benchbase / reference = {a / b:.2f}x by CPU time, {wall:.2f}x by wall time (target >= 1.5x)")


if __name__ == "__main__":
    main()
