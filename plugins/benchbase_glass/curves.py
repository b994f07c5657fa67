"""Validation curves of one glass run: per-epoch validation Pearson r (per configuration) of each
trained task, then the test r, for checking that a study's budget reaches the plateau and for
controlled comparisons (raw vs per-configuration-centred targets, say). Used by the glass README::

    python -m benchbase_glass.curves --centred --epochs 10 --hidden 32 --steps 4

It runs the harness's own fine-tuning through the public API (`benchbase.fine_tunings` sets the
run up from a grid as ``benchbase run`` would; `benchbase.FineTuner.fit`'s ``on_epoch`` callback
reports each epoch) on ``glass/botan`` at T = 0.44, time index 7, with one thread; nothing is
stored. ``--pair-mlp`` instead fits a plain MLP (3-64-64-1) from the pair vector alone to bond
motion on the same split: no message passing, the smallest model in which to see the effect of
``--centred``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchbase import EpochEnd, FineTuner, center_per_graph, fine_tunings
from benchbase_glass.metrics import per_graph_r


def mean_r(tuner: FineTuner, indices: np.ndarray) -> dict[str, float]:
    """Mean over configurations of the within-configuration Pearson r, per trained task."""
    out = {}
    positions = {int(g): i for i, g in enumerate(indices)}
    for task, pred in tuner.predict(indices).items():
        if tuner.weights[task] == 0:
            continue
        unit = np.array([positions[int(g)] for g in pred.graph])
        values, defined = per_graph_r(pred, unit, len(indices))
        out[task] = float(values[defined].mean()) if defined.any() else float("nan")
    return out


def print_epoch(valid: np.ndarray) -> Callable[[EpochEnd], None]:
    """An ``on_epoch`` callback: the epoch's validation loss and validation r per trained task."""

    def report(end: EpochEnd) -> None:
        r = " ".join(f"{k} r {v:.3f}" for k, v in mean_r(end.tuner, valid).items())
        print(f"epoch {end.epoch + 1}: valid loss {end.valid_loss:.4f} {r}")

    return report


def pair_mlp(args: argparse.Namespace, dataset, graphs, split) -> None:
    """Bond motion from the pair vector alone, raw or centred per configuration (`--pair-mlp`)."""
    torch.manual_seed(args.seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)

    def rows(g: int) -> tuple[torch.Tensor, torch.Tensor]:
        b = graphs.batch(np.array([g]))
        keep = b.target_masks["bond_motion"]
        return b.edge_attr[keep], b.targets["bond_motion"][keep]

    train = [rows(int(g)) for g in split["train"]]
    values = torch.cat([y for _, y in train])
    mean, std = values.mean(), values.std()
    generator = torch.Generator().manual_seed(args.seed)
    for _ in range(args.epochs):
        for i in torch.randperm(len(train), generator=generator).tolist():
            x, y = train[i]
            pred, target = net(x).squeeze(-1), (y - mean) / std
            if args.centred:
                zeros = torch.zeros(len(y), dtype=torch.long)
                pred, target = center_per_graph(pred, zeros, 1), center_per_graph(target, zeros, 1)
            loss = torch.mean((pred - target) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        r = [np.corrcoef(net(x).squeeze(-1).numpy(), y.numpy())[0, 1] for x, y in map(rows, split["test"])]
    print(f"pair MLP, {'centred' if args.centred else 'raw'}: test bond_motion r {np.mean(r):.3f}")


def grid_for(args: argparse.Namespace) -> dict[str, Any]:
    p = args.p
    return {
        "seeds": [args.seed],
        "train": {
            "epochs": args.epochs,
            "patience": args.epochs,
            "batch_size": 1,
            "lr": args.lr,
            "head_hidden": args.head_hidden,
            "grad_clip": args.grad_clip,
            "center_per_graph": args.centred,
            "task_weights": {"propensity": p, "bond_motion": round(1 - p, 6)},
        },
        "params": {
            "dataset": {"glass/botan": {"augment": not args.no_augment}},
            "encoder": {"botan": {"hidden": args.hidden, "steps": args.steps}},
            "protocol": {"glass-time": {"temperature": 0.44, "time_index": 7}},
        },
        "study": [{"datasets": ["glass/botan"], "protocols": ["glass-time"], "encoders": ["botan"]}],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--centred", action="store_true", help="train.center_per_graph = true")
    parser.add_argument("--no-augment", action="store_true", help="no cube-symmetry augmentation")
    parser.add_argument("--p", type=float, default=0.4, help="propensity weight (bond motion: 1 - p)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--head-hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pair-mlp", action="store_true", help="a plain MLP on the pair vector (no GNN)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    run = next(fine_tunings(grid_for(args)))  # one run; the model is built only when used
    if args.pair_mlp:
        pair_mlp(args, run.dataset, run.graphs, run.split)
        return
    tuner = run.tuner
    info = tuner.fit(run.split, on_epoch=print_epoch(run.split["valid"]))
    test = mean_r(tuner, run.split["test"])
    print(f"best epoch {info['best_epoch'] + 1}; test " + " ".join(f"{k} r {v:.3f}" for k, v in test.items()))
    print(f"seconds {time.perf_counter() - started:.0f}")


if __name__ == "__main__":
    main()
