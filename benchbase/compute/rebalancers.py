"""Loss-rebalancing strategies: class counts in, a class-labelled loss (and optionally per-class
selection weights for data-side resampling) out. Generic: classes are just indices.

Notation: ``n_c`` is the count of class c on the pool (`Rebalancer.fit`), ``N = sum_c n_c`` for
multiclass counts, ``C+`` the number of classes with ``n_c > 0``.

**Multiclass** (targets are class indices): weight-based strategies compute a weight ``w_c`` per class
and the loss is PyTorch's weighted mean ``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` (so only the ratios of
the weights matter; a batch whose targets all weigh 0 gives 0, not NaN).

**Multilabel** (targets 0/1, NaN = missing): counts are positives per label and ``S`` =
`num_samples` is the number of items. Each label is treated as its own two-class problem with
counts ``(S - n_c, n_c)`` (negatives, positives): the strategy's multiclass weight formula applied to
that pair gives a negative weight and a positive weight for label c, and the loss is
``sum_(i,c known) a_ic BCE_ic / #known`` with ``a_ic`` the positive or negative weight of label c.

Classes that never occur in the pool (``n_c = 0``) get weight 0 in the weight-based strategies (they
have no frequency to correct; a batch made only of them contributes nothing); the logit-adjustment
and resampling strategies replace a zero count by a pseudo-count of 1/2 so that logs stay finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchbase.contract.api import PluginError, Rebalancer
from benchbase.contract.params import Param, spec_of, validate

PSEUDO_COUNT = 0.5  # stands in for a zero count where a log or a power of it is taken


def _pseudo(counts: np.ndarray) -> np.ndarray:
    return np.where(counts > 0, counts, PSEUDO_COUNT)


def _masked_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pos_weight_per_label: torch.Tensor | None,
    neg_weight_per_label: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean binary cross-entropy over the known (finite) targets, positives and negatives weighted."""
    known = torch.isfinite(targets)
    t = torch.where(known, targets, torch.zeros_like(targets))
    loss = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    if pos_weight_per_label is not None:
        neg = neg_weight_per_label if neg_weight_per_label is not None else torch.ones_like(pos_weight_per_label)
        loss = loss * torch.where(t > 0.5, pos_weight_per_label, neg)
    loss = loss * known
    return loss.sum() / known.sum().clamp(min=1)


