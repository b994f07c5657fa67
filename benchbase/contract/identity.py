"""What makes two runs the same computation: the code that computes them and their numerics.

A run's id (and a pretraining stage's) is a hash of its canonical spec. Besides plugin names,
parameters, training settings and seed, the spec holds

- ``code``: a fingerprint of the code that computes the run, one per part, each as
  ``<distribution> <fingerprint>``:

  - ``harness``: ``<version>+code.<hash>`` of the harness's *computing layer*: the package
    ``benchbase`` itself and every module of `benchbase.compute` (`HARNESS_COMPUTING`: the
    training loop and what it computes with - splits, batching, rebalancers, metrics, protocols,
    settings, loading, the data cache, the ``pyg`` adapter) with the contract modules they import
    (the plugin API, types, parameters, errors), except the lookup modules of
    `HARNESS_INFRASTRUCTURE` (registry, identity, hookspecs: they compute no number; what they
    decide is in the spec itself). Outside it are `benchbase.running` (planning, the store,
    executors), `benchbase.reporting` (leaderboards, findings, statistics, plots), the CLI, the
    scaffold and the test helpers, as are docs and tests: editing them re-runs nothing.
  - each plugin of a bundled distribution (``benchbase`` itself: ``benchbase_molecules``,
    ``benchbase_glass`` and the core's own plugins) ``<version>+code.<hash>`` of the *module
    closure* of the module that defines it (`module_closure`): that module and every module of
    its own top-level package that it imports, at any depth, inside functions too, with the
    packages that contain them; a protocol or dataset also covers the metrics its plugin
    registers. Editing one pretext task's module re-keys the runs that use it, no others.
  - each plugin of another distribution ``<version>+src.<hash>`` of all of that distribution's
    packages (`distribution_fingerprint`): what a third party's code imports is not known here, so
    any edit of it re-keys all of its runs; a plugin loaded without a distribution
    (``BENCHBASE_EXTRA_PLUGINS``) ``local+src.<hash>`` of its top-level package.

  Sources are hashed as their syntax tree with docstrings removed (`ast.dump`), so comments,
  docstrings and formatting do not change an identity, while any change to what the code does
  does. Imports by a name computed at run time (``importlib.import_module(name)``) are not
  followed. A store therefore never reuses a result of other code.
- ``numerics``: what else changes floating-point results on the same inputs: the device, the
  intra-op thread count (fixed per run by the harness, whatever ``--jobs`` is), the CPU code paths of
  torch and MKL, and the versions of torch and numpy.

CPU numerics are made portable at import (`pin_cpu_numerics`): torch's vectorised kernels are
pinned to AVX2 and MKL to its vendor-independent branch (Intel's "conditional numerical
reproducibility", ``MKL_CBWR=COMPATIBLE``), so that the same spec gives the same bits on any x86-64
machine with AVX2, Intel or AMD. ``BENCHBASE_NUMERICS=native`` keeps the fastest paths instead; the
identity records which.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata as metadata
import importlib.util
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: Environment settings of the portable CPU numerics; each applies unless the user set it already.
PORTABLE_CPU_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pin_cpu_numerics() -> None:
    """Pin the CPU code paths of torch and MKL (see the module docstring). Effective when called
    before the first tensor operation of the process, which is why `benchbase` calls it on import."""
    if os.environ.get("BENCHBASE_NUMERICS", "portable") == "native":
        return
    for key, value in PORTABLE_CPU_ENV.items():
        os.environ.setdefault(key, value)


def cpu_numerics() -> str:
    """The CPU code paths in effect, e.g. ``"avx2+mkl-compatible"``."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability().lower()
    return f"{capability}+mkl-{os.environ.get('MKL_CBWR', 'auto').lower()}"


def numerics(device: str, threads: int) -> dict[str, Any]:
    """The numerical settings that belong to a run's identity."""
    import numpy
    import torch

    out: dict[str, Any] = {"device": device, "threads": int(threads), "torch": torch.__version__}
    out["numpy"] = numpy.__version__
    if device == "cpu":
        out["cpu"] = cpu_numerics()
    return out


# --- code fingerprints -------------------------------------------------------------------------


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def normalised_source(path: Path) -> bytes:
    """The code of one Python file without comments, docstrings or layout."""
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError:  # hash what is there: a broken file is still different code
        return text.encode()
    return ast.dump(_strip_docstrings(tree), include_attributes=False).encode()


