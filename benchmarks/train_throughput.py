"""Training throughput of benchbase's GIN path against two PyG references, in one process run.

    python benchmarks/train_throughput.py --size quick    # GIN 3 x 64, batch 128 (the default grid)
    python benchmarks/train_throughput.py --size paper    # GIN 5 x 300, batch 256

Four sides train on the QM9 HOMO-LUMO gap (`qm9/homo_lumo_gap`, a fixed subset of ``--graphs``
molecules), on the same molecules, features and standardised targets:

- project gin: the harness's machinery - the registry's dataset, batches cut from contiguous arrays
  (`benchbase.compute.batching`), the registered ``gin`` encoder (Hu et al. 2020: messages ``h_j + e_ij``
  with a learned self-loop term, MLP ``h -> 2h -> h``), a linear head, fused Adam - as
  `benchbase.compute.finetuning.FineTuner` trains;
- reference, same math: written the way OGB's molecule example trains (one `Data` per molecule,
  PyG's `DataLoader`, OGB's AtomEncoder/BondEncoder, a `MessagePassing` layer, plain Adam), with the
  project's layer math - what the machinery costs;
- project gine: the registered ``gine`` encoder, whose layer is OGB's example layer;
- OGB example, as it is: OGB's ``GINConv`` (``MLP((1 + eps) h_i + sum_j ReLU(h_j + e_ij))`` with
  BatchNorm inside the MLP, no self-loop edges) - what users compare with.

Every side uses the same threads and the process's CPU numerics (benchbase pins the portable paths
on import; ``BENCHBASE_NUMERICS=native`` before starting measures the fast ones). One warm-up
epoch per side, then ``--epochs`` timed epochs, alternating the sides epoch by epoch so that other
load hits all alike; graphs/s = graphs per epoch / median epoch seconds. The ratios printed: project
gin / same-math reference, project gin / OGB example, project gine / OGB example (same math), and
project gin / project gine (what the layers' difference costs). The last line is a JSON summary.

``--compile`` adds a fifth side, *project gin compiled*: the same encoder through
``torch.compile(dynamic=True)`` (inductor's C++ kernels); its warm-up epoch, which includes the
compilation, is printed separately. The harness does not compile (see benchmarks/README.md).
"""

from __future__ import annotations

# Imported before torch, as in a grid run: importing benchbase pins the portable CPU numerics.
import benchbase  # isort: skip  # noqa: F401

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

from benchbase.compute import loading
from benchbase.compute.batching import TensorGraphs, iterate_batches
from benchbase.compute.runtime import adam
from benchbase.contract.api import PluginError
from benchbase.contract.identity import cpu_numerics
from benchbase.contract.registry import load_registry

DATASET = "qm9/homo_lumo_gap"
COMPILED = "project gin compiled"  # the side --compile adds


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


