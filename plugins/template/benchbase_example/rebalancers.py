"""A rebalancer: turns class counts into a class-labelled loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from benchbase import Param, Rebalancer


class PowerWeights(Rebalancer):
    """Class weights ``w_c = n_c^-alpha`` in the cross-entropy (alpha = 1: inverse frequency, 0: none);
    classes never seen weigh 0. Multilabel: each label's positives weigh (negatives / positives)^alpha."""

    name = "example-power"
    description = "cross-entropy with class weights n_c^-alpha (benchbase-example)"
    param_spec = {"alpha": Param(0.5, "number", "0: no reweighting, 1: inverse frequency", min=0.0, max=2.0)}

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha
        self.weights: torch.Tensor | None = None
        self.pos_weight: torch.Tensor | None = None

    def fit(self, class_counts: np.ndarray, num_samples: int | None = None) -> None:
        super().fit(class_counts, num_samples)
        counts = self.class_counts
        seen = counts > 0
        weights = np.zeros_like(counts)
        weights[seen] = counts[seen] ** -self.alpha
        self.weights = torch.tensor(weights / max(weights.max(), 1e-12), dtype=torch.float32)
        if num_samples is not None:  # multilabel: counts are positives per label
            ratio = np.maximum(num_samples - counts, 0) / np.maximum(counts, 1)
            self.pos_weight = torch.tensor(np.where(seen, ratio, 1.0) ** self.alpha, dtype=torch.float32)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
        if multilabel:  # targets 0/1, NaN = missing
            known = torch.isfinite(targets)
            zeros = torch.zeros_like(targets)
            per_item = F.binary_cross_entropy_with_logits(
                logits, torch.where(known, targets, zeros), pos_weight=self.pos_weight, reduction="none"
            )
            return (per_item * known).sum() / known.sum().clamp(min=1)
        weight = self.weights[targets]
        per_item = F.cross_entropy(logits, targets, reduction="none")
        return (weight * per_item).sum() / weight.sum().clamp(min=1e-12)
