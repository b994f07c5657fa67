"""The rebalancer: benchbase's conformance kit checks the contract; a test of its own checks its
weights."""

import numpy as np
import torch
import torch.nn.functional as F
from benchbase.testing import check_rebalancer

from benchbase_example.rebalancers import PowerWeights


def test_power_weights_conform_to_the_rebalancer_contract():
    check_rebalancer(PowerWeights)


def test_alpha_zero_is_the_plain_cross_entropy():
    rebalancer = PowerWeights(alpha=0.0)
    rebalancer.fit(np.array([90.0, 10.0]))
    logits, targets = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 4)
    assert torch.allclose(rebalancer.loss(logits, targets), F.cross_entropy(logits, targets))
