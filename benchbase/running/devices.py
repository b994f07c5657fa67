"""Where runs train: resolving a grid's ``device`` setting on this machine."""

from __future__ import annotations


def placement(device: str) -> str:
    """Where a grid's ``device`` setting places runs on this machine: ``auto`` becomes cuda where
    torch sees a GPU, else cpu; ``cpu``, ``cuda`` and ``cuda:N`` stay as they are."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def device_type(device: str) -> str:
    """The device type a run's identity holds: ``cuda:N`` is cuda (which GPU of a node runs it
    does not change its numbers)."""
    return placement(device).split(":", 1)[0]
