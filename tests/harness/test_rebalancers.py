"""The core's rebalancing strategies, each checked numerically against its published formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchbase.builtin import REBALANCERS
from benchbase.compute.rebalancers import (
    ClassBalanced,
    Focal,
    InverseFrequency,
    LogitAdjustment,
    MaskedResampling,
    NoRebalancing,
    SqrtInverseFrequency,
)
from benchbase.contract.api import PluginError

torch.set_num_threads(1)

COUNTS = np.array([600.0, 300.0, 0.0, 100.0])  # class 2 never occurs in the pool
N = COUNTS.sum()


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    targets = torch.tensor([0, 0, 1, 3, 0, 1, 3, 2])
    return logits, targets


def softmax_row(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


def ce(row, y):
    return -math.log(softmax_row(row)[y])


def weighted_mean_ce(logits, targets, w):
    num = sum(w[y] * ce(row, y) for row, y in zip(logits.tolist(), targets.tolist(), strict=True))
    den = sum(w[y] for y in targets.tolist())
    return num / den


def fitted(cls, counts=COUNTS, num_samples=None, **params):
    reb = cls(**params)
    reb.fit(counts, num_samples)
    return reb


def test_all_registered_and_named():
    names = [cls.name for cls in REBALANCERS]
    assert names == [
        "none",
        "inverse-frequency",
        "sqrt-inverse-frequency",
        "class-balanced",
        "focal",
        "logit-adjustment",
        "masked-resampling",
    ]
    for cls in REBALANCERS:
        assert cls.__doc__ or cls.description


def test_none_is_plain_cross_entropy(batch):
    logits, targets = batch
    expected = sum(ce(r, y) for r, y in zip(logits.tolist(), targets.tolist(), strict=True)) / 8
    assert fitted(NoRebalancing).loss(logits, targets).item() == pytest.approx(expected)


def test_inverse_frequency_formula(batch):
    logits, targets = batch
    reb = fitted(InverseFrequency)
    w = [N / (3 * n) if n > 0 else 0.0 for n in COUNTS]  # C+ = 3 seen classes
    assert reb.class_weights().tolist() == pytest.approx(w, rel=1e-6)
    assert reb.loss(logits, targets).item() == pytest.approx(weighted_mean_ce(logits, targets, w), rel=1e-6)
    # Unchanged behaviour: PyTorch's weighted cross-entropy with the same weights.
    torch_ce = torch.nn.functional.cross_entropy(logits, targets, weight=torch.tensor(w, dtype=torch.float64))
    assert reb.loss(logits, targets).item() == pytest.approx(torch_ce.item(), rel=1e-6)


def test_sqrt_inverse_frequency_formula(batch):
    logits, targets = batch
    reb = fitted(SqrtInverseFrequency)
    root_sum = sum(math.sqrt(n) for n in COUNTS)
    w = [N / (math.sqrt(n) * root_sum) if n > 0 else 0.0 for n in COUNTS]
    assert reb.class_weights().tolist() == pytest.approx(w, rel=1e-6)
    assert sum(n * wc for n, wc in zip(COUNTS, w, strict=True)) / N == pytest.approx(1.0)
    assert reb.loss(logits, targets).item() == pytest.approx(weighted_mean_ce(logits, targets, w), rel=1e-6)


@pytest.mark.parametrize("beta", [0.9, 0.999, 0.9999])
def test_class_balanced_formula(batch, beta):
    logits, targets = batch
    reb = fitted(ClassBalanced, beta=beta)
    raw = [(1 - beta) / (1 - beta**n) if n > 0 else 0.0 for n in COUNTS]
    w = [r * 3 / sum(raw) for r in raw]  # normalised to sum to the 3 seen classes
    assert reb.class_weights().tolist() == pytest.approx(w, rel=1e-5)
    assert reb.loss(logits, targets).item() == pytest.approx(weighted_mean_ce(logits, targets, w), rel=1e-5)


def test_class_balanced_limits():
    """beta = 0 weighs every seen class the same; beta -> 1 approaches inverse frequency."""
    assert fitted(ClassBalanced, beta=0.0).class_weights().tolist() == [1.0, 1.0, 0.0, 1.0]
    near_one = fitted(ClassBalanced, beta=1 - 1e-9).class_weights().numpy()
    inverse = fitted(InverseFrequency).class_weights().numpy()
    assert np.allclose(near_one / near_one.sum(), inverse / inverse.sum(), rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 2.0, 5.0])
def test_focal_formula(batch, gamma):
    logits, targets = batch
    reb = fitted(Focal, gamma=gamma)
    per_item = []
    for row, y in zip(logits.tolist(), targets.tolist(), strict=True):
        p = softmax_row(row)[y]
        per_item.append(-((1 - p) ** gamma) * math.log(p))
    assert reb.loss(logits, targets).item() == pytest.approx(sum(per_item) / 8, rel=1e-6)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_logit_adjustment_formula(batch, tau):
    logits, targets = batch
    reb = fitted(LogitAdjustment, tau=tau)
    counts = [n if n > 0 else 0.5 for n in COUNTS]
    prior = [n / sum(counts) for n in counts]
    adjusted = [[z + tau * math.log(p) for z, p in zip(row, prior, strict=True)] for row in logits.tolist()]
    expected = sum(ce(r, y) for r, y in zip(adjusted, targets.tolist(), strict=True)) / 8
    assert reb.loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    assert math.isfinite(reb.loss(logits, targets).item())


def test_masked_resampling_weights(batch):
    logits, targets = batch
    for alpha in (0.0, 0.5, 1.0):
        reb = fitted(MaskedResampling, alpha=alpha)
        s = reb.selection_weights()
        raw = [(n if n > 0 else 0.5) ** -alpha for n in COUNTS]
        scale = N / sum(n * r for n, r in zip(COUNTS, raw, strict=True))
        assert s.tolist() == pytest.approx([r * scale for r in raw])
    # alpha = 1: every seen class has the same expected number of selections n_c * s_c.
    s = fitted(MaskedResampling).selection_weights()
    assert np.allclose((COUNTS * s)[COUNTS > 0], (COUNTS * s)[0])
    # The loss itself is plain cross-entropy.
    assert fitted(MaskedResampling).loss(logits, targets).item() == pytest.approx(
        fitted(NoRebalancing).loss(logits, targets).item()
    )
    assert fitted(InverseFrequency).selection_weights() is None


# ------------------------------------------------------------------------------------------ multilabel

POS = np.array([5.0, 50.0, 0.0])  # positives per label; label 2 never positive
S = 100


@pytest.fixture
def multilabel():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    targets = torch.tensor(
        [[1, 0, 0], [0, 1, float("nan")], [0, 0, 0], [1, 1, 1], [0, float("nan"), 0], [0, 1, 0]],
        dtype=torch.float64,
    )
    return logits, targets


def bce(z, y):
    p = 1 / (1 + math.exp(-z))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def known_entries(logits, targets):
    for row_z, row_y in zip(logits.tolist(), targets.tolist(), strict=True):
        for c, (z, y) in enumerate(zip(row_z, row_y, strict=True)):
            if not math.isnan(y):
                yield c, z, y


@pytest.mark.parametrize(
    "cls,params,binary_weight",
    [
        (
            InverseFrequency,
            {},
            lambda neg, pos: [(neg + pos) / (int(neg > 0) + int(pos > 0)) / n if n else 0.0 for n in (neg, pos)],
        ),
        (
            SqrtInverseFrequency,
            {},
            lambda neg, pos: [
                (neg + pos) / (math.sqrt(n) * (math.sqrt(neg) + math.sqrt(pos))) if n else 0.0 for n in (neg, pos)
            ],
        ),
    ],
)
def test_multilabel_weights_treat_each_label_as_two_classes(multilabel, cls, params, binary_weight):
    logits, targets = multilabel
    reb = fitted(cls, counts=POS, num_samples=S, **params)
    entries = list(known_entries(logits, targets))
    total = 0.0
    for c, z, y in entries:
        w_neg, w_pos = binary_weight(S - POS[c], POS[c])
        total += (w_pos if y == 1 else w_neg) * bce(z, y)
    assert reb.loss(logits, targets, multilabel=True).item() == pytest.approx(total / len(entries), rel=1e-6)


def test_multilabel_focal_and_logit_adjustment(multilabel):
    logits, targets = multilabel
    entries = list(known_entries(logits, targets))
    focal = fitted(Focal, counts=POS, num_samples=S, gamma=2.0).loss(logits, targets, multilabel=True)
    expected = 0.0
    for _, z, y in entries:
        p = 1 / (1 + math.exp(-z))
        pt = p if y == 1 else 1 - p
        expected += -((1 - pt) ** 2) * math.log(pt)
    assert focal.item() == pytest.approx(expected / len(entries), rel=1e-6)

    adj = fitted(LogitAdjustment, counts=POS, num_samples=S).loss(logits, targets, multilabel=True)
    expected = 0.0
    for c, z, y in entries:
        pos, neg = POS[c] or 0.5, S - POS[c]
        expected += bce(z + math.log(pos / neg), y)
    assert adj.item() == pytest.approx(expected / len(entries), rel=1e-6)

    plain = fitted(NoRebalancing).loss(logits, targets, multilabel=True)
    assert plain.item() == pytest.approx(sum(bce(z, y) for _, z, y in entries) / len(entries), rel=1e-6)


def test_multilabel_needs_num_samples(multilabel):
    logits, targets = multilabel
    with pytest.raises(PluginError, match="num_samples"):
        fitted(InverseFrequency, counts=POS).loss(logits, targets, multilabel=True)


# ------------------------------------------------------------------------------------------ edge cases


@pytest.mark.parametrize("cls", REBALANCERS, ids=lambda c: c.name)
def test_rejects_unknown_parameters(cls):
    with pytest.raises(PluginError, match="unknown parameter"):
        cls(gama=2)


@pytest.mark.parametrize("cls", REBALANCERS, ids=lambda c: c.name)
def test_batch_of_unseen_class_is_finite_and_differentiable(cls):
    """Targets of a class absent from the pool never give NaN or infinity."""
    reb = fitted(cls)
    logits = torch.zeros(3, 4, requires_grad=True)
    loss = reb.loss(logits, torch.tensor([2, 2, 2]))
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("cls", [c for c in REBALANCERS if c is not NoRebalancing], ids=lambda c: c.name)
def test_bad_counts_and_wrong_width(cls):
    with pytest.raises(PluginError, match="non-negative"):
        cls().fit(np.array([3.0, -1.0]))
    if cls in (Focal, MaskedResampling):
        return  # their loss does not use the counts
    with pytest.raises(PluginError, match="before fit"):
        cls().loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    reb = fitted(cls)
    with pytest.raises(PluginError, match="classes"):
        reb.loss(torch.zeros(2, 5), torch.tensor([0, 1]))


def test_bad_parameter_values():
    with pytest.raises(PluginError, match="beta"):
        ClassBalanced(beta=1.0)
    with pytest.raises(PluginError, match="gamma"):
        Focal(gamma=-1)
    with pytest.raises(PluginError, match="alpha"):
        MaskedResampling(alpha=-0.5)
