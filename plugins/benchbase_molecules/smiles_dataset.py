"""Public building blocks of the molecular plugin: a benchbase dataset from (ids, SMILES, labels).

What you get without writing it: the plugin's featuriser (exactly OGB's ``smiles2graph`` features),
its checksummed cache under ``$BENCHBASE_CACHE`` (rebuilt when the data or the featuriser changes,
or when the file is damaged), skipped-row bookkeeping, and the graph properties every molecular
protocol needs: ``size`` (heavy atoms), ``group`` (Bemis-Murcko scaffolds), ``node_class_counts``
(elements) and, when the source has one, ``official_split``. Every molecular protocol, encoder and
pretext task works on the result. The built-in ``csv`` dataset is made with it.

Two ways in; both are the stable API of ``benchbase_molecules`` (``MoleculeDataset``'s underscored
methods are not):

- `molecule_dataset` for data in memory::

      from benchbase import TaskInfo
      from benchbase_molecules.smiles_dataset import molecule_dataset

      data = molecule_dataset(
          "lab/solubility", [TaskInfo("logS", unit="log mol/L")],
          ids=[1, 2, 3], smiles=["CCO", "c1ccccc1", "CC(=O)O"], labels=[[-0.2], [-1.6], [0.1]],
      )

- a subclass of `SmilesDataset` for data read from elsewhere (a file, a database): implement
  `source_key` (a string that changes whenever the data does: the cache is keyed on it) and
  `records` (read only when the cache misses); pass the tasks to ``__init__``, or override
  `task_infos` when they are known only from the data. In a plugin, register a factory:
  ``register("lab/solubility", LabSolubility, param_spec=LabSolubility.param_spec)``.

Rows are never dropped silently: a row with an empty SMILES, with no label for any task, or whose
SMILES RDKit rejects (or the featuriser cannot encode) is left out and listed by `skipped` as
``(id, why)``, which every run records; `check_available` (called when a grid is planned)
featurises and logs a summary. A data set with no row left is an error naming what was dropped.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchbase import OFFICIAL_SPLIT, PluginError, TaskInfo, cache_dir
from benchbase_molecules.featurize import FEATURIZER_VERSION, featurize_smiles
from benchbase_molecules.moldata import (
    MoleculeDataset,
    _plain,
    assemble,
    digest,
    ogb_features,
    pack_strings,
    progress_bar,
    unpack_strings,
)

__all__ = ["MoleculeRecords", "SmilesDataset", "molecule_dataset", "skipped_summary"]

log = logging.getLogger("benchbase")
#: Codes of ``official_split`` in cache files (as `MoleculeDataset` reads them).
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2, "": 3}


@dataclass
class MoleculeRecords:
    """What a source hands over: one entry per input row, in the source's order.

    `ids` are the native ids (unique integers or strings: splits and predictions are written with
    them); `labels` is (rows, tasks) in task order, NaN where a label is missing (a 1-D array is
    taken as one task); `official_split` optionally gives each row's slice, "train", "valid",
    "test" or "" (none).
    """

    ids: Sequence[Any] | np.ndarray
    smiles: Sequence[str]
    labels: Sequence[Sequence[float]] | np.ndarray
    official_split: Sequence[str] | np.ndarray | None = None


class SmilesDataset(MoleculeDataset):
    """A molecular dataset from `MoleculeRecords`, featurised once into a cache keyed on
    `source_key`. Subclasses implement `source_key` and `records`, and `task_infos` when `tasks`
    are not given to ``__init__``. Declare ``official_split=True`` when the records carry one."""

    #: Sub-directory of the cache directory that holds this class's files.
    cache_namespace: ClassVar[str] = "molecules"

    def __init__(
        self,
        name: str,
        tasks: Sequence[TaskInfo] | None = None,
        *,
        official_split: bool = False,
        workers: int = 1,
    ) -> None:
        self.name = name
        self._tasks = None if tasks is None else list(tasks)
        self.workers = int(workers)
        self.features = ogb_features(has_pos=False)
        self.provides = self.base_provides | ({OFFICIAL_SPLIT} if official_split else frozenset())
        self._reset()

    # --- to implement ---------------------------------------------------------------------------
    def source_key(self) -> str:
        """A string that changes whenever the data does (a content hash): the cache is keyed on it."""
        raise NotImplementedError(f"{type(self).__name__} must implement source_key()")

    def records(self) -> MoleculeRecords:
        """The rows, read when the cache misses."""
        raise NotImplementedError(f"{type(self).__name__} must implement records()")

    def task_infos(self) -> list[TaskInfo]:
        """The tasks, in the column order of `MoleculeRecords.labels`, when not given to ``__init__``."""
        raise NotImplementedError(f"{type(self).__name__} must pass tasks to __init__ or implement task_infos()")

    # --- tasks ----------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[TaskInfo]:  # type: ignore[override]
        if self._tasks is None:
            self._tasks = list(self.task_infos())
        return self._tasks

    @property
    def all_tasks(self) -> list[TaskInfo]:  # type: ignore[override]
        return self.tasks

    # --- the cache ------------------------------------------------------------------------------
    def _cache_meta(self) -> dict[str, Any]:
        return {
            "source": self.source_key(),
            "tasks": [t.name for t in self.tasks],
            "featurizer": FEATURIZER_VERSION,
            "what": "smiles-graphs/1",
        }

    def _graph_file(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-") or "dataset"
        return cache_dir(self.cache_namespace) / f"{slug}-{digest(self._cache_meta())}.npz"

    @property
    def where(self) -> str:
        """How messages name this dataset (subclasses add where the data comes from)."""
        return f"dataset {self.name!r}"

    def _build(self, progress: bool) -> dict[str, np.ndarray]:
        return molecule_arrays(self.records(), len(self.tasks), self.where, self.workers, progress)

    def check_available(self) -> None:
        """Featurise now (once: the result is cached and the runs load it), so that every problem of
        the data - down to "no molecule is left" - stops the grid at planning, and the rows left out
        are reported there, once per command."""
        self.prepare(progress=False)

    def prepare(self, progress: bool = True) -> None:
        c = self._load(progress=progress)
        skipped = self._skipped_of(c)
        if skipped:
            log.warning("dataset %r: %s", self.name, skipped_summary(skipped, len(c["ids"]) + len(skipped)))

    @property
    def skipped(self) -> list[tuple[Any, str]]:
        """``(id, why)`` of every row left out: empty SMILES, no label, rejected by RDKit."""
        return self._skipped_of(self._load())

    @staticmethod
    def _skipped_of(c: dict[str, np.ndarray]) -> list[tuple[Any, str]]:
        reasons = unpack_strings(c["skipped_reasons"], c["skipped_reasons_ptr"])
        return [(_plain(i), why) for i, why in zip(c["skipped_ids"], reasons, strict=True)]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self._cache is not None:
            info.update(size=len(self._cache["ids"]), skipped=len(self.skipped))
        return info


def skipped_summary(skipped: list[tuple[Any, str]], total: int) -> str:
    """One line: how many rows were left out of `total`, by reason, with the first ids."""
    by_reason: dict[str, list[Any]] = {}
    for row_id, why in skipped:
        by_reason.setdefault(why.split(":")[0], []).append(row_id)
    parts = []
    for reason, ids in by_reason.items():
        shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        parts.append(f"{len(ids)} {reason} (ids {shown})")
    return f"{len(skipped)} of {total} rows skipped: " + "; ".join(parts) + " - listed in every run record"


# --- records -> cache arrays ------------------------------------------------------------------------


def _plain_ids(ids: Any, where: str) -> np.ndarray:
    """Ids as an integer or string array (cache files hold no Python objects), unique."""
    array = np.asarray(ids)
    if array.ndim != 1:
        raise PluginError(f"{where}: ids must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind not in "iu":
        array = array.astype(str)
    values, counts = np.unique(array, return_counts=True)
    if (counts > 1).any():
        raise PluginError(f"{where}: ids must be unique; {_plain(values[counts > 1][0])!r} appears more than once")
    return array


def _labels(labels: Any, rows: int, n_tasks: int, ids: np.ndarray, where: str) -> np.ndarray:
    array = np.asarray(labels, dtype=np.float64)
    if array.ndim == 1 and n_tasks == 1:
        array = array[:, None]
    if array.shape != (rows, n_tasks):
        raise PluginError(f"{where}: labels must have shape ({rows}, {n_tasks}) (rows, tasks), got {array.shape}")
    infinite = np.argwhere(np.isinf(array))
    if len(infinite):
        row, task = infinite[0]
        raise PluginError(f"{where}: the label of task {task} of id {_plain(ids[row])!r} is infinite")
    return array


def _split_codes(split: Any, rows: int, where: str) -> np.ndarray | None:
    if split is None:
        return None
    names = [str(s) for s in split]
    bad = sorted({s for s in names if s not in SPLIT_CODES})
    if len(names) != rows or bad:
        raise PluginError(f"{where}: official_split needs one of 'train', 'valid', 'test', '' per row; got {bad[:3]}")
    return np.array([SPLIT_CODES[s] for s in names], dtype=np.uint8)


def _rejection(smiles: str) -> str:
    """Why a SMILES that did not featurise was left out."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    if Chem.MolFromSmiles(smiles) is None:
        return f"SMILES rejected by RDKit: {smiles!r}"
    return f"SMILES outside the featuriser's (OGB's) vocabulary: {smiles!r}"


