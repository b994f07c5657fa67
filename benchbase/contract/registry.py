"""Plugin discovery: entry points of the group ``benchbase`` -> named datasets, encoders, ...

Loading is isolated: a plugin whose import or registration fails is recorded in
`Registry.failures` (distribution, version, error) and the others keep working.
``BENCHBASE_PLUGINS=name1,name2`` restricts loading to those entry-point names.
``BENCHBASE_EXTRA_PLUGINS=pkg.module,...`` also loads plugin modules that are not installed as a
distribution (as pytest's ``-p``): for plugin development and tests.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import pluggy

from benchbase.contract import hookspecs
from benchbase.contract.errors import DuplicateName, GridError, PluginError
from benchbase.contract.identity import (
    defining_module,
    distribution_fingerprint,
    harness_distribution,
    harness_fingerprint,
    module_fingerprint,
    plugin_fingerprint,
    plugin_modules,
)
from benchbase.contract.kinds import KINDS
from benchbase.contract.params import Param, spec_of

ENTRY_POINT_GROUP = "benchbase"
#: The pseudo-distribution of plugin modules loaded without one (tests, development).
LOCAL = "local"
_HOOK_OF_KIND = {
    "dataset": "register_datasets",
    "encoder": "register_encoders",
    "pretext": "register_pretext_tasks",
    "rebalancer": "register_rebalancers",
    "protocol": "register_protocols",
    "metric": "register_metrics",
    "executor": "register_executors",
}


@dataclass(frozen=True)
class Entry:
    """One registered thing: `obj` is the dataset factory or the plugin class."""

    kind: str
    name: str
    obj: Any
    plugin: str
    distribution: str
    version: str
    description: str = ""
    declared: dict[str, Param] | None = None  # a dataset factory's parameters, given at registration
    #: Modules of the same plugin whose code this entry's results also depend on: the metrics a
    #: protocol or dataset reads by name from the registry (set at registration).
    covers: tuple[str, ...] = ()

    @property
    def param_spec(self) -> dict[str, Param] | None:
        """Its typed parameters (`benchbase.contract.params`); None when it takes anything."""
        return self.declared if self.declared is not None else spec_of(self.obj)

    @property
    def code_modules(self) -> tuple[str, ...] | None:
        """The modules its code fingerprint covers, for a plugin bundled with the harness: the
        module closure of the module that defines it and of its `covers`. None where the
        fingerprint covers a whole distribution (a third party's) or package (a local module)."""
        if self.distribution != harness_distribution():
            return None
        module = defining_module(self.obj)
        return None if module is None else plugin_modules((module, *self.covers))

    @property
    def fingerprint(self) -> str:
        """The code fingerprint of what computes with this entry (see `benchbase.contract.identity`)."""
        if self.distribution == LOCAL:
            return module_fingerprint(self.plugin)
        module = defining_module(self.obj) if self.distribution == harness_distribution() else None
        if module is None:
            return distribution_fingerprint(self.distribution)
        return plugin_fingerprint((module, *self.covers), self.version)

    def info(self) -> dict[str, Any]:
        spec = self.param_spec
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "description": self.description,
            "parameters": None if spec is None else {k: p.describe() for k, p in sorted(spec.items())},
        }


@dataclass(frozen=True)
class LoadFailure:
    plugin: str
    distribution: str
    version: str
    error: str


@dataclass(frozen=True)
class Misnamed:
    """A function in a plugin module named like a hook but not one (``register_encoder``): pluggy
    ignores it, so the plugin would register nothing and say nothing."""

    plugin: str
    distribution: str
    function: str
    suggestion: str | None

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"plugin {self.plugin!r} ({self.distribution}) defines {self.function}, which is not a hook{hint}"


