"""Typed plugin parameters, declared once and validated by one function.

Every plugin - dataset, encoder, pretext task, rebalancer, protocol - declares its parameters as
``param_spec = {"hidden": Param(300, "int", min=1, help="width"), ...}``. The grid validates every value
at expansion (`validate`), so ``--dry-run`` rejects an unknown, mistyped or out-of-range parameter of
any plugin with one line naming the file, the table, the key and what is allowed; the plugin base
classes run the same function when a plugin is built directly. `benchbase plugins --json` and
`benchbase protocols` print the same declarations.

A plugin that declares only plain ``defaults = {"hidden": 300}`` (the older form, deprecated and
removed in contract 2.0) gets parameters inferred from its default values, with a
`DeprecationWarning`; a dataset factory without declarations gets them from its keyword arguments.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchbase.contract.errors import GridError

#: Value types: "number" accepts int and float; "any" accepts everything; "path" is a string naming
#: a file or directory, whose content the harness hashes into a run's identity when the dataset
#: gives no `content_key()` (so that data edited in place is never mistaken for the old).
TYPES = ("int", "float", "number", "str", "bool", "list", "dict", "any", "path")
_PYTHON = {"int": (int,), "float": (float, int), "number": (int, float), "str": (str,), "bool": (bool,)}
_PYTHON["path"] = (str,)
_PYTHON |= {"list": (list, tuple), "dict": (dict,)}


@dataclass(frozen=True)
class Param:
    """One parameter: its default, type, allowed values and a line of help.

    `min`/`max` bound numbers (inclusive unless `min_open`/`max_open`); `choices` lists the allowed
    values; `nullable` also allows ``None`` (a default of ``None`` implies it); `items` is the type
    of a list's elements.
    """

    default: Any
    type: str = "any"
    help: str = ""
    choices: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    nullable: bool = False
    items: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"unknown parameter type {self.type!r}; use one of {TYPES}")

    def allowed(self) -> str:
        """What this parameter accepts, in words."""
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {
                "int": "an integer",
                "float": "a number",
                "number": "a number",
                "str": "a string",
                "path": "a file or directory path",
            }.get(self.type, f"a {self.type}" if self.type != "any" else "any value")
            if self.type == "list" and self.items:
                text = f"a list of {self.items} values"
            bounds = []
            if self.min is not None:
                bounds.append(f"{'>' if self.min_open else '>='} {self.min:g}")
            if self.max is not None:
                bounds.append(f"{'<' if self.max_open else '<='} {self.max:g}")
            if bounds:
                text += " " + " and ".join(bounds)
        if self.nullable or self.default is None:
            text += " or null"
        return text

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed, or None when it is."""
        if value is None:
            return None if (self.nullable or self.default is None) else f"must be {self.allowed()}"
        if self.choices:
            return None if value in self.choices else f"must be {self.allowed()}"
        if self.type != "any" and not _is(value, self.type):
            return f"must be {self.allowed()}, got {type(value).__name__} {value!r}"
        if self.type in ("int", "float", "number") and not _in_range(self, float(value)):
            return f"must be {self.allowed()}, got {value!r}"
        if self.type == "list" and self.items and not all(_is(v, self.items) for v in value):
            return f"must be {self.allowed()}, got {value!r}"
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-able form, for listings."""
        return {"default": self.default, "type": self.type, "allowed": self.allowed(), "help": self.help}


def _is(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if isinstance(value, bool) and kind != "bool":  # True is an int in Python, not in a grid file
        return False
    if kind in ("float", "number") and isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, _PYTHON[kind])


def _in_range(param: Param, value: float) -> bool:
    if param.min is not None and (value <= param.min if param.min_open else value < param.min):
        return False
    if param.max is not None and (value >= param.max if param.max_open else value > param.max):
        return False
    return True


def infer(default: Any) -> Param:
    """A parameter declared only by its default value: its type is the default's type."""
    if isinstance(default, bool):
        return Param(default, "bool")
    if isinstance(default, int):
        return Param(default, "int")
    if isinstance(default, float):
        return Param(default, "number")
    if isinstance(default, str):
        return Param(default, "str")
    if isinstance(default, list | tuple):
        return Param(list(default), "list")
    if isinstance(default, dict):
        return Param(default, "dict")
    return Param(default, "any")


def spec_of(obj: Any) -> dict[str, Param] | None:
    """The parameters a plugin class or dataset factory declares: ``param_spec``, else inferred
    from ``defaults``, else from its keyword arguments; None when it takes anything (``**kwargs``)."""
    declared = getattr(obj, "param_spec", None)
    if isinstance(declared, Mapping) and declared and all(isinstance(p, Param) for p in declared.values()):
        return dict(declared)
    defaults = getattr(obj, "defaults", None)
    if isinstance(defaults, Mapping):
        if not defaults:  # the interfaces' own empty default: a plugin without parameters
            return {}
        warnings.warn(
            f"{getattr(obj, '__qualname__', obj)}: `defaults = {{...}}` is deprecated and removed in contract 2.0: "
            'declare param_spec = {"name": Param(default, "type", help=...)}',
            DeprecationWarning,
            stacklevel=2,
        )
        return {key: infer(value) for key, value in defaults.items()}
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    out = {}
    for name, p in signature.parameters.items():
        if p.kind == p.VAR_KEYWORD:
            return None  # takes anything: nothing to check
        if p.kind == p.VAR_POSITIONAL or name.startswith("_") or p.default is p.empty:
            continue  # positional inputs (an encoder's FeatureSpec) are not parameters
        out[name] = infer(p.default)
    return out


def defaults_of(spec: Mapping[str, Param]) -> dict[str, Any]:
    return {key: param.default for key, param in spec.items()}


def validate(
    spec: Mapping[str, Param] | None,
    given: Mapping[str, Any],
    where: str,
    origins: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`given` checked against `spec` and completed with defaults, keys sorted. Raises a
    `GridError` naming where the value came from (`origins` per key, else `where`: the file and
    table, or the plugin), the key and what is allowed."""
    if spec is None:  # a factory that takes anything
        return dict(sorted(given.items()))
    origins = origins or {}
    for key in sorted(given):
        if key not in spec:
            known = "; ".join(f"{k} ({p.allowed()}, default {p.default!r})" for k, p in sorted(spec.items()))
            raise GridError(f"{origins.get(key, where)}: unknown parameter {key!r}; known: {known or 'none'}")
        problem = spec[key].problem(given[key])
        if problem:
            raise GridError(f"{origins.get(key, where)}: {key} {problem}")
    return dict(sorted({**defaults_of(spec), **given}.items()))


def declare(cls: type) -> None:
    """For a plugin class with typed ``param_spec``: its ``defaults`` are their default values (the
    older form, still read by plugins)."""
    declared = cls.__dict__.get("param_spec")
    if isinstance(declared, Mapping) and declared and all(isinstance(p, Param) for p in declared.values()):
        cls.defaults = defaults_of(declared)
