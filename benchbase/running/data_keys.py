"""A dataset's data identity in a run spec: its own content key, or else a hash of the files and
directories its path parameters name."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from benchbase.contract.errors import GridError, PluginError
from benchbase.contract.identity import canonical as _canonical
from benchbase.contract.identity import content_hash
from benchbase.contract.registry import Registry

log = logging.getLogger("benchbase")


#: Paths already warned about as impossible to hash, so that a grid of many runs warns once each.
_UNHASHABLE_WARNED: set[str] = set()


def _path_parameters(registry: Registry, name: str, params: dict[str, Any]) -> list[str]:
    """The parameters of dataset `name` that name files or directories: those declared with the
    ``"path"`` type, and - for plugins written before that type existed - one called ``path`` that
    takes a string."""
    try:
        spec = registry.get("dataset", name).param_spec or {}
    except (GridError, PluginError):
        return []
    keys = [k for k, p in spec.items() if p.type == "path" or (k == "path" and p.type in ("str", "any"))]
    if spec == {} and isinstance(params.get("path"), str):  # a factory that takes anything
        keys = ["path"]
    return sorted(k for k in keys if isinstance(params.get(k), str))


def _hash_path(path: Path) -> str:
    """A digest of a file's bytes, or of a directory's files (their relative names and bytes)."""
    from benchbase.compute.cache import content_digest

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return content_hash([[str(p.relative_to(path)), content_digest(p)] for p in files])
    return content_digest(path)


def data_key(
    registry: Registry, component: dict[str, Any], dataset: Any, memo: dict[str, str | None] | None = None
) -> str | None:
    """What enters a run's identity for its data: the plugin's `content_key()` when it gives one;
    else a hash of every file or directory its path parameters name, so that a third-party dataset
    whose file is edited in place never passes for the one already run (None when it has neither).
    A path that cannot be read is warned about once and left out of the key. `memo` keeps the keys
    of one grid's expansion: every combination and seed of a dataset shares them."""
    if isinstance(dataset, str):
        return None  # not available here: its runs are skipped, saying why
    if memo is not None:
        at = _canonical([component["name"], component["params"]])
        if at not in memo:
            memo[at] = data_key(registry, component, dataset)
        return memo[at]
    key = dataset.content_key()
    if key is not None:
        return key
    name, params = component["name"], component["params"]
    hashed = {}
    for parameter in _path_parameters(registry, name, params):
        path = Path(params[parameter]).expanduser()
        try:
            hashed[parameter] = _hash_path(path)
        except OSError as exc:
            shown = str(path.absolute())
            if shown not in _UNHASHABLE_WARNED:
                _UNHASHABLE_WARNED.add(shown)
                log.warning(
                    "dataset %r: cannot hash %s (parameter %s): %s; its runs' identity does not cover this data",
                    name,
                    shown,
                    parameter,
                    exc.strerror or exc,
                )
    return content_hash(hashed) if hashed else None