@dataclass
class Registry:
    entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    failures: list[LoadFailure] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None
    #: (kind, name) registered by more than one plugin -> who registered it ("dist (plugin 'p')"
    #: each). Such a name is usable by nobody, but listing and every other name keep working.
    conflicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    misnamed: list[Misnamed] = field(default_factory=list)

    def conflict(self, kind: str, name: str) -> str | None:
        """The one-line error for a name several plugins registered, or None."""
        owners = self.conflicts.get((kind, name))
        if not owners:
            return None
        return (
            f"duplicate {kind} name {name!r}: provided by {' and by '.join(owners)}; uninstall one, or restrict "
            "loading with BENCHBASE_PLUGINS"
        )

    def get(self, kind: str, name: str) -> Entry:
        clash = self.conflict(kind, name)
        if clash:
            raise DuplicateName(clash)
        try:
            return self.entries[(kind, name)]
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise GridError(f"unknown {kind} {name!r}; registered {kind}s: {known}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.entries if k == kind)

    def listing(self) -> list[Entry]:
        return sorted(self.entries.values(), key=lambda e: (KINDS.index(e.kind), e.name))

    def version_of(self, kind: str, name: str) -> str:
        entry = self.get(kind, name)
        return f"{entry.distribution}=={entry.version}"

    def harness_fingerprint(self) -> str:
        """The code fingerprint of the harness's computing layer (`benchbase.contract.identity`)."""
        return harness_fingerprint()

    def code_fingerprints(self) -> dict[str, set[str]]:
        """Distribution -> fingerprints of the code installed now: the harness's and every plugin's
        (a distribution whose plugins are keyed per module has several)."""
        out: dict[str, set[str]] = {harness_distribution(): {self.harness_fingerprint()}}
        for entry in self.entries.values():
            out.setdefault(entry.distribution, set()).add(entry.fingerprint)
        return out


@dataclass(frozen=True)
class _Source:
    plugin: str
    distribution: str
    version: str


def _entry_points() -> list[tuple[metadata.EntryPoint, _Source]]:
    found = []
    seen = set()
    for dist in metadata.distributions():
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            # The same distribution can be visible twice on sys.path (editable + site).
            if ep.group != ENTRY_POINT_GROUP or (dist_name, ep.name) in seen:
                continue
            seen.add((dist_name, ep.name))
            found.append((ep, _Source(ep.name, dist_name, dist.version or "?")))
    return sorted(found, key=lambda pair: pair[1].plugin)


def _allowed_names() -> set[str] | None:
    value = os.environ.get("BENCHBASE_PLUGINS", "").strip()
    return {n.strip() for n in value.split(",") if n.strip()} if value else None


def _make_register(registry: Registry, kind: str, source: _Source) -> Callable[..., None]:
    def register(obj_or_name: Any, factory: Any = None, description: str = "", param_spec: Any = None) -> None:
        if kind == "dataset" and isinstance(obj_or_name, str):  # register(name, factory, ...)
            name, obj = obj_or_name, factory
        elif kind == "dataset":  # register(DatasetSubclass): name, description, parameters on the class
            obj = obj_or_name
            name, description = obj.name, description or getattr(obj, "description", "")
        else:
            obj = obj_or_name
            name, description = obj.name, getattr(obj, "description", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {source.plugin!r} registered a {kind} without a name")
        key = (kind, name)
        here = f"{source.distribution} (plugin {source.plugin!r})"
        if key in registry.conflicts:
            registry.conflicts[key].append(here)
            return
        if key in registry.entries:
            # neither wins: which one a grid got would depend on the order of installation
            other = registry.entries.pop(key)
            registry.conflicts[key] = [f"{other.distribution} (plugin {other.plugin!r})", here]
            return
        registry.entries[key] = Entry(
            kind, name, obj, source.plugin, source.distribution, source.version, description, param_spec
        )

    return register


def _register_module(registry: Registry, manager: pluggy.PluginManager, module: ModuleType, source: _Source) -> None:
    """Register one plugin module's contributions all-or-nothing, so a failure leaves no half."""
    staged = Registry(entries=dict(registry.entries), conflicts={k: list(v) for k, v in registry.conflicts.items()})
    manager.register(module, name=source.plugin)
    try:
        for kind, hook_name in _HOOK_OF_KIND.items():
            impls = [impl for impl in getattr(manager.hook, hook_name).get_hookimpls() if impl.plugin is module]
            for impl in impls:
                impl.function(register=_make_register(staged, kind, source))
    except Exception:
        manager.unregister(module)
        raise
    ours = staged.entries.keys() - registry.entries.keys()
    metrics = sorted(
        {m for key in ours if key[0] == "metric" and (m := defining_module(staged.entries[key].obj)) is not None}
    )
    for key in ours:
        if key[0] in ("protocol", "dataset") and metrics:
            staged.entries[key] = replace(staged.entries[key], covers=tuple(metrics))
    registry.entries, registry.conflicts = staged.entries, staged.conflicts
    registry.misnamed.extend(_misnamed_hooks(module, source))


def _misnamed_hooks(module: ModuleType, source: _Source) -> list[Misnamed]:
    """Functions of `module` that look meant as hooks but are none: marked ``@hookimpl`` under a
    name no hook has, or defined in the module and named ``register_*`` like the hooks."""
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    found = []
    for name, value in sorted(vars(module).items()):
        if name in hooks or not callable(value) or isinstance(value, type):
            continue
        marked = hasattr(value, "benchbase_impl")
        if marked and (getattr(value, "benchbase_impl", None) or {}).get("specname") in hooks:
            continue  # a hook implemented under another name, as pluggy allows
        defined_here = getattr(value, "__module__", None) == module.__name__
        if marked or (defined_here and name.startswith("register_")):
            close = difflib.get_close_matches(name, hooks, n=1)
            found.append(Misnamed(source.plugin, source.distribution, name, close[0] if close else None))
    return found


def load_registry(extra_modules: list[ModuleType] | None = None) -> Registry:
    """Discover and register every plugin. `extra_modules` (tests, embedding) are registered after
    the entry points, as the pseudo-distribution ``local``."""
    manager = pluggy.PluginManager("benchbase")
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager)
    allowed = _allowed_names()
    candidates: list[tuple[Callable[[], ModuleType], _Source]] = []
    for ep, source in _entry_points():
        if allowed is None or source.plugin in allowed:
            candidates.append((ep.load, source))
    for module in extra_modules or []:
        candidates.append((lambda m=module: m, _Source(module.__name__, LOCAL, "0")))
    for path in filter(None, (p.strip() for p in os.environ.get("BENCHBASE_EXTRA_PLUGINS", "").split(","))):
        candidates.append((lambda p=path: importlib.import_module(p), _Source(path, LOCAL, "0")))
    for load, source in candidates:
        try:
            module = load()
            if isinstance(module, str):  # an entry point may name a module path as a string
                module = importlib.import_module(module)
            _register_module(registry, manager, module, source)
        except PluginError as exc:
            registry.failures.append(LoadFailure(source.plugin, source.distribution, source.version, str(exc)))
        except Exception as exc:  # a broken third-party plugin must not take the others down
            registry.failures.append(
                LoadFailure(source.plugin, source.distribution, source.version, f"{type(exc).__name__}: {exc}")
            )
    return registry


_cached: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded once."""
    global _cached
    if _cached is None:
        _cached = load_registry()
    return _cached


def reset_default_registry() -> None:
    global _cached
    _cached = None
