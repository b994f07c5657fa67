"""Training throughput of benchbase's GIN path against an OGB-style PyG reference, in one process.

What is compared (QM9 HOMO-LUMO gap regression on the dataset plugin's deterministic random subset of
``--graphs`` molecules):

- project: the harness's own machinery. The dataset ``qm9/homo_lumo_gap`` comes from the plugin
  registry, batches are cut from contiguous arrays by `benchbase.batching.TensorGraphs` /
  `iterate_batches`, the encoder is the registered ``gin`` (Hu et al. 2020, "Strategies for
  Pre-training GNNs"), with a linear head on ``Embeddings.graph``, as `benchbase.train.FineTuner`.
- reference: written the way OGB's molecule example (ogb/examples/graphproppred/mol) trains: one
  `torch_geometric.data.Data` per molecule, PyG's `DataLoader` collating them, OGB's
  `AtomEncoder` / `BondEncoder`, a GIN layer as a PyG `MessagePassing` subclass, BatchNorm, ReLU,
  dropout, `global_mean_pool` and a linear head. Its `Data` objects are sliced from the SAME arrays
  the project side trains on, so both see identical molecules, features and targets.

Both sides use the same layer math (Hu et al.'s GIN: neighbour messages ``h_j + e_ij`` summed with
a learned self-loop term, then an MLP ``hidden -> 2 hidden -> hidden``), the same width, depth,
dropout, batch size, loss (MSE on standardised targets), optimiser (Adam, lr 1e-3) and torch
thread count. The only parameter difference is by design: the project's embedding tables carry one
extra mask-token row per categorical column (for masking pretext tasks); the counts are printed.

Timing: one warm-up epoch per side, then ``--epochs`` timed epochs, alternating project and
reference epoch by epoch so that load from other processes on a shared machine hits both alike.
graphs/s = graphs per epoch / MEDIAN wall-clock seconds of an epoch (data loading included); the
median keeps one epoch stalled by another process from deciding the ratio. Every epoch time, the
ratio from mean epoch times and the ratio of process CPU seconds (which other load disturbs less)
are printed too. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MessagePassing, global_mean_pool

from benchbase import loading
from benchbase.api import PluginError
from benchbase.batching import TensorGraphs, iterate_batches
from benchbase.registry import load_registry

DATASET = "qm9/homo_lumo_gap"


# ------------------------------------------------------------------------------ reference (OGB way)


class RefGINConv(MessagePassing):
    """Hu et al.'s GIN layer as a PyG `MessagePassing`: sum of ``h_j + e_ij`` over neighbours plus
    the self-loop message ``h_i + s`` (Hu et al. add self-loop edges with their own bond embedding;
    ``s`` is that embedding), then the MLP."""

    def __init__(self, hidden: int) -> None:
        super().__init__(aggr="add")
        self.bond_encoder = BondEncoder(hidden)
        self.self_loop = nn.Parameter(torch.randn(hidden) * 0.1)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        neighbours = self.propagate(edge_index, x=x, edge_attr=self.bond_encoder(edge_attr))
        return self.mlp(x + self.self_loop + neighbours)

    def message(self, x_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return x_j + edge_attr


class RefGIN(nn.Module):
    """OGB's ``GNN_node`` + ``GNN`` structure: atom encoder, conv -> BatchNorm -> ReLU (not after
    the last layer) -> dropout, mean pooling, linear head."""

    def __init__(self, layers: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.atom_encoder = AtomEncoder(hidden)
        self.convs = nn.ModuleList(RefGINConv(hidden) for _ in range(layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.head = nn.Linear(hidden, 1)

    def forward(self, data: Data) -> torch.Tensor:
        h = self.atom_encoder(data.x)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h, data.edge_index, data.edge_attr))
            if i < len(self.convs) - 1:
                h = F.relu(h)
            h = F.dropout(h, self.dropout, self.training)
        return self.head(global_mean_pool(h, data.batch, data.num_graphs)).squeeze(-1)


def reference_data(graphs: TensorGraphs, y: torch.Tensor) -> list[Data]:
    """One `Data` per molecule, copied out of the project's arrays (as an OGB dataset stores them)."""
    out = []
    for i in range(graphs.num_graphs):
        n0, n1, e0, e1 = graphs.node_ptr[i], graphs.node_ptr[i + 1], graphs.edge_ptr[i], graphs.edge_ptr[i + 1]
        out.append(
            Data(
                x=graphs.x[n0:n1].clone(),
                edge_index=graphs.edge_index[:, e0:e1].clone(),
                edge_attr=graphs.edge_attr[e0:e1].clone(),
                y=y[i : i + 1].clone(),
            )
        )
    return out


