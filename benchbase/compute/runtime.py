"""Where and how a run computes: device, seeding and the optimiser step shared by pretraining and
fine-tuning."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn

from benchbase.contract.api import (
    GraphBatch,
    PluginError,
)
from benchbase.contract.errors import TrainingDiverged


def device_of(name: str) -> torch.device:
    """The torch device of a run placed on `name` (``cpu``, ``cuda``: the first GPU, ``cuda:N``).
    On CUDA, torch's deterministic algorithms are switched on (where torch has them; the others
    warn) so that a spec gives the same numbers on the same GPU model."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PluginError(f"the run asks for device {device} but this worker has no CUDA device")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return device


def on(device: torch.device, batch: GraphBatch) -> GraphBatch:
    """A batch on the run's device: data stays in CPU arrays, each batch moves when it is used."""
    return batch if device.type == "cpu" else batch.to(device)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def adam(params: list[nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with its fused kernel: one pass over all parameters per step instead of a loop of small
    operations per tensor (3x faster on CPU for the quick profile's many small tensors)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def count_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} during {where}")


def optimiser_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], grad_clip: float | None
) -> None:
    """One update; with `grad_clip` the gradients' global norm is clipped to it first (the train
    setting ``grad_clip``, read by fine-tuning and pretraining alike)."""
    optimizer.zero_grad()
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(params, float(grad_clip))
    optimizer.step()
