"""Where runs train: resolving a grid's ``device`` setting on this machine."""

from __future__ import annotations

import os


def resolve_device(device: str) -> str:
    """The device type a run's identity holds: ``auto`` becomes cuda where torch sees a GPU, else
    cpu; ``cuda:N`` is cuda (which GPU of a node runs it does not change its numbers), and N is
    passed to local jobs through ``BENCHBASE_CUDA_DEVICE``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        os.environ["BENCHBASE_CUDA_DEVICE"] = device.split(":", 1)[1]
        return "cuda"
    return device