def source_hash(paths: list[Path], length: int = 12) -> str:
    """Hash of the normalised sources of `paths` (files, or directories searched for ``*.py``)."""
    files: set[Path] = set()
    for path in paths:
        if path.is_dir():
            files.update(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
        elif path.suffix == ".py" and path.exists():
            files.add(path)
    digest = hashlib.sha256()
    digest.update(f"python{sys.version_info.major}.{sys.version_info.minor}".encode())  # ast.dump's format
    for file in sorted(files):
        digest.update(file.name.encode() + b"\0" + normalised_source(file) + b"\0")
    return digest.hexdigest()[:length]


def _package_locations(name: str) -> list[Path]:
    """Where an importable top-level package or module lives (editable installs included)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(p) for p in spec.submodule_search_locations]
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


def _top_level_names(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return sorted({line.strip() for line in text.splitlines() if line.strip()})
    names = set()
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if parts and file.suffix == ".py" and not parts[0].endswith((".dist-info", ".egg-info", "..")):
            names.add(parts[0][:-3] if len(parts) == 1 else parts[0])
    return sorted(n for n in names if not n.startswith("__editable__"))


@functools.cache
def distribution_fingerprint(name: str) -> str:
    """``<version>+src.<hash of its packages' code>``, or the version alone when no source is found."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return "unknown"
    locations = [loc for top in _top_level_names(dist) for loc in _package_locations(top)]
    if not locations:
        return dist.version
    return f"{dist.version}+src.{source_hash(locations)}"


@functools.cache
def module_fingerprint(module_name: str) -> str:
    """Fingerprint of a plugin module loaded without a distribution (``BENCHBASE_EXTRA_PLUGINS``):
    the code of its top-level package, or of the file itself."""
    locations = _package_locations(module_name.split(".")[0])
    return f"local+src.{source_hash(locations)}" if locations else "local"


def harness_distribution() -> str:
    """The distribution that provides the harness (`benchbase` itself)."""
    return "benchbase"


# --- module closures: the code of exactly what computes -----------------------------------------

#: The harness modules that can change a run's numbers: the package itself (it runs first, and pins
#: the CPU code paths) and every module of `benchbase.compute`, the computing layer. The harness
#: fingerprint covers these and every ``benchbase`` module they import (the contract's interfaces,
#: types, parameters and errors), less `HARNESS_INFRASTRUCTURE`; the import contracts
#: (``[tool.importlinter]``) keep reporting, running and CLI modules out of that closure.
HARNESS_COMPUTING = (
    "benchbase",
    "benchbase.compute",
    *sorted(
        f"benchbase.compute.{path.stem}"
        for path in (Path(__file__).resolve().parent.parent / "compute").glob("*.py")
        if path.stem != "__init__"
    ),
)
#: Contract modules the computing layer imports for lookup only, never entered by a closure: what
#: they decide enters the spec as data (the registry's entries by name, the numerics), and the
#: code of the plugins they find is keyed per plugin. ``registry``: name -> class; ``identity``:
#: this module; ``hookspecs``: the registration hooks.
HARNESS_INFRASTRUCTURE = (
    "benchbase.contract.hookspecs",
    "benchbase.contract.identity",
    "benchbase.contract.registry",
)


@functools.cache
def module_file(name: str) -> Path | None:
    """The Python source of module `name` (a package's ``__init__.py``), found without importing it
    (only a top-level package is looked up through the import system, editable installs included).
    None when there is no such source: not installed, a compiled extension, a namespace package."""
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if not rest:
        return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None
    folders = [Path(p) for p in spec.submodule_search_locations or []]
    for part in rest[:-1]:
        folders = [folder / part for folder in folders if (folder / part).is_dir()]
    for folder in folders:
        for candidate in (folder / rest[-1] / "__init__.py", folder / f"{rest[-1]}.py"):
            if candidate.is_file():
                return candidate
    return None


def _import_statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions and classes too, but not under ``if TYPE_CHECKING:``
    (which never runs)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


@functools.cache
def imported_modules(name: str) -> frozenset[str]:
    """The modules that module `name` imports, as absolute names: ``import a.b`` gives ``a.b``;
    ``from a.b import c`` gives ``a.b`` and ``a.b.c`` (which counts where it is a module);
    relative imports are resolved against the module's package. Names that are no module are
    left for the caller to drop (`module_file` finds nothing)."""
    path = module_file(name)
    if path is None:
        return frozenset()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):  # it cannot import anything that runs
        return frozenset()
    package = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
    found: set[str] = set()
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            if node.level > len(package) or not package[0]:  # beyond the top-level package
                continue
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        found.add(base)
        found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(found)


