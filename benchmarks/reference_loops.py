"""The reference training loops of `train_throughput.py`, written the way OGB's molecule example
(``ogb/examples/graphproppred/mol``) trains, and runnable on their own in a fresh process.

This module imports nothing of benchbase: run as a script it is the loop a user runs, so the
benchmark can time each reference both inside its own process (alternating with the project) and
standalone (``python benchmarks/reference_loops.py --data FILE --side ogb``). The molecules come
from FILE (SMILES and standardised targets, written by `train_throughput.py`) and are featurised
here with OGB's own ``smiles2graph``, one `Data` per molecule, as an OGB dataset stores them.

CPU numerics: a fresh process inherits the environment of the process that started it, so a
standalone run started by `train_throughput.py` (after ``import benchbase`` pinned
``MKL_CBWR`` and friends) uses the same code paths; the JSON line it prints names them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from ogb.graphproppred.mol_encoder import AtomEncoder, BondEncoder
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import MessagePassing, global_mean_pool


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


class OGBExampleConv(MessagePassing):
    """The GIN layer of OGB's molecule example as it is (``ogb/examples/graphproppred/mol/conv.py``):
    ``MLP((1 + eps) h_i + sum_j ReLU(h_j + e_ij))``, the MLP ``Linear - BatchNorm - ReLU - Linear``,
    no self-loop edges. The project's ``gine`` encoder has this math."""

    def __init__(self, hidden: int) -> None:
        super().__init__(aggr="add")
        self.bond_encoder = BondEncoder(hidden)
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), nn.BatchNorm1d(2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)
        )

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        neighbours = self.propagate(edge_index, x=x, edge_attr=self.bond_encoder(edge_attr))
        return self.mlp((1 + self.eps) * x + neighbours)

    def message(self, x_j: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return F.relu(x_j + edge_attr)


class OGBExampleGIN(RefGIN):
    """OGB's ``GNN`` with ``gnn_type="gin"`` as its example trains it."""

    def __init__(self, layers: int, hidden: int, dropout: float) -> None:
        super().__init__(layers, hidden, dropout)
        self.convs = nn.ModuleList(OGBExampleConv(hidden) for _ in range(layers))


#: The reference models by the name `--side` takes.
MODELS: dict[str, type[RefGIN]] = {"same-math": RefGIN, "ogb": OGBExampleGIN}


def parameter_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def reference_epoch(model: nn.Module, data: list[Data], batch_size: int) -> tuple[Callable[[], int], int]:
    """One training epoch as OGB's example runs it: PyG's DataLoader over a list of Data, plain Adam,
    a squared-error loss. Returns the epoch function (it returns the graphs seen) and the model's
    parameter count."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def epoch() -> int:
        model.train()
        seen = 0
        for batch in loader:
            loss = torch.mean((model(batch) - batch.y) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += batch.num_graphs
        return seen

    return epoch, parameter_count(model)


def operator_table(profiler: torch.profiler.profile, title: str, top: int = 12) -> dict[str, float]:
    """Print the `top` torch operators by self CPU time (and their call counts); return the
    seconds of each printed operator."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    print(f"{title}: {total / 1e6:.2f} s of self CPU time in operators")
    for event in events[:top]:
        share = 100 * event.self_cpu_time_total / total
        print(f"  {event.key:<44} {event.self_cpu_time_total / 1e6:7.3f} s {share:5.1f}%  {event.count:>6} calls")
    return {e.key: round(e.self_cpu_time_total / 1e6, 3) for e in events[:top]}


def profiled_epoch(epoch: Callable[[], int], title: str) -> dict[str, float]:
    """One more epoch under torch's profiler, attributed to operators."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        epoch()
    return operator_table(profiler, title)


def featurise(smiles: list[str], targets: list[float]) -> list[Data]:
    """One `Data` per molecule from OGB's ``smiles2graph``, as an OGB dataset stores them."""
    from ogb.utils import smiles2graph

    out = []
    for text, y in zip(smiles, targets, strict=True):
        graph = smiles2graph(text)
        out.append(
            Data(
                x=torch.from_numpy(graph["node_feat"]).long(),
                edge_index=torch.from_numpy(graph["edge_index"]).long(),
                edge_attr=torch.from_numpy(graph["edge_feat"]).long(),
                y=torch.tensor([y], dtype=torch.float32),
            )
        )
    return out


def cpu_code_paths() -> str:
    """The CPU code paths in effect (the same words as benchbase's identity uses)."""
    return f"{torch.backends.cpu.get_cpu_capability().lower()}+mkl-{os.environ.get('MKL_CBWR', 'auto').lower()}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="One reference loop of train_throughput.py, standalone.")
    parser.add_argument("--data", required=True, help="JSON file: smiles, targets, layers, hidden, dropout, batch_size")
    parser.add_argument("--side", choices=sorted(MODELS), default="ogb")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", action="store_true", help="after the timed epochs, profile one by torch operator")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.data) as fh:
        setup = json.load(fh)
    data = featurise(setup["smiles"], setup["targets"])
    model = MODELS[args.side](setup["layers"], setup["hidden"], setup["dropout"])
    epoch, _ = reference_epoch(model, data, setup["batch_size"])
    epoch()  # warm-up
    seconds, seen = [], 0
    for _ in range(args.epochs):
        start = time.perf_counter()
        seen = epoch()
        seconds.append(time.perf_counter() - start)
    if args.ops:
        profiled_epoch(epoch, f"standalone {args.side}, one epoch")
    summary = {
        "side": args.side,
        "graphs_per_s": round(seen / statistics.median(seconds), 1),
        "epoch_seconds": [round(s, 3) for s in seconds],
        "threads": torch.get_num_threads(),
        "cpu_numerics": cpu_code_paths(),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