# ------------------------------------------------------------------------------------------ benchmark


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="gin", choices=["gin"], help="only GIN has an OGB-style reference")
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=300)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--graphs", type=int, default=10000, help="QM9 subset size (the dataset's `subset`)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side, after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads, both sides")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    registry = load_registry()
    dataset, graphs = loading.dataset_tensors(registry, DATASET, {"subset": args.graphs})
    task = dataset.tasks[0].name
    if graphs.edge_attr is None:
        raise PluginError(f"{DATASET} provides no bond features; the GIN comparison needs them")
    y = graphs.targets[task]
    ok = torch.isfinite(y)
    mean, std = float(y[ok].double().mean()), float(y[ok].double().std())
    indices = np.flatnonzero(ok.numpy())
    generator = torch.Generator().manual_seed(args.seed)

    # Project side: registered encoder + linear head on the graph embedding, FineTuner's loss.
    params = {"layers": args.layers, "hidden": args.hidden, "dropout": args.dropout, "pooling": "mean"}
    encoder = loading.build_encoder(registry, args.encoder, params, dataset.features)
    encoder.prepare(dataset)
    head = nn.Linear(encoder.out_dim, 1)
    p_opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)

    def project_epoch() -> int:
        encoder.train()
        head.train()
        seen = 0
        for batch in iterate_batches(graphs, indices, args.batch_size, True, generator):
            target = batch.targets[task]
            keep = torch.isfinite(target)
            pred = head(encoder(batch).graph).squeeze(-1)
            loss = torch.mean((pred[keep] - (target[keep] - mean) / std) ** 2)
            p_opt.zero_grad()
            loss.backward()
            p_opt.step()
            seen += batch.num_graphs
        return seen

    # Reference side: list of Data, PyG DataLoader, OGB-style model; same loss and optimiser.
    data = reference_data(graphs, (y - mean) / std)
    data = [data[i] for i in indices]
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True)
    reference = RefGIN(args.layers, args.hidden, args.dropout)
    r_opt = torch.optim.Adam(reference.parameters(), lr=1e-3)

    def reference_epoch() -> int:
        reference.train()
        seen = 0
        for batch in loader:
            loss = torch.mean((reference(batch) - batch.y) ** 2)
            r_opt.zero_grad()
            loss.backward()
            r_opt.step()
            seen += batch.num_graphs
        return seen

    n_project, n_reference = count(encoder, head), count(reference)
    print(f"{DATASET} subset={args.graphs}: {len(indices)} labelled graphs (the plugin skips unparsable ones)")
    print(f"  {graphs.x.shape[0]} atoms, {graphs.edge_index.shape[1]} directed bonds")
    print(f"model: {args.encoder} {args.layers} x {args.hidden}, dropout {args.dropout}, batch {args.batch_size}")
    print(f"parameters: project {n_project:,}  reference {n_reference:,}  difference {n_project - n_reference:+,}")
    mask_rows = args.hidden * (len(dataset.features.node_vocab) + args.layers * len(dataset.features.edge_vocab))
    print(f"  (the project's mask-token rows, one per categorical column and layer, account for {mask_rows:,})")
    print(f"threads: {torch.get_num_threads()}; 1 warm-up + {args.epochs} timed epochs per side", flush=True)

    project_epoch()
    reference_epoch()
    times: dict[str, list[float]] = {"project": [], "reference": []}
    cpu: dict[str, list[float]] = {"project": [], "reference": []}
    per_epoch = {}
    for epoch in range(args.epochs):
        for side, run in (("project", project_epoch), ("reference", reference_epoch)):
            start, start_cpu = time.perf_counter(), time.process_time()
            per_epoch[side] = run()
            times[side].append(time.perf_counter() - start)
            cpu[side].append(time.process_time() - start_cpu)
            print(f"  epoch {epoch} {side:>9}: {times[side][-1]:7.2f} s wall, {cpu[side][-1]:7.2f} s CPU", flush=True)
    rate = {side: per_epoch[side] / statistics.median(t) for side, t in times.items()}
    ratio = rate["project"] / rate["reference"]
    mean_ratio = sum(times["reference"]) / sum(times["project"])  # equal graphs per epoch on both sides
    cpu_ratio = statistics.median(cpu["reference"]) / statistics.median(cpu["project"])
    for side in times:
        print(f"{side:<9} {rate[side]:8.1f} graphs/s (median epoch)")
    print(f"ratio     {ratio:8.3f} (project / reference; from mean epoch times {mean_ratio:.3f})")
    print(f"CPU-time ratio {cpu_ratio:.3f} (process CPU seconds, less sensitive to other load on the machine)")
    summary = {
        "project_graphs_per_s": round(rate["project"], 1),
        "reference_graphs_per_s": round(rate["reference"], 1),
        "ratio": round(ratio, 3),
        "encoder": args.encoder,
        "layers": args.layers,
        "hidden": args.hidden,
        "batch_size": args.batch_size,
        "graphs": len(indices),
        "threads": args.threads,
        "cpu_time_ratio": round(cpu_ratio, 3),
        "project_params": n_project,
        "reference_params": n_reference,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    try:
        main()
    except PluginError as exc:
        raise SystemExit(f"error: {exc}") from None
