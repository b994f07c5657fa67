"""Building plugin objects from names and parameters, with per-process caches so that many runs in
one worker share one loaded dataset.

Parameters are validated first (`benchbase.contract.params.validate`): a bad value is a `GridError` naming
the plugin and the key. What the plugin raises afterwards is its own: a `PluginError` is a message
for the user, anything else a bug in the plugin, recorded with its traceback.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from benchbase.compute.batching import TensorGraphs
from benchbase.contract.api import (
    Dataset,
    Encoder,
    FeatureSpec,
    GraphArrays,
    GraphBatch,
    PretextTask,
    Protocol,
    Rebalancer,
    TaskInfo,
)
from benchbase.contract.errors import PluginError
from benchbase.contract.params import validate
from benchbase.contract.registry import Registry

_datasets: dict[str, Dataset] = {}
_tensors: dict[str, TensorGraphs] = {}


def _key(name: str, params: dict[str, Any]) -> str:
    return name + json.dumps(params, sort_keys=True, default=str)


def _build(registry: Registry, kind: str, name: str, params: dict[str, Any], *args: Any) -> Any:
    entry = registry.get(kind, name)
    checked = validate(entry.param_spec, params, f"{kind} {name!r}")
    return entry.obj(*args, **checked)


def build_dataset(registry: Registry, name: str, params: dict[str, Any]) -> Dataset:
    key = _key(name, params)
    if key not in _datasets:
        _datasets[key] = _build(registry, "dataset", name, params)
    return _datasets[key]


def dataset_tensors(registry: Registry, name: str, params: dict[str, Any]) -> tuple[Dataset, TensorGraphs]:
    dataset = build_dataset(registry, name, params)
    key = _key(name, params)
    if key not in _tensors:
        _tensors[key] = TensorGraphs(dataset.arrays())
    return dataset, _tensors[key]


def pooled_tensors(
    registry: Registry, first: dict[str, Any], second: dict[str, Any]
) -> tuple[PooledDataset, TensorGraphs]:
    """The graphs of two datasets (``{"name", "params"}`` each) as one (`PooledDataset`), for a
    pretraining pool that holds graphs of both."""
    key = "pool:" + _key(first["name"], first["params"]) + "+" + _key(second["name"], second["params"])
    if key not in _datasets:
        _datasets[key] = PooledDataset(
            build_dataset(registry, first["name"], first["params"]),
            build_dataset(registry, second["name"], second["params"]),
        )
    dataset = _datasets[key]
    if key not in _tensors:
        _tensors[key] = TensorGraphs(dataset.arrays())
    return dataset, _tensors[key]  # type: ignore[return-value]


class PooledDataset(Dataset):
    """The graphs of `first` then those of `second` (positions ``first.num_graphs + i``), for
    pretraining on another dataset together with the fine-tuning graphs. The two must have equal
    features (the grid checks it). It has what pretext tasks read: the arrays (with the tasks both
    datasets have at the same level), ``smiles()`` when both have it, the node class names when
    they agree, graph properties both give per graph, and `first`'s augmentation (the grid checks
    that both augment alike)."""

    def __init__(self, first: Dataset, second: Dataset) -> None:
        self.parts = (first, second)
        self.name = f"{first.name}+{second.name}"
        self.features = first.features
        self.provides = frozenset(first.provides) & frozenset(second.provides)
        theirs = {(t.name, t.level) for t in second.tasks}
        self.tasks = [t for t in first.tasks if (t.name, t.level) in theirs]
        if hasattr(first, "smiles") and hasattr(second, "smiles"):
            self.smiles = lambda: list(first.smiles()) + list(second.smiles())
        self._arrays: GraphArrays | None = None

    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            self._arrays = _concatenate(*(part.arrays() for part in self.parts), self.tasks)
        return self._arrays

    def ids(self) -> np.ndarray:
        return np.concatenate([np.asarray(part.ids(), dtype=object) for part in self.parts])

    @property
    def skipped(self) -> list[tuple[Any, str]]:
        return [item for part in self.parts for item in part.skipped]

    def node_class_names(self) -> list[str] | None:
        first, second = (part.node_class_names() for part in self.parts)
        return first if first == second else None

    def graph_property(self, key: str) -> np.ndarray | None:
        first, second = (part.graph_property(key) for part in self.parts)
        if first is None or second is None or np.shape(first)[1:] != np.shape(second)[1:]:
            return None
        return np.concatenate([first, second])

    def augment(self, batch: GraphBatch, generator: torch.Generator) -> GraphBatch:
        return self.parts[0].augment(batch, generator)


def _concatenate(a: GraphArrays, b: GraphArrays, tasks: list[TaskInfo]) -> GraphArrays:
    """`a`'s graphs then `b`'s, with the targets (and masks) of `tasks`, which both hold."""

    def both(x: np.ndarray | None, y: np.ndarray | None, what: str) -> np.ndarray | None:
        if (x is None) != (y is None):
            raise PluginError(f"cannot pool the graphs of two datasets of which only one has {what}")
        return None if x is None else np.concatenate([x, y])

    def mask(arrays: GraphArrays, task: TaskInfo) -> np.ndarray:
        if task.name in arrays.target_masks:
            return np.asarray(arrays.target_masks[task.name], dtype=bool)
        return np.ones(len(arrays.targets[task.name]), dtype=bool)

    masked = [t for t in tasks if t.name in a.target_masks or t.name in b.target_masks]
    return GraphArrays(
        node_ptr=np.concatenate([a.node_ptr, np.asarray(b.node_ptr[1:]) + a.node_ptr[-1]]),
        edge_ptr=np.concatenate([a.edge_ptr, np.asarray(b.edge_ptr[1:]) + a.edge_ptr[-1]]),
        edge_index=np.concatenate([a.edge_index, b.edge_index], axis=1),
        x=np.concatenate([a.x, b.x]),
        edge_attr=both(a.edge_attr, b.edge_attr, "edge features"),
        pos=both(a.pos, b.pos, "positions"),
        targets={t.name: np.concatenate([a.targets[t.name], b.targets[t.name]]) for t in tasks},
        target_masks={t.name: np.concatenate([mask(a, t), mask(b, t)]) for t in masked},
        graph_attr={
            key: np.concatenate([a.graph_attr[key], b.graph_attr[key]])
            for key in sorted(a.graph_attr.keys() & b.graph_attr.keys())
            if np.shape(a.graph_attr[key])[1:] == np.shape(b.graph_attr[key])[1:]
        },
    )


def build_encoder(registry: Registry, name: str, params: dict[str, Any], features: FeatureSpec) -> Encoder:
    return _build(registry, "encoder", name, params, features)


def build_pretext(registry: Registry, name: str, params: dict[str, Any]) -> PretextTask:
    return _build(registry, "pretext", name, params)


def build_rebalancer(registry: Registry, name: str, params: dict[str, Any]) -> Rebalancer:
    return _build(registry, "rebalancer", name, params)


def build_protocol(registry: Registry, name: str, params: dict[str, Any]) -> Protocol:
    return _build(registry, "protocol", name, params)
