"""Loss-rebalancing strategies: class counts in, a class-labelled loss (and optionally per-class
selection weights for data-side resampling) out. Generic: classes are just indices."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchbase.api import Rebalancer


def _masked_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight_per_label: torch.Tensor | None,
    neg_weight_per_label: torch.Tensor | None = None,
) -> torch.Tensor:
    known = torch.isfinite(targets)
    t = torch.where(known, targets, torch.zeros_like(targets))
    loss = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    if pos_weight_per_label is not None:
        neg = neg_weight_per_label if neg_weight_per_label is not None else torch.ones_like(pos_weight_per_label)
        loss = loss * torch.where(t > 0.5, pos_weight_per_label, neg)
    loss = loss * known
    return loss.sum() / known.sum().clamp(min=1)


class NoRebalancing(Rebalancer):
    name = "none"
    description = "Plain cross-entropy: every item weighs the same."

    def loss(self, logits, targets, multilabel=False):
        if multilabel:
            return _masked_bce(logits, targets, None)
        return F.cross_entropy(logits, targets)


class InverseFrequency(Rebalancer):
    name = "inverse-frequency"
    description = (
        "Class weight w_c = n / (C * n_c) (classes never seen get weight 0), normalised to mean 1 over seen classes."
    )

    def class_weights(self) -> torch.Tensor:
        counts = self.class_counts
        seen = counts > 0
        w = np.zeros_like(counts)
        w[seen] = counts[seen].sum() / (seen.sum() * counts[seen])
        return torch.tensor(w, dtype=torch.float32)

    def loss(self, logits, targets, multilabel=False):
        w = self.class_weights().to(logits.device)
        if multilabel:
            return _masked_bce(logits, targets, w)
        return F.cross_entropy(logits, targets, weight=w)
