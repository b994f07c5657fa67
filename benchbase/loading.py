"""Building plugin objects from names and parameters, with per-process caches so that many runs in
one worker share one loaded dataset."""

from __future__ import annotations

import json
from typing import Any

from benchbase.api import Dataset, Encoder, FeatureSpec, PluginError, PretextTask, Protocol, Rebalancer
from benchbase.batching import TensorGraphs
from benchbase.registry import Registry

_datasets: dict[str, Dataset] = {}
_tensors: dict[str, TensorGraphs] = {}


def _key(name: str, params: dict[str, Any]) -> str:
    return name + json.dumps(params, sort_keys=True, default=str)


def _construct(kind: str, name: str, factory: Any, *args: Any, **params: Any) -> Any:
    try:
        return factory(*args, **params)
    except TypeError as exc:  # unknown keyword arguments are a user error in the grid file
        raise PluginError(f"cannot build {kind} {name!r} with parameters {params}: {exc}") from None


def build_dataset(registry: Registry, name: str, params: dict[str, Any]) -> Dataset:
    key = _key(name, params)
    if key not in _datasets:
        _datasets[key] = _construct("dataset", name, registry.get("dataset", name).obj, **params)
    return _datasets[key]


def dataset_tensors(registry: Registry, name: str, params: dict[str, Any]) -> tuple[Dataset, TensorGraphs]:
    dataset = build_dataset(registry, name, params)
    key = _key(name, params)
    if key not in _tensors:
        _tensors[key] = TensorGraphs(dataset.arrays())
    return dataset, _tensors[key]


def build_encoder(registry: Registry, name: str, params: dict[str, Any], features: FeatureSpec) -> Encoder:
    return _construct("encoder", name, registry.get("encoder", name).obj, features, **params)


def build_pretext(registry: Registry, name: str, params: dict[str, Any]) -> PretextTask:
    return _construct("pretext", name, registry.get("pretext", name).obj, **params)


def build_rebalancer(registry: Registry, name: str, params: dict[str, Any]) -> Rebalancer:
    return _construct("rebalancer", name, registry.get("rebalancer", name).obj, **params)


def build_protocol(registry: Registry, name: str, params: dict[str, Any]) -> Protocol:
    return _construct("protocol", name, registry.get("protocol", name).obj, **params)
