"""Readers of the two public glass-dynamics file layouts, with validation.

BOTAN layout (h3-Open-BDEC/pyg_botan; Shiba et al. 2023): ``<root>/T<temp>/<train|test>/*tc<NN>*.npz``
with keys ``types`` (N,) 0 = A / 1 = B, ``initial_positions`` (N, 3), ``positions`` (runs, N, 3)
unwrapped at time index NN; the box is cubic with side (N / 1.2)^(1/3) unless a ``box`` key
(scalar or (3,)) is present (files written by `benchbase glass simulate` carry it).

GlassBench layout (the Roadmap on machine learning glassy dynamics, Jung et al. 2023, Zenodo
10.5281/zenodo.10118191, ``KA_models/``): ``*.npz`` files under the root with ``types``,
``initial_positions`` and ``md_prop``, the propensities at several times, shaped (N, times) or
(times, N); optional ``box`` and ``temperature`` keys. Temperature and split are otherwise read from
path components ``T<temp>`` and ``train`` / ``test``. Only the node target exists in this layout.

Every reader raises `PluginError` naming the file and the problem (missing key, wrong shape,
non-finite values, unknown particle types): never silently wrong data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchbase import PluginError

DENSITY = 1.2
_TEMPERATURE = re.compile(r"^T(\d+(?:\.\d*)?)$")
_TIME_INDEX = re.compile(r"tc(\d+)")


@dataclass
class Sample:
    """One configuration at one time index, as read from disk (targets not yet computed)."""

    path: Path
    config: str
    split: str
    temperature: float
    time_index: int
    types: np.ndarray
    initial_positions: np.ndarray
    box: np.ndarray
    positions: np.ndarray | None = None  # (runs, N, 3), BOTAN layout
    propensity: np.ndarray | None = None  # (N,), GlassBench layout


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:
        raise PluginError(f"{path}: not a readable .npz file ({exc})") from None


def _require(path: Path, data: dict, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise PluginError(f"{path}: missing key(s) {missing}; found {sorted(data)}")


def _finite(path: Path, name: str, values: np.ndarray) -> None:
    if not np.issubdtype(values.dtype, np.number):
        raise PluginError(f"{path}: {name!r} has non-numeric dtype {values.dtype}")
    if not np.all(np.isfinite(values)):
        raise PluginError(f"{path}: {name!r} contains NaN or infinite values")


def _types(path: Path, data: dict) -> np.ndarray:
    types = np.asarray(data["types"])
    if types.ndim != 1 or len(types) < 2:
        raise PluginError(f"{path}: 'types' must be a 1-D array of particle types, got shape {types.shape}")
    _finite(path, "types", types)
    if not np.all(np.isin(types, (0, 1))):
        raise PluginError(f"{path}: 'types' must be 0 (A) or 1 (B); found {np.unique(types)[:10].tolist()}")
    return types.astype(np.int64)


def _positions(path: Path, name: str, values: np.ndarray, shape: tuple) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != shape:
        raise PluginError(f"{path}: {name!r} must have shape {shape}, got {values.shape}")
    _finite(path, name, values)
    return values.astype(np.float64)


def _box(path: Path, data: dict, n: int) -> np.ndarray:
    if "box" not in data:
        return np.full(3, (n / DENSITY) ** (1.0 / 3.0))
    box = np.asarray(data["box"], dtype=np.float64).reshape(-1)
    if box.size == 1:
        box = np.repeat(box, 3)
    if box.shape != (3,) or not np.all(np.isfinite(box)) or np.any(box <= 0):
        raise PluginError(f"{path}: 'box' must be a positive scalar or 3 lengths, got {data['box']!r}")
    return box


def temperature_of_dir(name: str) -> float | None:
    """0.44 for a directory named 'T0.44', else None."""
    match = _TEMPERATURE.match(name)
    return float(match.group(1)) if match else None


def _temperature_of(path: Path, data: dict) -> float | None:
    if "temperature" in data:
        return float(np.asarray(data["temperature"]).reshape(-1)[0])
    for part in reversed(path.parts[:-1]):
        match = _TEMPERATURE.match(part)
        if match:
            return float(match.group(1))
    return None


def _split_of(path: Path) -> str:
    for part in reversed(path.parts[:-1]):
        if part in ("train", "test", "valid"):
            return part
    return ""


def read_botan_file(path: Path | str) -> Sample:
    path = Path(path)
    data = _load(path)
    _require(path, data, ("types", "initial_positions", "positions"))
    types = _types(path, data)
    n = len(types)
    initial = _positions(path, "initial_positions", data["initial_positions"], (n, 3))
    positions = np.asarray(data["positions"])
    if positions.ndim != 3 or positions.shape[1:] != (n, 3) or positions.shape[0] < 1:
        raise PluginError(f"{path}: 'positions' must have shape (runs, {n}, 3), got {positions.shape}")
    positions = _positions(path, "positions", positions, positions.shape)
    match = _TIME_INDEX.search(path.stem)
    if match is None:
        raise PluginError(f"{path}: file name must contain the time index as 'tc<NN>' (BOTAN layout)")
    temperature = _temperature_of(path, data)
    if temperature is None:
        raise PluginError(f"{path}: no temperature: put the file under a 'T<temp>' directory")
    return Sample(
        path=path,
        config=path.stem[: match.start()].rstrip("_"),
        split=_split_of(path),
        temperature=temperature,
        time_index=int(match.group(1)),
        types=types,
        initial_positions=initial,
        box=_box(path, data, n),
        positions=positions,
    )


def read_glassbench_file(path: Path | str) -> list[Sample]:
    """One Sample per time column of ``md_prop``."""
    path = Path(path)
    data = _load(path)
    _require(path, data, ("types", "initial_positions", "md_prop"))
    types = _types(path, data)
    n = len(types)
    initial = _positions(path, "initial_positions", data["initial_positions"], (n, 3))
    prop = np.asarray(data["md_prop"])
    if prop.ndim == 1 and len(prop) == n:
        prop = prop[:, None]
    if prop.ndim != 2 or n not in prop.shape:
        raise PluginError(f"{path}: 'md_prop' must have shape ({n}, times) or (times, {n}), got {prop.shape}")
    if prop.shape[0] != n:
        prop = prop.T
    _finite(path, "md_prop", prop)
    temperature = _temperature_of(path, data)
    if temperature is None:
        raise PluginError(f"{path}: no temperature: add a 'temperature' key or a 'T<temp>' directory")
    box = _box(path, data, n)
    return [
        Sample(
            path=path,
            config=path.stem,
            split=_split_of(path),
            temperature=temperature,
            time_index=k,
            types=types,
            initial_positions=initial,
            box=box,
            propensity=prop[:, k].astype(np.float64),
        )
        for k in range(prop.shape[1])
    ]


def find_files(root: Path | str, what: str) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise PluginError(f"{what} data directory {root} does not exist; pass the dataset parameter root = '...'")
    files = sorted(root.rglob("*.npz"), key=lambda p: str(p.relative_to(root)))
    files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    if not files:
        raise PluginError(f"no .npz files under {root} ({what} layout expected)")
    return files
