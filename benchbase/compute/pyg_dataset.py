"""``pyg``: any PyTorch Geometric dataset class as a benchbase dataset, without code.

::

    [params.dataset.pyg]
    class = "torch_geometric.datasets.FakeDataset"
    kwargs = { num_graphs = 300, avg_num_nodes = 12, avg_degree = 3, num_channels = 8, num_classes = 2, task = "graph" }

The class (a `torch_geometric.data.InMemoryDataset`, or any `torch_geometric.data.Dataset` of
`Data` objects) is one of `torch_geometric.datasets` (``class = "TUDataset"`` or its dotted path),
or of an installed distribution named explicitly (``distribution = "my-datasets"``, the class
``my_datasets.Rings``). The name is checked before anything is imported, and a module found in
the working directory or anywhere outside that distribution is refused: a grid file, or a ``.py``
file planted beside the data, never runs code. It is built with `kwargs`; a ``root`` it takes and is
not given defaults to ``$BENCHBASE_CACHE/pyg/<name>``. It is built with the random generators
seeded (`seed`), so that a synthetic class gives the same graphs in every process. Its graphs become
contiguous arrays once per process (PyG caches its own processed files under ``root``):

- ``x`` and ``edge_attr``: integer (or boolean) columns are categorical, each with vocabulary
  max + 1 over the data set (capability ``x_categorical``, and ``node_class_counts`` by the first
  column); float columns are `FeatureSpec.node_dim` / ``edge_dim`` wide. No ``x``: a learned constant.
- ``pos``: 3-D coordinates (2-D ones get z = 0).
- graph-level ``y`` (one row per graph): one task per column, named by `tasks` (default ``y``, or
  ``y0``, ``y1``, ...). Float labels are regression; 0/1 labels classification; an integer column
  with more classes becomes one binary task per class (``y_0``, ``y_1``, ...) unless its kind is
  declared regression. NaN labels are missing. Node-level ``y`` is not read (an error says so).

Every graph has the graph property ``size`` (its number of nodes). Native ids are positions in the
PyG dataset. Errors are one line: a class that cannot be imported or built, mixed or unsupported
attributes, a download that this machine cannot make (the dataset's runs are then skipped).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchbase.compute.adapters import (
    KIND,
    METRIC,
    NAME,
    UNIT,
    check_declarations,
    check_name,
    dataset_label,
    declared_tasks,
)
from benchbase.contract.api import (
    EDGE_ATTR,
    NODE_CLASS_COUNTS,
    POS,
    SIZE,
    X_CATEGORICAL,
    Dataset,
    FeatureSpec,
    GraphArrays,
)
from benchbase.contract.errors import DataUnavailable, PluginError
from benchbase.contract.params import Param
from benchbase.contract.types import TaskInfo

PARAM_SPEC = {
    "class": Param(
        None,
        "str",
        "a class of torch_geometric.datasets (TUDataset, or its dotted path), or the dotted path of a class "
        "of the installed distribution named by `distribution` (required)",
    ),
    "distribution": Param(
        None, "str", "installed distribution providing a class outside torch_geometric.datasets (named explicitly)"
    ),
    "kwargs": Param({}, "dict", "the class's constructor arguments; root defaults to the cache directory"),
    "name": NAME,
    "tasks": Param(None, "list", "names of y's columns; default: y, or y0, y1, ...", items="str"),
    "kind": KIND,
    "unit": UNIT,
    "metric": METRIC,
    "seed": Param(0, "int", "seed of the random generators while the class builds its graphs", min=0),
}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Python's, numpy's and torch's global generators seeded inside, restored afterwards."""
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _weights_only_load(torch_load: Any, f: Any, map_location: Any = None, *_: Any, **kwargs: Any) -> Any:
    """`torch_load` (torch's own `torch.load`) weights-only, with no fallback and whatever the caller asked: PyG's own
    `torch_geometric.io.fs.torch_load` retries with ``weights_only=False`` when a file holds a global
    it does not know, and some classes' ``get`` or ``process`` call ``torch.load(...,
    weights_only=False)`` themselves; either would run whatever a planted file under ``root`` asks.
    PyG allowlists its own classes at import. A ``pickle_module`` (positional or not) is dropped:
    a weights-only load uses its own unpickler."""
    import pickle

    import fsspec

    kwargs = {k: v for k, v in kwargs.items() if k not in ("weights_only", "pickle_module")}
    try:
        if isinstance(f, (str, os.PathLike)):
            with fsspec.open(f, "rb") as handle:
                return torch_load(handle, map_location, weights_only=True, **kwargs)
        return torch_load(f, map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as exc:
        raise PluginError(
            f"{f} holds objects that a weights-only load refuses ({str(exc).splitlines()[0]}); "
            "if you built it yourself with another version, delete it to have it rebuilt"
        ) from None


@contextlib.contextmanager
def _weights_only_loading() -> Iterator[None]:
    """While a PyG class builds and its graphs are read, every `torch.load` is weights-only: PyG's
    loader, the module attribute (what ``torch.load(...)`` in any class's code calls) and
    `torch_geometric.data.dataset`'s view of it."""
    import torch
    import torch_geometric.io.fs as pyg_fs

    saved = pyg_fs.torch_load, torch.load
    load = functools.partial(_weights_only_load, torch.load)
    pyg_fs.torch_load, torch.load = load, load  # type: ignore[assignment]
    try:
        yield
    finally:
        pyg_fs.torch_load, torch.load = saved


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_PYG_DATASETS = "torch_geometric.datasets"


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _check_origin(top: str, distribution: str, where: str) -> None:
    """`top` (a top-level module) must be provided by the installed `distribution` and found among
    its files, not shadowed by a module of the same name in the working directory or elsewhere.
    Finding a top-level module's spec runs none of its code."""
    providers = {_canonical(d) for d in importlib.metadata.packages_distributions().get(top, [])}
    if _canonical(distribution) not in providers:
        raise PluginError(
            f"{where}: module {top!r} is not provided by an installed distribution {distribution!r} "
            f"(installed providers: {sorted(providers) or 'none'})"
        )
    spec = importlib.util.find_spec(top)
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    files = importlib.metadata.distribution(distribution).files or []
    expected = {Path(str(f.locate())).resolve() for f in files if str(f) in (f"{top}/__init__.py", f"{top}.py")}
    if origin not in expected:
        raise PluginError(f"{where}: module {top!r} would be imported from {origin}, not from {distribution!r}'s files")


def _import(path: str, where: str, distribution: str | None = None) -> type:
    """The class named `path`, checked before anything is imported (see the module docstring)."""
    if not isinstance(path, str) or not _DOTTED.fullmatch(path):
        raise PluginError(f"{where}: class {path!r} must be a dotted Python name")
    module, _, attribute = path.rpartition(".")
    if module in ("", _PYG_DATASETS):
        import torch_geometric.datasets

        if attribute not in torch_geometric.datasets.__all__:
            raise PluginError(
                f"{where}: {attribute!r} is not a class of torch_geometric.datasets; a class of another package "
                'needs distribution = "<the installed distribution providing it>"'
            )
        module = _PYG_DATASETS
    elif distribution is None:
        raise PluginError(
            f"{where}: {path!r} is not in torch_geometric.datasets: name the installed distribution providing it "
            '(distribution = "..."); modules are never imported from the working directory or the data'
        )
    else:
        _check_origin(module.partition(".")[0], distribution, where)
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise PluginError(f"{where}: cannot import {path!r}: {exc}") from None
    if not inspect.isclass(found):
        raise PluginError(f"{where}: {path!r} is not a class (give the dotted path of a dataset class)")
    return found


def _columns(value: Any, rows: int) -> np.ndarray:
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    return array.reshape(rows, -1)


class _Stack:
    """One optional per-node (or per-edge) attribute over all graphs: present everywhere or nowhere,
    one width, integers or floats throughout."""

    def __init__(self, attribute: str, where: str) -> None:
        self.attribute, self.where, self.parts = attribute, where, []

    def add(self, value: Any, rows: int) -> None:
        self.parts.append(None if value is None else _columns(value, rows))

    def array(self) -> np.ndarray | None:
        present = [p is not None for p in self.parts]
        if not any(present):
            return None
        if not all(present):
            raise PluginError(f"{self.where}: some graphs have {self.attribute} and others do not")
        if len({p.shape[1] for p in self.parts}) > 1 or len({p.dtype.kind == "f" for p in self.parts}) > 1:
            raise PluginError(f"{self.where}: {self.attribute} differs in width or type between graphs")
        out = np.concatenate(self.parts)
        return out.astype(np.float32) if out.dtype.kind == "f" else out.astype(np.int64)


def _vocabulary(values: np.ndarray | None, attribute: str, where: str) -> tuple[tuple[int, ...], int]:
    """(categorical vocabulary sizes, float width) of a stacked attribute."""
    if values is None:
        return (), 0
    if values.dtype.kind == "f":
        return (), values.shape[1]
    if values.size and values.min() < 0:
        raise PluginError(f"{where}: categorical {attribute} must be non-negative, found {int(values.min())}")
    return tuple(int(v) + 1 for v in (values.max(axis=0) if len(values) else np.zeros(values.shape[1]))), 0


def _graph_label(y: Any, nodes: int, where: str) -> np.ndarray:
    """One graph's y as one row; node-level or malformed y is an error."""
    if y is None:
        raise PluginError(f"{where}: a graph has no y: there is nothing to predict")
    array = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    if array.ndim == 0 or array.shape[0] == 1:
        return array.reshape(1, -1)
    if array.shape[0] == nodes:
        raise PluginError(f"{where}: y has one row per node; the pyg adapter reads graph-level y only")
    raise PluginError(f"{where}: y of shape {tuple(array.shape)} is neither one row per graph nor per node")


def _capabilities(arrays: GraphArrays, features: FeatureSpec) -> frozenset[str]:
    provides = {SIZE}
    if features.node_vocab:
        provides |= {X_CATEGORICAL, NODE_CLASS_COUNTS}
    if arrays.edge_attr is not None:
        provides.add(EDGE_ATTR)
    if features.has_pos:
        provides.add(POS)
    return frozenset(provides)


class PyGDataset(Dataset):
    """A torch_geometric dataset class behind benchbase's `Dataset` (see the module docstring)."""

    description = "any torch_geometric dataset class, by dotted path (class = ..., kwargs = {...})"

    def __init__(
        self,
        dataset_class: str | None = None,
        distribution: str | None = None,
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        tasks: list[str] | None = None,
        kind: dict[str, str] | None = None,
        unit: dict[str, str] | None = None,
        metric: dict[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        check_name("pyg", name)
        self.name = dataset_label("pyg", {"class": dataset_class, "name": name})
        self.dataset_class, self.kwargs = dataset_class, dict(kwargs or {})
        self.distribution = distribution
        self.task_names, self.kind, self.unit, self.metric, self.seed = tasks, kind, unit, metric, int(seed)
        check_declarations(kind, unit, metric, self.where)
        self._loaded: dict[str, Any] | None = None

    @property
    def where(self) -> str:
        return f"dataset {self.name!r} ({self.dataset_class})"

    # --- what the grid reads at planning ----------------------------------------------------------
    @property
    def tasks(self) -> list[TaskInfo]:  # type: ignore[override]
        return self._load()["tasks"]

    @property
    def features(self) -> FeatureSpec:  # type: ignore[override]
        return self._load()["features"]

    @property
    def provides(self) -> frozenset[str]:  # type: ignore[override]
        return self._load()["provides"]

    def check_available(self) -> None:
        self._load()

    # --- Dataset ------------------------------------------------------------------------------
    def arrays(self) -> GraphArrays:
        return self._load()["arrays"]

    def ids(self) -> np.ndarray:
        return np.arange(self.arrays().num_graphs)

    def graph_property(self, key: str) -> np.ndarray | None:
        arrays = self.arrays()
        if key == SIZE:
            return np.diff(arrays.node_ptr)
        if key == NODE_CLASS_COUNTS and X_CATEGORICAL in self.provides:
            classes = self.features.node_vocab[0]
            graph_of = np.repeat(np.arange(arrays.num_graphs), np.diff(arrays.node_ptr))
            flat = graph_of * classes + arrays.x[:, 0]
            return np.bincount(flat, minlength=arrays.num_graphs * classes).reshape(-1, classes)
        return None

    def node_class_names(self) -> list[str] | None:
        if X_CATEGORICAL not in self.provides:
            return None
        return [f"x0={v}" for v in range(self.features.node_vocab[0])]

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"tasks": [], "available": False, "class": self.dataset_class}
        if self.dataset_class is None:
            return {**info, "note": "set the parameter class"}
        try:
            info.update(tasks=[t.name for t in self.tasks], size=self.arrays().num_graphs, available=True)
        except PluginError as exc:
            info["error"] = str(exc)
        return info

    # --- loading ------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if self._loaded is None:
            arrays, labels, integer_y = self._convert(self._graphs())
            arrays.targets = self._expand_classes(labels, integer_y)
            description = f"y of {self.dataset_class}"
            tasks = declared_tasks(arrays.targets, self.kind, self.unit, self.metric, self.where, description)
            features = self._features(arrays)
            self._loaded = {"arrays": arrays, "tasks": tasks, "features": features}
            self._loaded["provides"] = _capabilities(arrays, features)
        return self._loaded

    def _features(self, arrays: GraphArrays) -> FeatureSpec:
        node_vocab, node_dim = _vocabulary(arrays.x if arrays.x.shape[1] else None, "x", self.where)
        edge_vocab, edge_dim = _vocabulary(arrays.edge_attr, "edge_attr", self.where)
        return FeatureSpec(node_vocab, node_dim, edge_vocab, edge_dim, arrays.pos is not None)

    def _graphs(self) -> list[Any]:
        """The class built with `kwargs` (and a default root), its graphs as a list of `Data`."""
        from torch_geometric.data import Dataset as PyGBase
        from torch_geometric.data import HeteroData

        if self.dataset_class is None:
            raise PluginError("dataset 'pyg' needs the parameter class: the dotted path of a torch_geometric dataset")
        cls = _import(self.dataset_class, self.where, self.distribution)
        if not issubclass(cls, PyGBase):
            raise PluginError(f"{self.where}: not a torch_geometric dataset class (a torch_geometric.data.Dataset)")
        kwargs = dict(self.kwargs)
        if "root" in inspect.signature(cls).parameters and "root" not in kwargs:
            from benchbase.compute.cache import cache_dir

            kwargs["root"] = str(cache_dir("pyg", self.name.partition("/")[2] or "default"))
        try:
            with _seeded(self.seed), _weights_only_loading():
                dataset = cls(**kwargs)
                graphs = [dataset[i] for i in range(len(dataset))]
        except PluginError:
            raise
        except TypeError as exc:
            raise PluginError(f"{self.where}: cannot be built with kwargs {self.kwargs}: {exc}") from None
        except OSError as exc:  # a download this machine cannot make (URLError is an OSError), or no file
            raise DataUnavailable(
                f"{self.where}: its data could not be loaded ({exc}); on a machine with internet build it once "
                f"with root = {kwargs.get('root')!r} and copy that directory here"
            ) from None
        except Exception as exc:  # the class's own error: say which class and what it said
            raise PluginError(f"{self.where}: building it failed: {type(exc).__name__}: {exc}") from None
        if not graphs:
            raise PluginError(f"{self.where}: the dataset has no graphs")
        if any(isinstance(g, HeteroData) for g in graphs):
            raise PluginError(f"{self.where}: heterogeneous graphs (HeteroData) are not supported")
        return graphs

    def _convert(self, graphs: list[Any]) -> tuple[GraphArrays, dict[str, np.ndarray], bool]:
        """Contiguous arrays, labels by task name, and whether y is integer-typed."""
        sizes, edges, ys = [], [], []
        x, edge_attr, pos = _Stack("x", self.where), _Stack("edge_attr", self.where), _Stack("pos", self.where)
        for data in graphs:
            n = int(data.num_nodes or 0)
            edge_index = data.edge_index
            edge_index = np.zeros((2, 0), np.int64) if edge_index is None else edge_index.cpu().numpy()
            sizes.append(n)
            edges.append(edge_index.astype(np.int64))
            x.add(data.x, n)
            edge_attr.add(data.edge_attr, edge_index.shape[1])
            pos.add(data.pos, n)
            ys.append(_graph_label(data.y, n, self.where))
        if len({y.shape[1] for y in ys}) > 1:
            raise PluginError(f"{self.where}: y has a different number of columns in different graphs")
        node_ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in edges])]).astype(np.int64)
        x_array = x.array()
        arrays = GraphArrays(
            node_ptr,
            edge_ptr,
            np.concatenate(edges, axis=1),
            x_array if x_array is not None else np.zeros((node_ptr[-1], 0), np.float32),
            edge_attr=edge_attr.array(),
            pos=self._positions(pos.array()),
        )
        y = np.concatenate(ys)
        names = self.task_names or (["y"] if y.shape[1] == 1 else [f"y{j}" for j in range(y.shape[1])])
        if len(names) != y.shape[1]:
            raise PluginError(f"{self.where}: tasks names {len(names)} column(s) but y has {y.shape[1]}")
        labels = {name: y[:, j].astype(np.float64) for j, name in enumerate(names)}
        return arrays, labels, y.dtype.kind in "iub"

    def _positions(self, pos: np.ndarray | None) -> np.ndarray | None:
        if pos is None or pos.shape[1] == 3:
            return pos
        if pos.shape[1] in (1, 2):  # planar coordinates: z = 0, so 3-D encoders still apply
            return np.concatenate([pos, np.zeros((len(pos), 3 - pos.shape[1]), np.float32)], axis=1)
        raise PluginError(f"{self.where}: pos must have 2 or 3 columns, got {pos.shape[1]}")

    def _expand_classes(self, labels: dict[str, np.ndarray], integer_y: bool) -> dict[str, np.ndarray]:
        """An integer label column with more than two classes becomes one binary task per class,
        unless its kind is declared regression."""
        out = {}
        for name, values in labels.items():
            declared = (self.kind or {}).get(name)
            known = values[np.isfinite(values)]
            if not integer_y or declared == "regression" or np.isin(known, (0.0, 1.0)).all():
                out[name] = values
                continue
            if known.min() < 0:
                raise PluginError(f"{self.where}: class labels of {name!r} must be non-negative")
            for c in range(int(known.max()) + 1):
                out[f"{name}_{c}"] = np.where(np.isfinite(values), (values == c).astype(np.float64), np.nan)
        return out


def build(**params: Any) -> PyGDataset:
    """The registered factory: the grid's ``class`` parameter is a Python keyword, hence the rename."""
    return PyGDataset(dataset_class=params.pop("class", None), **params)


def register(register_fn: Any) -> None:
    register_fn("pyg", build, description=PyGDataset.description, param_spec=PARAM_SPEC)
