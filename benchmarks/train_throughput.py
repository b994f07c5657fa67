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

The references also run **standalone**: each in a fresh interpreter (`reference_loops.py`, which
imports nothing of benchbase and featurises the same molecules with OGB's ``smiles2graph``), once
before and once after the in-process sides, in the same invocation and the same environment (so
the same CPU numerics). The standalone ratio, project / mean of the two standalone runs, compares
with the loop a user actually runs; the in-process ratio shows what sharing a process costs the
reference. ``--sides ogb`` times one side alone in the process and ``--reference-data
smiles2graph`` gives the in-process references the standalone ones' data, to tell the causes apart.

``--compile`` adds a fifth side, *project gin compiled*: the same encoder through
``torch.compile(dynamic=True)`` (inductor's C++ kernels); its warm-up epoch, which includes the
compilation, is printed separately. The harness does not compile (see benchmarks/README.md).
"""

from __future__ import annotations

# Imported before torch, as in a grid run: importing benchbase pins the portable CPU numerics.
import benchbase  # isort: skip  # noqa: F401

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from reference_loops import (
    MODELS,
    OGBExampleGIN,
    RefGIN,
    featurise,
    parameter_count,
    profiled_epoch,
    reference_epoch,
)
from torch import nn
from torch_geometric.data import Data

from benchbase.compute import loading
from benchbase.compute.batching import TensorGraphs, iterate_batches
from benchbase.compute.runtime import adam
from benchbase.contract.api import PluginError
from benchbase.contract.identity import cpu_numerics
from benchbase.contract.registry import load_registry

DATASET = "qm9/homo_lumo_gap"
COMPILED = "project gin compiled"  # the side --compile adds


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


SIZES = {
    # The quick profile's model (the default grid) and the paper-scale one (Hu et al. 2020, OGB).
    "quick": {"layers": 3, "hidden": 64, "dropout": 0.0, "batch_size": 128},
    "paper": {"layers": 5, "hidden": 300, "dropout": 0.5, "batch_size": 256},
}


SIDE_NAMES = {
    "gin": "project gin",
    "same-math": "reference, same math (Hu et al. GIN)",
    "gine": "project gine",
    "ogb": "OGB example, as it is",
}


def standalone_setup(dataset, indices: np.ndarray, y: torch.Tensor, size: dict, folder: str) -> str:
    """The molecules and standardised targets a standalone reference trains on, as a JSON file."""
    smiles = dataset.smiles()
    if len(smiles) != len(y):
        raise PluginError(f"{DATASET}: {len(smiles)} SMILES for {len(y)} graphs; cannot hand the same molecules over")
    path = os.path.join(folder, "molecules.json")
    with open(path, "w") as fh:
        json.dump({"smiles": [smiles[i] for i in indices], "targets": [float(y[i]) for i in indices], **size}, fh)
    return path


def standalone_command(side: str, data_file: str, args: argparse.Namespace) -> list[str]:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_loops.py")
    command = [sys.executable, script, "--data", data_file, "--side", side, "--epochs", str(args.epochs)]
    return command + ["--threads", str(args.threads), "--seed", str(args.seed)]


def standalone(side: str, data_file: str, args: argparse.Namespace) -> float:
    """Graphs/s of one reference loop in a fresh interpreter (benchmarks/reference_loops.py), as a
    user runs it; the environment, and so the CPU numerics, are this process's."""
    out = subprocess.run(standalone_command(side, data_file, args), check=True, capture_output=True, text=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    if summary["cpu_numerics"] != cpu_numerics():
        raise RuntimeError(f"standalone {side} ran with {summary['cpu_numerics']}, this process with {cpu_numerics()}")
    return float(summary["graphs_per_s"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick", help="model and batch size preset")
    parser.add_argument("--graphs", type=int, default=10000, help="QM9 subset size (the dataset's `subset`)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per side, after one warm-up epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, every side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="add the project's gin through torch.compile")
    parser.add_argument(
        "--sides",
        default=",".join(SIDE_NAMES),
        help=f"in-process sides, comma-separated among {', '.join(SIDE_NAMES)} (to look at one alone)",
    )
    parser.add_argument(
        "--standalone",
        default="same-math,ogb",
        help="references also run standalone in a fresh process before and after the in-process sides "
        "(comma-separated among same-math, ogb; 'none' for none)",
    )
    parser.add_argument(
        "--reference-data",
        choices=["project", "smiles2graph"],
        default="project",
        help="in-process references train on Data copied out of the project's arrays, or featurised by "
        "OGB's smiles2graph as the standalone ones are",
    )
    parser.add_argument(
        "--ops",
        action="store_true",
        help="after the timing, profile one epoch of each in-process side and of each standalone reference "
        "by torch operator",
    )
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    chosen = [s.strip() for s in args.sides.split(",") if s.strip()]
    alone = [] if args.standalone == "none" else [s.strip() for s in args.standalone.split(",") if s.strip()]
    for side in chosen + alone:
        if side not in SIDE_NAMES or (side in alone and side not in MODELS):
            raise SystemExit(f"error: unknown side {side!r}")
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
    folder = tempfile.mkdtemp(prefix="benchbase-throughput-")
    data_file = standalone_setup(dataset, indices, (y - mean) / std, size, folder)

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

        return epoch, parameter_count(encoder, head)

    if args.reference_data == "project":
        data = reference_data(graphs, (y - mean) / std)
        data = [data[i] for i in indices]
    else:
        with open(data_file) as fh:
            setup = json.load(fh)
        data = featurise(setup["smiles"], setup["targets"])

    dims = (size["layers"], size["hidden"], size["dropout"])
    makers = {
        "gin": lambda: project("gin"),
        "same-math": lambda: reference_epoch(RefGIN(*dims), data, size["batch_size"]),
        "gine": lambda: project("gine"),
        "ogb": lambda: reference_epoch(OGBExampleGIN(*dims), data, size["batch_size"]),
    }
    sides = {SIDE_NAMES[side]: makers[side]() for side in chosen}
    if args.compile:
        sides[COMPILED] = project("gin", compiled=True)
    print(f"{DATASET} subset={args.graphs}: {len(indices)} labelled graphs (the plugin skips unparsable ones)")
    print(f"  {graphs.x.shape[0]} atoms, {graphs.edge_index.shape[1]} directed bonds")
    print(
        f"size {args.size}: {size['layers']} x {size['hidden']}, dropout {size['dropout']}, batch {size['batch_size']}"
    )
    print(f"threads: {torch.get_num_threads()}; CPU numerics: {cpu_numerics()}; reference data: {args.reference_data}")
    for name, (_, params) in sides.items():
        print(f"  {name:<38} {params:>9,} parameters")
    before = {side: standalone(side, data_file, args) for side in alone}
    for side, value in before.items():
        print(f"  standalone {side} (before): {value:.1f} graphs/s", flush=True)
    rate = time_in_process(sides, args.epochs)
    after = {side: standalone(side, data_file, args) for side in alone}
    for side, value in after.items():
        print(f"  standalone {side} (after): {value:.1f} graphs/s", flush=True)
    if args.ops:
        for name, (run, _) in sides.items():
            profiled_epoch(run, f"{name}, in this process, one epoch")
        for side in alone:
            print(
                subprocess.run(
                    standalone_command(side, data_file, args) + ["--ops"], check=True, capture_output=True, text=True
                ).stdout.rsplit("\n", 2)[0]
            )
    shutil.rmtree(folder, ignore_errors=True)
    for name, value in rate.items():
        print(f"{name:<38} {value:9.1f} graphs/s (median epoch)")
    for side in alone:
        mean = (before[side] + after[side]) / 2
        print(f"{'standalone ' + SIDE_NAMES[side]:<38} {mean:9.1f} graphs/s (mean of before and after)")
    ratios = report_ratios(rate, before, after, args.compile)
    summary = {
        "size": args.size,
        "graphs": len(indices),
        "threads": args.threads,
        "cpu_numerics": cpu_numerics(),
        "reference_data": args.reference_data,
        "graphs_per_s": {name: round(value, 1) for name, value in rate.items()},
        "standalone_graphs_per_s": {s: [round(before[s], 1), round(after[s], 1)] for s in alone},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }
    print(json.dumps(summary))
    return summary


def time_in_process(sides: dict, epochs: int) -> dict[str, float]:
    """One warm-up epoch per side, then `epochs` timed ones, the sides alternating epoch by epoch so
    that other load hits all alike. Returns graphs/s per side (graphs per epoch / median epoch)."""
    print(f"1 warm-up + {epochs} timed epochs per side in this process, the sides alternating", flush=True)
    for name, (run, _) in sides.items():
        start = time.perf_counter()
        run()
        if name == COMPILED:
            print(f"  warm-up epoch of the compiled side (compilation included): {time.perf_counter() - start:.1f}s")
    times: dict[str, list[float]] = {name: [] for name in sides}
    graphs_per_epoch = {}
    for epoch in range(epochs):
        for name, (run, _) in sides.items():
            start = time.perf_counter()
            graphs_per_epoch[name] = run()
            times[name].append(time.perf_counter() - start)
        print(f"  epoch {epoch}: " + ", ".join(f"{n.split(',')[0]} {t[-1]:.2f}s" for n, t in times.items()), flush=True)
    return {name: graphs_per_epoch[name] / statistics.median(t) for name, t in times.items()}


def report_ratios(rate: dict[str, float], before: dict, after: dict, compiled: bool) -> dict[str, float]:
    """Print and return every ratio the measured sides allow."""
    ratios: dict[str, float] = {}

    def ratio(key: str, text: str, num: float | None, den: float | None) -> None:
        if num is not None and den is not None:
            ratios[key] = num / den
            print(f"ratio {text}: {num / den:.3f}")

    gin, gine = rate.get(SIDE_NAMES["gin"]), rate.get(SIDE_NAMES["gine"])
    ratio("gin_same_math", "project gin / same-math reference (in process)", gin, rate.get(SIDE_NAMES["same-math"]))
    ratio("gin_ogb", "project gin / OGB example (in process)", gin, rate.get(SIDE_NAMES["ogb"]))
    ratio("gine_ogb", "project gine / OGB example, the same math (in process)", gine, rate.get(SIDE_NAMES["ogb"]))
    for side in before:
        mean = (before[side] + after[side]) / 2
        ratio(f"gin_{side}_standalone", f"project gin / standalone {SIDE_NAMES[side]}", gin, mean)
        if side == "ogb":
            ratio("gine_ogb_standalone", "project gine / standalone OGB example", gine, mean)
        ratio(
            f"{side}_in_process_vs_standalone",
            f"in-process / standalone {SIDE_NAMES[side]}",
            rate.get(SIDE_NAMES[side]),
            mean,
        )
    ratio("gin_gine", "the layers' difference, project gin / project gine", gin, gine)
    if compiled:
        ratio("compiled_eager", "compiled / eager project gin", rate.get(COMPILED), gin)
    return ratios


if __name__ == "__main__":
    try:
        main()
    except PluginError as exc:
        raise SystemExit(f"error: {exc}") from None