SIZES = {
    # The quick profile's model (the default grid) and the paper-scale one (Hu et al. 2020, OGB).
    "quick": {"layers": 3, "hidden": 64, "dropout": 0.0, "batch_size": 128},
    "paper": {"layers": 5, "hidden": 300, "dropout": 0.5, "batch_size": 256},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick", help="model and batch size preset")
    parser.add_argument("--graphs", type=int, default=10000, help="QM9 subset size (the dataset's `subset`)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side, after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, every side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="add the project's gin through torch.compile")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
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

    def project(encoder_name: str, compiled: bool = False):
        """The registered encoder + a linear head on the graph embedding, FineTuner's loss."""
        params = {"layers": size["layers"], "hidden": size["hidden"], "dropout": size["dropout"], "pooling": "mean"}
        encoder = loading.build_encoder(registry, encoder_name, params, dataset.features)
        encoder.prepare(dataset)
        head = nn.Linear(encoder.out_dim, 1)
        optimizer = adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
        forward = torch.compile(encoder, dynamic=True) if compiled else encoder

        def epoch() -> int:
            encoder.train()
            head.train()
            seen = 0
            for batch in iterate_batches(graphs, indices, size["batch_size"], True, generator):
                target = batch.targets[task]
                keep = torch.isfinite(target)
                pred = head(forward(batch).graph).squeeze(-1)
                loss = torch.mean((pred[keep] - (target[keep] - mean) / std) ** 2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                seen += batch.num_graphs
            return seen

        return epoch, count(encoder, head)

    data = reference_data(graphs, (y - mean) / std)
    data = [data[i] for i in indices]

    def reference(model: nn.Module):
        """A list of Data, PyG's DataLoader, the model; plain Adam as OGB's example uses."""
        loader = DataLoader(data, batch_size=size["batch_size"], shuffle=True)
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

        return epoch, count(model)

    dims = (size["layers"], size["hidden"], size["dropout"])
    sides = {
        "project gin": project("gin"),
        "reference, same math (Hu et al. GIN)": reference(RefGIN(*dims)),
        "project gine": project("gine"),
        "OGB example, as it is": reference(OGBExampleGIN(*dims)),
    }
    if args.compile:
        sides[COMPILED] = project("gin", compiled=True)
    print(f"{DATASET} subset={args.graphs}: {len(indices)} labelled graphs (the plugin skips unparsable ones)")
    print(f"  {graphs.x.shape[0]} atoms, {graphs.edge_index.shape[1]} directed bonds")
    print(
        f"size {args.size}: {size['layers']} x {size['hidden']}, dropout {size['dropout']}, batch {size['batch_size']}"
    )
    print(f"threads: {torch.get_num_threads()}; CPU numerics: {cpu_numerics()}")
    for name, (_, params) in sides.items():
        print(f"  {name:<38} {params:>9,} parameters")
    print(f"1 warm-up + {args.epochs} timed epochs per side, the sides alternating epoch by epoch", flush=True)
    for name, (run, _) in sides.items():
        start = time.perf_counter()
        run()
        if name == COMPILED:
            print(f"  warm-up epoch of the compiled side (compilation included): {time.perf_counter() - start:.1f}s")
    times: dict[str, list[float]] = {name: [] for name in sides}
    graphs_per_epoch = {}
    for epoch in range(args.epochs):
        for name, (run, _) in sides.items():
            start = time.perf_counter()
            graphs_per_epoch[name] = run()
            times[name].append(time.perf_counter() - start)
        print(f"  epoch {epoch}: " + ", ".join(f"{n.split(',')[0]} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
    rate = {name: graphs_per_epoch[name] / statistics.median(t) for name, t in times.items()}
    for name, value in rate.items():
        print(f"{name:<38} {value:9.1f} graphs/s (median epoch)")
    same = rate["project gin"] / rate["reference, same math (Hu et al. GIN)"]
    as_is = rate["project gin"] / rate["OGB example, as it is"]
    gine = rate["project gine"] / rate["OGB example, as it is"]
    print(f"ratio project gin / same-math reference: {same:.3f}")
    print(f"ratio project gin / OGB example as it is: {as_is:.3f}")
    print(f"ratio project gine / OGB example (the same math): {gine:.3f}")
    print(f"the layers' difference: project gin / project gine {rate['project gin'] / rate['project gine']:.3f}")
    if args.compile:
        print(f"ratio compiled / eager project gin: {rate[COMPILED] / rate['project gin']:.3f}")
    summary = {
        "size": args.size,
        "graphs": len(indices),
        "threads": args.threads,
        "cpu_numerics": cpu_numerics(),
        "graphs_per_s": {name: round(value, 1) for name, value in rate.items()},
        "ratio_same_math": round(same, 3),
        "ratio_ogb_example": round(as_is, 3),
        "ratio_gine_ogb_example": round(gine, 3),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    try:
        main()
    except PluginError as exc:
        raise SystemExit(f"error: {exc}") from None
