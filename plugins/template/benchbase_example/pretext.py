"""A pretext task: self-supervised labels from unlabeled graphs, a head, and one step of prediction."""

from __future__ import annotations

import numpy as np
import torch
from benchbase import Dataset, Encoder, GraphBatch, Param, PretextContext, PretextOutput, PretextTask
from torch import nn


class Masking(PretextTask):
    """Hides the first categorical node feature of a share of the nodes (writing benchbase's mask
    token) and predicts it from the rest (Hu et al. 2020). Class-labelled: its class counts let a
    rebalancer reweight rare classes."""

    name = "example-masking"
    description = "mask the first node feature of a share of the nodes, predict it (benchbase-example)"
    requires = frozenset({"x_categorical"})
    param_spec = {"rate": Param(0.15, "number", "share of nodes masked", min=0.0, max=1.0, min_open=True)}

    def __init__(self, rate: float = 0.15) -> None:
        self.rate = rate
        self.classes = 0
        self.counts: np.ndarray | None = None

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        """Class counts of the masked column over the nodes of the pretraining pool."""
        arrays = dataset.arrays()
        self.classes = dataset.features.node_vocab[0]
        in_pool = np.zeros(arrays.num_graphs, dtype=bool)
        in_pool[pool] = True
        nodes = np.repeat(in_pool, np.diff(arrays.node_ptr))
        self.counts = np.bincount(arrays.x[nodes, 0], minlength=self.classes)

    def class_counts(self) -> np.ndarray | None:
        return self.counts

    def build_head(self, encoder: Encoder) -> nn.Module:
        return nn.Linear(encoder.out_dim, self.classes)

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        # Random choices come from ctx.generator only: the same seed gives the same step.
        chosen = torch.rand(batch.x.shape[0], generator=ctx.generator) < self.rate
        chosen[torch.randint(batch.x.shape[0], (1,), generator=ctx.generator)] = True  # never an empty step
        x = batch.x.clone()
        x[chosen, 0] = self.classes  # the mask token of column 0 is its vocabulary size
        embeddings = encoder(batch.replace(x=x))
        return PretextOutput(
            logits=head(embeddings.node[chosen]), targets=batch.x[chosen, 0], item_graph=batch.batch[chosen]
        )
