"""Building plugin objects from names and parameters, with per-process caches so that many runs in
one worker share one loaded dataset.

Parameters are validated first (`benchbase.params.validate`): a bad value is a `GridError` naming
the plugin and the key. What the plugin raises afterwards is its own: a `PluginError` is a message
for the user, anything else a bug in the plugin, recorded with its traceback.
"""

from __future__ import annotations

import json
from typing import Any

from benchbase.api import Dataset, Encoder, FeatureSpec, PretextTask, Protocol, Rebalancer
from benchbase.batching import TensorGraphs
from benchbase.params import validate
from benchbase.registry import Registry

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


def build_encoder(registry: Registry, name: str, params: dict[str, Any], features: FeatureSpec) -> Encoder:
    return _build(registry, "encoder", name, params, features)


def build_pretext(registry: Registry, name: str, params: dict[str, Any]) -> PretextTask:
    return _build(registry, "pretext", name, params)


def build_rebalancer(registry: Registry, name: str, params: dict[str, Any]) -> Rebalancer:
    return _build(registry, "rebalancer", name, params)


def build_protocol(registry: Registry, name: str, params: dict[str, Any]) -> Protocol:
    return _build(registry, "protocol", name, params)
