"""Split identity and serialisation: what the CLI's ``benchbase split`` / ``benchbase protocols``
and the run record need, kept apart from the protocols themselves.

A split is a dict ``slice name -> graph positions``. Its identity is a content hash of the index
arrays (`split_hash`), the same on every machine: the canonical JSON of ``{name: [int, ...]}``
with sorted keys, hashed with SHA-256 - exactly what the run record's ``split_hash`` has been
(``benchbase.contract.identity.content_hash`` of the split as lists), so stored hashes stay valid. The order
of the positions inside a slice is part of the identity (training order follows it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from benchbase.contract.api import PluginError, Split

#: Length of `split_hash` in hex digits (64 bits).
HASH_LENGTH = 16


def split_lists(split: Split) -> dict[str, list[int]]:
    """The split as plain Python lists of positions (JSON-serialisable)."""
    out = {}
    for name, idx in split.items():
        arr = np.asarray(idx)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise PluginError(f"split slice {name!r} holds {arr.dtype} values; graph positions must be integers")
        out[str(name)] = [int(i) for i in arr.reshape(-1)]
    return out


def split_hash(split: Split) -> str:
    """Content hash of the index arrays: independent of dtype, platform and dict order."""
    canonical = json.dumps(split_lists(split), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def check_split(split: Split, num_graphs: int, required: tuple[str, ...] = ("train", "valid", "test")) -> None:
    """Raise a `PluginError` unless the required slices are present and non-empty, every position
    lies in ``[0, num_graphs)``, no position repeats within a slice and slices are disjoint."""
    missing = [name for name in required if len(np.asarray(split.get(name, ()))) == 0]
    if missing:
        raise PluginError(f"split has empty or missing slice(s) {missing}")
    seen: dict[int, str] = {}
    for name, idx in split_lists(split).items():
        if len(set(idx)) != len(idx):
            raise PluginError(f"split slice {name!r} repeats graph positions")
        bad = [i for i in idx if not 0 <= i < num_graphs]
        if bad:
            raise PluginError(f"split slice {name!r} has positions outside [0, {num_graphs}): {bad[:5]}")
        for i in idx:
            if i in seen:
                raise PluginError(f"graph position {i} is in both {seen[i]!r} and {name!r}")
            seen[i] = name


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def split_to_native(split: Split, ids: np.ndarray) -> dict[str, list]:
    """Each slice as the dataset's native ids (``Dataset.ids()``, the QM9 index for QM9), as plain
    JSON-serialisable values, in the slice's order."""
    ids = np.asarray(ids)
    return {name: [_plain(v) for v in ids[np.asarray(idx, dtype=np.int64)]] for name, idx in split.items()}


def split_from_native(payload: dict[str, list], ids: np.ndarray) -> Split:
    """The inverse of `split_to_native`: native ids back to graph positions. Unknown ids are an error
    (the file was written for another dataset or another version of it)."""
    position = {_plain(v): i for i, v in enumerate(np.asarray(ids))}
    if len(position) != len(ids):
        raise PluginError("the dataset's native ids are not unique; a split cannot be read back from them")
    out: Split = {}
    for name, values in payload.items():
        unknown = [v for v in values if v not in position]
        if unknown:
            raise PluginError(f"split slice {name!r} names {len(unknown)} id(s) the dataset lacks, e.g. {unknown[:5]}")
        out[name] = np.array([position[v] for v in values], dtype=np.int64)
    return out


def protocol_table(registry: Any) -> list[dict[str, Any]]:
    """One row per registered protocol, by name: ``name``, ``description``, ``requires`` (graph
    properties it needs, sorted), ``params`` (defaults, sorted by key), ``parameters`` (the typed
    declarations, as `benchbase plugins --json` prints them), ``distribution``, ``version``.
    JSON-serialisable, for ``benchbase protocols [--json]``."""
    rows = []
    for name in registry.names("protocol"):
        entry = registry.get("protocol", name)
        cls = entry.obj
        spec = entry.param_spec or {}
        rows.append(
            {
                "name": name,
                "description": getattr(cls, "description", "") or entry.description,
                "requires": sorted(getattr(cls, "requires", ())),
                "params": {k: p.default for k, p in sorted(spec.items())},
                "parameters": {k: p.describe() for k, p in sorted(spec.items())},
                "distribution": entry.distribution,
                "version": entry.version,
            }
        )
    return rows
