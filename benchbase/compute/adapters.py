"""Adapter datasets: one registered name that serves many data sets - ``csv`` (any CSV file of
SMILES, in the molecular plugin) and ``pyg`` (any PyTorch Geometric dataset class, in the core).

Their grid parameters say which data set. `dataset_label` turns those parameters into the name of
the data set (``csv/solubility``) that the dataset, its caches and the leaderboard tables use, so
that two CSV files in one grid never share a table. `declared_tasks` turns per-task declarations
(tables ``kind``, ``unit``, ``metric``: task -> value) and the label values into `TaskInfo` objects,
inferring what is unambiguous, with one clear message for anything malformed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

from benchbase.contract.errors import PluginError
from benchbase.contract.params import Param
from benchbase.contract.types import TaskInfo

KINDS = ("regression", "classification")
#: Headline metric of a task whose `metric` is not declared.
DEFAULT_METRIC = {"regression": "mae", "classification": "rocauc"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

#: The parameters every adapter declares the same way.
NAME = Param(
    None,
    "str",
    "what this data set is called (letters, digits, '_', '.', '-'): it names the dataset, its cache and its "
    "leaderboard tables, so that several data sets of one adapter stay apart; default: the file's stem (csv) "
    "or the class name (pyg)",
)
KIND = Param(
    None,
    "dict",
    "task -> 'regression' or 'classification'; default: classification for a task whose labels are all 0/1",
)
UNIT = Param(None, "dict", 'task -> unit of its labels, e.g. {gap = "eV"}')
METRIC = Param(
    None, "dict", "task -> headline metric (`benchbase plugins` lists them); default: mae, or rocauc for classification"
)
#: The four of them by parameter name (`benchbase.ADAPTER_PARAMS`, for adapters of plugins).
ADAPTER_PARAMS = {"name": NAME, "kind": KIND, "unit": UNIT, "metric": METRIC}


def dataset_label(registered: str, params: Mapping[str, Any]) -> str:
    """The name of the data set an adapter serves: ``<registered>/<label>``, where the label is the
    `name` parameter or, unset, the stem of a `path` parameter (a file; ``mols.csv.gz`` is ``mols``)
    or the last part of a `class` parameter (a dotted path). A dataset with none of these parameters is `registered`
    itself, so non-adapter datasets keep their names."""
    label = params.get("name")
    if not label and isinstance(params.get("path"), str):
        path = PurePath(params["path"])
        if path.suffix.lower() in (".gz", ".bz2", ".xz", ".zip"):  # mols.csv.gz is mols, like mols.csv
            path = path.with_suffix("")
        label = path.stem
    if not label and isinstance(params.get("class"), str):
        label = params["class"].rpartition(".")[2]
    return f"{registered}/{label}" if label else registered


def check_name(registered: str, name: str | None) -> None:
    """A `name` parameter becomes part of file and table names: keep it to a safe alphabet."""
    if name is not None and not _NAME.fullmatch(name):
        raise PluginError(
            f"dataset {registered!r}: name {name!r} must start with a letter or digit and hold only letters, "
            "digits, '_', '.' and '-'"
        )


def per_task(option: str, value: Mapping[str, Any] | None, tasks: Sequence[str], where: str) -> dict[str, str]:
    """A per-task declaration (a table task -> string) checked against the tasks."""
    if value is None:
        return {}
    unknown = sorted(set(value) - set(tasks))
    if unknown:
        raise PluginError(f"{where}: {option} names unknown task(s) {unknown}; the tasks are {list(tasks)}")
    return dict(value)


def check_declarations(kind: Any, unit: Any, metric: Any, where: str) -> None:
    """What can be checked before the data is read: tables of strings, and the kinds named. Keeps
    bad values at planning even when the data is absent."""
    for option, value in (("kind", kind), ("unit", unit), ("metric", metric)):
        if value is not None and (
            not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values())
        ):
            raise PluginError(f"{where}: {option} must be a table task -> string, got {value!r}")
    bad = [k for k in (kind or {}).values() if k not in KINDS]
    if bad:
        raise PluginError(f"{where}: kind must be 'regression' or 'classification', got {bad[0]!r}")


def _is_binary(values: np.ndarray) -> bool:
    known = values[np.isfinite(values)]
    return bool(len(known)) and bool(np.isin(known, (0.0, 1.0)).all())


def _metric(name: str, kind: str, task: str, where: str) -> bool:
    """Check that `name` is a registered metric for `kind`; returns whether higher is better."""
    from benchbase.contract.registry import default_registry

    registry = default_registry()
    if name not in registry.names("metric"):
        raise PluginError(f"{where}: unknown metric {name!r} for task {task!r}; registered: {registry.names('metric')}")
    cls = registry.get("metric", name).obj
    if kind not in cls.kinds:
        raise PluginError(f"{where}: metric {name!r} does not apply to {kind} task {task!r}")
    return bool(cls.higher_is_better)


def declared_tasks(
    labels: Mapping[str, np.ndarray],
    kind: Mapping[str, str] | None,
    unit: Mapping[str, str] | None,
    metric: Mapping[str, str] | None,
    where: str,
    description: str = "",
) -> list[TaskInfo]:
    """One graph-level `TaskInfo` per entry of `labels` (task name -> float labels, NaN = missing),
    in order. Kinds not declared are inferred (all 0/1: classification); a task declared
    classification must have 0/1 labels; a task needs at least one label."""
    names = list(labels)
    kinds = per_task("kind", kind, names, where)
    units = per_task("unit", unit, names, where)
    metrics = per_task("metric", metric, names, where)
    out = []
    for name in names:
        values = np.asarray(labels[name], dtype=np.float64)
        if not np.isfinite(values).any():
            raise PluginError(f"{where}: task {name!r} has no label at all")
        task_kind = kinds.get(name) or ("classification" if _is_binary(values) else "regression")
        if task_kind == "classification" and not _is_binary(values):
            raise PluginError(f"{where}: task {name!r} is declared classification but its labels are not all 0/1")
        headline = metrics.get(name) or DEFAULT_METRIC[task_kind]
        higher = _metric(headline, task_kind, name, where)
        out.append(
            TaskInfo(
                name=name,
                kind=task_kind,  # type: ignore[arg-type]
                unit=units.get(name, ""),
                metric=headline,
                higher_is_better=higher,
                description=description,
            )
        )
    return out