def _weighted_ce(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum_i w_{y_i} CE_i / sum_i w_{y_i}`` (PyTorch's weighted mean), 0 when all weights are 0."""
    per_item = F.cross_entropy(logits, targets, reduction="none")
    w = weight[targets]
    return (w * per_item).sum() / w.sum().clamp_min(1e-12)


class CountRebalancer(Rebalancer):
    """Shared mechanics: keyword parameters checked against `defaults`, counts validated in `fit`."""

    def __init__(self, **params: Any) -> None:
        self.params = validate(spec_of(type(self)), params, f"rebalancer {self.name!r}")
        self.class_counts: np.ndarray | None = None
        self.num_samples: int | None = None

    def fit(self, class_counts: np.ndarray, num_samples: int | None = None) -> None:
        counts = np.asarray(class_counts, dtype=np.float64)
        if counts.ndim != 1 or counts.size == 0:
            raise PluginError(
                f"rebalancer {self.name!r}: class counts must be a non-empty 1-D array, got {counts.shape}"
            )
        if not np.isfinite(counts).all() or (counts < 0).any():
            raise PluginError(f"rebalancer {self.name!r}: class counts must be finite and non-negative")
        if num_samples is not None and num_samples < counts.max():
            raise PluginError(
                f"rebalancer {self.name!r}: num_samples={num_samples} is below a class count ({counts.max():g})"
            )
        self.class_counts = counts
        self.num_samples = None if num_samples is None else int(num_samples)

    def _counts_for(self, logits: torch.Tensor) -> np.ndarray:
        if self.class_counts is None:
            raise PluginError(f"rebalancer {self.name!r} was used before fit(class_counts)")
        if logits.shape[-1] != self.class_counts.size:
            raise PluginError(
                f"rebalancer {self.name!r}: logits have {logits.shape[-1]} classes, "
                f"the fitted counts {self.class_counts.size}"
            )
        return self.class_counts

    def _binary_counts(self, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(negatives, positives) per label, for multilabel losses."""
        pos = self._counts_for(logits)
        if self.num_samples is None:
            raise PluginError(f"rebalancer {self.name!r}: multilabel counts need num_samples in fit()")
        return self.num_samples - pos, pos


class WeightedRebalancer(CountRebalancer):
    """A strategy defined by a per-class weight formula `weights(counts)` (see the module docstring)."""

    def weights(self, counts: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def class_weights(self) -> torch.Tensor:
        """The multiclass weights w_c of the fitted counts."""
        if self.class_counts is None:
            raise PluginError(f"rebalancer {self.name!r} was used before fit(class_counts)")
        return torch.tensor(self.weights(self.class_counts), dtype=torch.float32)

    def binary_weights(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(negative, positive) weight per label for multilabel targets."""
        neg, pos = self._binary_counts(logits)
        w = np.stack([self.weights(np.array([n, p])) for n, p in zip(neg, pos, strict=True)])
        return torch.tensor(w[:, 0], dtype=torch.float32), torch.tensor(w[:, 1], dtype=torch.float32)

    def loss(self, logits, targets, multilabel=False):
        if multilabel:
            neg, pos = self.binary_weights(logits)
            return _masked_bce(logits, targets, pos.to(logits.device), neg.to(logits.device))
        self._counts_for(logits)
        return _weighted_ce(logits, targets, self.class_weights().to(logits.device))


class NoRebalancing(CountRebalancer):
    name = "none"
    description = "Plain cross-entropy: every item weighs the same."

    def fit(self, class_counts: np.ndarray, num_samples: int | None = None) -> None:
        # Counts are not needed; accept whatever the task reports.
        self.class_counts = np.asarray(class_counts, dtype=np.float64)
        self.num_samples = num_samples

    def loss(self, logits, targets, multilabel=False):
        if multilabel:
            return _masked_bce(logits, targets, None)
        return F.cross_entropy(logits, targets)


class InverseFrequency(WeightedRebalancer):
    """``w_c = N / (C+ n_c)`` for ``n_c > 0``, else 0 (the frequency-weighted mean weight is 1)."""

    name = "inverse-frequency"
    description = "Class weight w_c = N / (C+ n_c), 0 for classes absent from the pool."

    def weights(self, counts: np.ndarray) -> np.ndarray:
        seen = counts > 0
        w = np.zeros_like(counts, dtype=np.float64)
        w[seen] = counts[seen].sum() / (seen.sum() * counts[seen])
        return w


class SqrtInverseFrequency(WeightedRebalancer):
    """``w_c = N n_c^(-1/2) / sum_k n_k^(1/2)`` for ``n_c > 0``, else 0 (a softer inverse frequency,
    as in Mahajan et al. 2018 / Mikolov et al.'s sub-sampling; frequency-weighted mean weight 1)."""

    name = "sqrt-inverse-frequency"
    description = "Class weight w_c proportional to n_c^-1/2, 0 for classes absent from the pool."

    def weights(self, counts: np.ndarray) -> np.ndarray:
        seen = counts > 0
        w = np.zeros_like(counts, dtype=np.float64)
        w[seen] = counts[seen].sum() / (np.sqrt(counts[seen]) * np.sqrt(counts[seen]).sum())
        return w


class ClassBalanced(WeightedRebalancer):
    """Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples":
    ``E_c = (1 - beta^n_c) / (1 - beta)``, ``w_c = (1 / E_c) * C+ / sum_k (1 / E_k)`` over seen classes
    (weights sum to C+), 0 for ``n_c = 0``. beta -> 0 is no re-weighting, beta -> 1 inverse frequency."""

    name = "class-balanced"
    description = "Weights 1 / effective number (1 - beta^n_c) / (1 - beta) (Cui et al. 2019), beta 0.999."
    param_spec = {"beta": Param(0.999, "number", "effective-number decay", min=0.0, max=1.0, max_open=True)}

    def weights(self, counts: np.ndarray) -> np.ndarray:
        beta = float(self.params["beta"])
        seen = counts > 0
        w = np.zeros_like(counts, dtype=np.float64)
        effective = (1.0 - np.power(beta, counts[seen])) / (1.0 - beta)
        w[seen] = 1.0 / effective
        w[seen] *= seen.sum() / w[seen].sum()
        return w


class Focal(CountRebalancer):
    """Lin et al. 2017, "Focal Loss for Dense Object Detection": ``FL_i = -(1 - p_t)^gamma log p_t``
    with ``p_t`` the predicted probability of the true class (softmax, multiclass) or of the true
    0/1 value per label (sigmoid, multilabel); mean over items (known entries). Count-free: it
    down-weights items the model already gets right, whichever class they belong to. gamma = 0 is
    plain cross-entropy."""

    name = "focal"
    description = "Focal loss -(1 - p_t)^gamma log p_t (Lin et al. 2017), gamma 2."
    param_spec = {"gamma": Param(2.0, "number", "focusing exponent; 0 is cross-entropy", min=0.0)}

    def loss(self, logits, targets, multilabel=False):
        gamma = float(self.params["gamma"])
        if multilabel:
            known = torch.isfinite(targets)
            t = torch.where(known, targets, torch.zeros_like(targets))
            bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")  # = -log p_t
            focal = (1.0 - torch.exp(-bce)).pow(gamma) * bce * known
            return focal.sum() / known.sum().clamp(min=1)
        log_pt = F.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
        return (-(1.0 - log_pt.exp()).pow(gamma) * log_pt).mean()


class LogitAdjustment(CountRebalancer):
    """Menon et al. 2021, "Long-tail learning via logit adjustment" (the logit-adjusted loss):
    multiclass ``CE(z + tau log pi, y)`` with the class prior ``pi_c = n_c / N``; multilabel, per label,
    ``BCE(z_c + tau log(n_c / (S - n_c)), y_c)`` (the binary prior log-odds). Zero counts (positives
    or negatives) are replaced by 1/2. Only the loss is adjusted: predictions use the raw logits,
    which the adjustment makes balanced."""

    name = "logit-adjustment"
    description = "Cross-entropy on logits + tau log prior (Menon et al. 2021), tau 1."
    param_spec = {"tau": Param(1.0, "number", "scale of the log-prior offsets")}

    def offsets(self, logits: torch.Tensor, multilabel: bool) -> torch.Tensor:
        tau = float(self.params["tau"])
        if multilabel:
            neg, pos = self._binary_counts(logits)
            return torch.tensor(tau * np.log(_pseudo(pos) / _pseudo(neg)), dtype=logits.dtype)
        counts = _pseudo(self._counts_for(logits))
        return torch.tensor(tau * np.log(counts / counts.sum()), dtype=logits.dtype)

    def loss(self, logits, targets, multilabel=False):
        adjusted = logits + self.offsets(logits, multilabel).to(logits.device)
        if multilabel:
            return _masked_bce(adjusted, targets, None)
        return F.cross_entropy(adjusted, targets)


class MaskedResampling(NoRebalancing):
    """Data-side rebalancing (after Wang et al. 2023 on imbalance in node masking): the loss is plain
    cross-entropy, but the pretext task picks which items (atoms, bonds) to corrupt with probability
    proportional to ``s_c = n_c^(-alpha)`` for the item's class c (zero counts count as 1/2);
    alpha = 0 is uniform masking, alpha = 1 makes every class equally likely to be masked in
    expectation. Weights are scaled so that their frequency-weighted mean is 1. Tasks that do not
    choose items by class (graph-level multilabel tasks) ignore them."""

    name = "masked-resampling"
    data_side = True
    description = "Mask items with probability proportional to count^-alpha (data side), plain loss, alpha 1."
    param_spec = {"alpha": Param(1.0, "number", "selection weight exponent: count^-alpha", min=0.0)}

    def fit(self, class_counts: np.ndarray, num_samples: int | None = None) -> None:
        CountRebalancer.fit(self, class_counts, num_samples)

    def selection_weights(self) -> np.ndarray:
        if self.class_counts is None:
            raise PluginError("rebalancer 'masked-resampling' was used before fit(class_counts)")
        counts = self.class_counts
        s = np.power(_pseudo(counts), -float(self.params["alpha"]))
        total = counts.sum()
        if total > 0:
            s = s * total / (counts * s).sum()
        return s