def module_closure(roots: Iterable[str], within: Iterable[str], exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """`roots` and every module they import, transitively, whose top-level package is in `within`,
    never entering a module of `exclude`; with each module the packages that contain it (importing
    ``a.b.c`` runs ``a`` and ``a.b`` first). Sorted by name."""
    return _closure(frozenset(roots), frozenset(within), frozenset(exclude))


@functools.cache
def _closure(roots: frozenset[str], within: frozenset[str], exclude: frozenset[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in exclude or name.split(".")[0] not in within or module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imported_modules(name))
    return tuple(sorted(seen))


def closure_hash(modules: Iterable[str], length: int = 12) -> str:
    """Hash of the normalised sources of `modules`, by name (so the same code hashes the same
    wherever it is installed)."""
    digest = hashlib.sha256()
    digest.update(f"python{sys.version_info.major}.{sys.version_info.minor}".encode())  # ast.dump's format
    for name in sorted(set(modules)):
        path = module_file(name)
        source = normalised_source(path) if path is not None else b""
        digest.update(name.encode() + b"\0" + source + b"\0")
    return digest.hexdigest()[:length]


def closure_fingerprint(
    roots: Iterable[str], within: Iterable[str], exclude: Iterable[str] = (), version: str = "unknown"
) -> str:
    """``<version>+code.<hash>`` of the module closure of `roots` (`module_closure`)."""
    return _closure_fingerprint(*(tuple(sorted(set(names))) for names in (roots, within, exclude)), version)


@functools.cache
def _closure_fingerprint(
    roots: tuple[str, ...], within: tuple[str, ...], exclude: tuple[str, ...], version: str
) -> str:
    return f"{version}+code.{closure_hash(module_closure(roots, within, exclude))}"


@functools.cache
def _version(distribution: str) -> str:
    # Cached: reading a distribution's metadata costs a millisecond and planning asks once per run.
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def harness_modules() -> tuple[str, ...]:
    """The modules the harness fingerprint covers: `HARNESS_COMPUTING` and what it imports of
    ``benchbase``, less `HARNESS_INFRASTRUCTURE`."""
    return module_closure(HARNESS_COMPUTING, ["benchbase"], HARNESS_INFRASTRUCTURE)


def harness_fingerprint() -> str:
    """The harness's part of a run's identity: ``<version>+code.<hash>`` of `harness_modules`."""
    version = _version(harness_distribution())
    return closure_fingerprint(HARNESS_COMPUTING, ["benchbase"], HARNESS_INFRASTRUCTURE, version)


def defining_module(obj: Any) -> str | None:
    """The module that defines a registered object: a class, a factory function, or a
    `functools.partial` of one."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    name = getattr(obj, "__module__", None)
    return name if isinstance(name, str) and module_file(name) is not None else None


def plugin_modules(roots: Iterable[str]) -> tuple[str, ...]:
    """The modules a bundled plugin's fingerprint covers: the closure of `roots` within their own
    top-level packages. A plugin of ``benchbase_molecules`` never enters ``benchbase``, whose
    computing layer is keyed as the harness; one of the core's own (``benchbase.compute.protocols``) does,
    less `HARNESS_INFRASTRUCTURE`."""
    roots = list(roots)
    return module_closure(roots, {m.split(".")[0] for m in roots}, HARNESS_INFRASTRUCTURE)


def plugin_fingerprint(roots: Iterable[str], version: str) -> str:
    """``<version>+code.<hash>`` of `plugin_modules` of `roots`."""
    roots = list(roots)
    return closure_fingerprint(roots, {m.split(".")[0] for m in roots}, HARNESS_INFRASTRUCTURE, version)


#: What `clear_fingerprint_caches` forgets (the functions themselves, whatever a test patches).
_CACHED = (
    module_file,
    imported_modules,
    _closure,
    _closure_fingerprint,
    distribution_fingerprint,
    module_fingerprint,
    _version,
)


def clear_fingerprint_caches() -> None:
    """Forget every fingerprint and module lookup of this process: sources are read once per
    process, so a test that edits (or redirects) a source file calls this before and after."""
    for cached in _CACHED:
        cached.cache_clear()


# --- content hashes ----------------------------------------------------------------------------


def canonical(value: Any) -> str:
    """Canonical JSON: the form every id is hashed from."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(value: Any, length: int = 16) -> str:
    """The id of a spec (a run's, a stage's): a hash of its canonical JSON."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:length]
