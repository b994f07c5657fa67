"""What makes two runs the same computation: the code that computes them and their numerics.

A run's id (and a pretraining stage's) is a hash of its canonical spec. Besides plugin names,
parameters, training settings and seed, the spec holds

- ``code``: a fingerprint of every distribution involved - the harness's own and each one that
  provides a plugin of the run - as ``<version>+src.<hash>``, the hash covering the Python source of
  the distribution's top-level packages. The source is hashed as its syntax tree with docstrings
  removed (`ast.dump`), so comments, docstrings and formatting do not change an identity, while any
  change to what the code does does. A store therefore never reuses a result of other code.
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
import os
import sys
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
