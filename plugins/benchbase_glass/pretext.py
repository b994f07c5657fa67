"""`edge-pretraining`: BOTAN's "train on the edge target first (p = 0), then fine-tune".

The step regresses the dataset's bond-motion target on the pretraining pool with its own head
(standardised with the pool's mean and std, MSE on the BOTAN rows of `target_masks`; with the train
setting ``center_per_graph``, on targets and predictions each centred per configuration, as in
fine-tuning). Its head is BOTAN's edge decoder, a two-layer MLP of width `hidden` (64-64-1; 0 gives a
linear head). It reads labels, so the glass protocols restrict its pool to training configurations
(see `benchbase_glass.protocols`). Encoders without edge latents get a head on
concat(node[src], node[dst]).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchbase import (
    Dataset,
    Encoder,
    GraphBatch,
    Param,
    PluginError,
    PretextContext,
    PretextOutput,
    PretextTask,
    center_per_graph,
)


def _decoder(width: int, hidden: int) -> nn.Module:
    if not hidden:
        return nn.Linear(width, 1)
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class _EdgeHead(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.edge = _decoder(width, hidden)
        self.pair = _decoder(2 * width, hidden)

    def forward(self, emb, batch: GraphBatch) -> torch.Tensor:
        if emb.edge is not None:
            return self.edge(emb.edge).squeeze(-1)
        src, dst = batch.edge_index
        return self.pair(torch.cat([emb.node[src], emb.node[dst]], dim=-1)).squeeze(-1)


class EdgePretraining(PretextTask):
    name = "edge-pretraining"
    description = "Pretrain on the bond-motion edge target (BOTAN p = 0), then fine-tune"
    requires = frozenset({"glass"})
    param_spec = {
        "target": Param("bond_motion", "str", "the edge target regressed"),
        "hidden": Param(64, "int", "width of the two-layer MLP edge decoder (0: linear)", min=0),
    }
    class_labelled = False
    reads_labels = True

    def __init__(self, target: str = "bond_motion", hidden: int = 64) -> None:
        self.target = target
        self.hidden = int(hidden)
        self.mean, self.std = 0.0, 1.0

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        a = dataset.arrays()
        if self.target not in a.targets or dataset.task(self.target).level != "edge":
            raise PluginError(f"edge-pretraining needs an edge target {self.target!r}; {dataset.name!r} has none")
        pool = np.asarray(pool, dtype=np.int64)
        lengths = a.edge_ptr[pool + 1] - a.edge_ptr[pool]
        rows = np.concatenate([np.arange(a.edge_ptr[g], a.edge_ptr[g] + n) for g, n in zip(pool, lengths, strict=True)])
        values = a.targets[self.target][rows]
        keep = np.isfinite(values)
        if self.target in a.target_masks:
            keep &= a.target_masks[self.target][rows]
        if keep.sum() < 2:
            raise PluginError("edge-pretraining: fewer than two labelled edges in the pretraining pool")
        self.mean, self.std = float(values[keep].mean()), float(values[keep].std()) or 1.0

    def build_head(self, encoder: Encoder) -> nn.Module:
        return _EdgeHead(encoder.out_dim, self.hidden)

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        y = batch.targets[self.target]
        keep = torch.isfinite(y)
        if self.target in batch.target_masks:
            keep &= batch.target_masks[self.target]
        pred = head(encoder(batch), batch)
        if not bool(keep.any()):  # a batch without labelled pairs contributes nothing
            return PretextOutput(loss=pred.sum() * 0.0)
        standard, pred = (y[keep] - self.mean) / self.std, pred[keep]
        if ctx.center_per_graph:  # the per-configuration level of bond motion carries no loss
            graph = batch.edge_batch[keep]
            standard = center_per_graph(standard, graph, batch.num_graphs)
            pred = center_per_graph(pred, graph, batch.num_graphs)
        return PretextOutput(loss=torch.mean((pred - standard) ** 2))


PRETEXT_TASKS = [EdgePretraining]