def molecule_arrays(
    records: MoleculeRecords, n_tasks: int, where: str, workers: int = 1, progress: bool = False
) -> dict[str, np.ndarray]:
    """The cache arrays of `MoleculeDataset` from records: rows with an empty SMILES or no label are
    left out before featurising, rows that do not featurise after; all of them are listed as
    ``skipped_ids`` / ``skipped_smiles`` / ``skipped_reasons``. Raises `PluginError` when nothing is
    left, or when ids, labels or the split are malformed."""
    ids = _plain_ids(records.ids, where)
    smiles = [s.strip() if isinstance(s, str) else "" for s in records.smiles]
    if len(smiles) != len(ids):
        raise PluginError(f"{where}: {len(smiles)} SMILES for {len(ids)} ids")
    labels = _labels(records.labels, len(ids), n_tasks, ids, where)
    split = _split_codes(records.official_split, len(ids), where)
    reasons = ["empty SMILES" if not s else "" for s in smiles]
    for row in np.flatnonzero(~np.isfinite(labels).any(axis=1)):
        reasons[row] = reasons[row] or f"no label: {smiles[row]!r}"
    candidates = np.array([i for i, why in enumerate(reasons) if not why], dtype=np.int64)
    update, close = progress_bar(len(candidates), f"featurising {where}", progress)
    try:
        graphs = featurize_smiles([smiles[i] for i in candidates], workers, progress=update)
    finally:
        close()
    for j in graphs.failed.tolist():
        reasons[candidates[j]] = _rejection(smiles[candidates[j]])
    skipped = np.array([i for i, why in enumerate(reasons) if why], dtype=np.int64)
    if len(skipped) == len(ids):
        summary = skipped_summary([(_plain(ids[i]), reasons[i]) for i in skipped], len(ids))
        raise PluginError(f"{where}: no molecule is left to use: {summary}")
    extra = {} if split is None else {"official_split": split[candidates][graphs.parsed]}
    out = assemble(graphs, ids[candidates], [smiles[i] for i in candidates], labels[candidates], extra)
    out["skipped_ids"] = ids[skipped]
    out["skipped_smiles"], out["skipped_smiles_ptr"] = pack_strings([smiles[i] for i in skipped])
    out["skipped_reasons"], out["skipped_reasons_ptr"] = pack_strings([reasons[i] for i in skipped])
    return out


