"""Module paths that moved when the harness was laid out in layers (contract, compute, running,
reporting). Importing an old path keeps working for one release, with a `DeprecationWarning` that
names the new home: third-party code written before the move loads unchanged. Plugins should
import from `benchbase` itself (the public API), which never moved."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

#: The contract version that removes the old paths (the same policy as every deprecated form).
REMOVAL = "2.0"
#: Old module -> the modules that hold its names now (several where one module was split by concept).
MOVED: dict[str, tuple[str, ...]] = {
    "benchbase.adapters": ("benchbase.compute.adapters",),
    "benchbase.analysis": ("benchbase.running.analysis",),
    "benchbase.api": ("benchbase.contract.api",),
    "benchbase.batching": ("benchbase.compute.batching",),
    "benchbase.cache": ("benchbase.compute.cache",),
    "benchbase.collect": ("benchbase.running.collect",),
    "benchbase.cost": ("benchbase.running.cost",),
    "benchbase.doctor": ("benchbase.running.doctor",),
    "benchbase.errors": ("benchbase.contract.errors",),
    "benchbase.executors": ("benchbase.running.executors",),
    "benchbase.findings": ("benchbase.reporting.findings",),
    "benchbase.hookspecs": ("benchbase.contract.hookspecs",),
    "benchbase.identity": ("benchbase.contract.identity",),
    "benchbase.loading": ("benchbase.compute.loading",),
    "benchbase.metrics": ("benchbase.compute.metrics",),
    "benchbase.params": ("benchbase.contract.params",),
    "benchbase.plots": ("benchbase.reporting.plots",),
    "benchbase.protocols": ("benchbase.compute.protocols",),
    "benchbase.publish": ("benchbase.reporting.publish",),
    "benchbase.pyg_dataset": ("benchbase.compute.pyg_dataset",),
    "benchbase.ray_executor": ("benchbase.running.ray_executor",),
    "benchbase.rebalancers": ("benchbase.compute.rebalancers",),
    "benchbase.registry": ("benchbase.contract.registry",),
    "benchbase.reproduce": ("benchbase.running.reproduce",),
    "benchbase.settings": ("benchbase.compute.settings",),
    "benchbase.slurm_executor": ("benchbase.running.slurm_executor",),
    "benchbase.specs": ("benchbase.running.specs",),
    "benchbase.splits": ("benchbase.compute.splits",),
    "benchbase.stats": ("benchbase.reporting.stats",),
    "benchbase.store": ("benchbase.running.store",),
    "benchbase.types": ("benchbase.contract.types",),
    "benchbase.until_decided": ("benchbase.reporting.until_decided",),
    "benchbase.train": (
        "benchbase.compute.runtime",
        "benchbase.compute.pretraining",
        "benchbase.compute.finetuning",
        "benchbase.compute.pretext_scores",
        "benchbase.compute.run",
        "benchbase.running.fine_tunings",
    ),
    "benchbase.grid": (
        "benchbase.contract.kinds",
        "benchbase.compute.runspec",
        "benchbase.running.gridfile",
        "benchbase.running.devices",
        "benchbase.running.skips",
        "benchbase.running.data_keys",
        "benchbase.running.planning",
    ),
    "benchbase.runner": ("benchbase.running.provenance", "benchbase.running.jobs", "benchbase.running.driver"),
    "benchbase.leaderboard": ("benchbase.reporting.tables", "benchbase.reporting.markdown"),
}


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and makes it a view of its new homes (PEP 562 ``__getattr__``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a plain module

    def exec_module(self, module: ModuleType) -> None:
        homes = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} is deprecated and removed in contract {REMOVAL}: it moved to "
            f"{', '.join(homes)}; plugins should import from benchbase itself",
            DeprecationWarning,
            stacklevel=2,
        )

        def lookup(name: str) -> Any:
            for home in homes:
                value = getattr(importlib.import_module(home), name, _MISSING)
                if value is not _MISSING:
                    return value
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        module.__getattr__ = lookup  # type: ignore[method-assign]


_MISSING = object()


def install() -> None:
    """Put the finder first, once: it answers only for the old paths, which no file holds any more
    (ahead of an editable install's finder, which could still map them to a stale checkout)."""
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModules())