# --- data in memory ---------------------------------------------------------------------------------


class _InMemory(SmilesDataset):
    """`molecule_dataset`'s class: the records are held, their content hash is the source key."""

    def __init__(self, name: str, tasks: Sequence[TaskInfo], records: MoleculeRecords, workers: int = 1) -> None:
        super().__init__(name, tasks, official_split=records.official_split is not None, workers=workers)
        self._records = records
        self._key: str | None = None

    def records(self) -> MoleculeRecords:
        return self._records

    def source_key(self) -> str:
        if self._key is None:
            r = self._records
            sha = hashlib.sha256()
            for part in (np.asarray(r.ids).astype(str), np.asarray(r.smiles, dtype=str)):
                sha.update("\x1f".join(part.tolist()).encode())
            sha.update(np.ascontiguousarray(np.asarray(r.labels, dtype=np.float64)).tobytes())
            if r.official_split is not None:
                sha.update("\x1f".join(map(str, r.official_split)).encode())
            self._key = sha.hexdigest()[:32]
        return self._key


def molecule_dataset(
    name: str,
    tasks: Sequence[TaskInfo],
    ids: Sequence[Any] | np.ndarray,
    smiles: Sequence[str],
    labels: Sequence[Sequence[float]] | np.ndarray,
    official_split: Sequence[str] | None = None,
    workers: int = 1,
) -> SmilesDataset:
    """A molecular dataset from data in memory: `labels` is (rows, len(tasks)), NaN = missing. It is
    featurised on first use and cached under a hash of the inputs (same inputs, same cache file)."""
    return _InMemory(name, tasks, MoleculeRecords(ids, smiles, labels, official_split), workers)
