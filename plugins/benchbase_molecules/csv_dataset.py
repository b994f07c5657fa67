"""``csv``: your own molecules from a CSV file of SMILES and targets (chemprop's layout).

::

    smiles,solubility,toxic
    CCO,-0.77,0
    c1ccccc1,-1.64,1

In a grid file::

    [params.dataset.csv]
    path = "molecules.csv"
    unit = { solubility = "log mol/L" }

The separator is found in the header line (, ; tab or |) unless `delimiter` names it; a gzip
file (``.csv.gz``) is read as is.
Targets are every numeric column but the SMILES, id and split columns unless `targets` names them.
A target whose labels are all 0/1 is a classification task unless `kind` (a table target -> kind)
says otherwise; headline metrics (`metric`, a table too) default to mae (regression) and rocauc
(classification). Empty cells (and NA, NaN, null)
are missing labels. Ids are the `id_column`'s values, else the row number (0 = first data row).

The file is read and featurised when the grid is planned (`SmilesDataset.check_available`; the
cache, keyed on the file's content hash, then serves the runs), so that a missing column, a
non-numeric or infinite label (in any target column, declared or inferred), a repeated column
name, a bad split value or a file with no usable molecule stops
``benchbase run --dry-run`` with one line naming the file and the column; a missing file skips the
dataset's runs, saying where it was looked for. Rows RDKit rejects or without a label are skipped,
reported at planning, listed in every run record and never fatal unless nothing is left.
Several CSV data sets in one grid stay apart by their `name` (default: the file's stem), which names
the dataset (``csv/<name>``), its cache file and its leaderboard tables.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchbase import (
    ADAPTER_PARAMS,
    DataUnavailable,
    Param,
    PluginError,
    TaskInfo,
    check_adapter_name,
    check_task_declarations,
    dataset_label,
    declared_tasks,
)
from benchbase_molecules.moldata import digest
from benchbase_molecules.smiles_dataset import MoleculeRecords, SmilesDataset

#: Cell values read as a missing label (compared in lower case).
MISSING = frozenset({"", "na", "nan", "n/a", "null", "none"})
SPLITS = ("train", "valid", "test")
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


@dataclass
class _Table:
    """The parsed file: what `SmilesDataset` needs, plus the file's hash."""

    sha256: str
    ids: np.ndarray
    smiles: list[str]
    labels: dict[str, np.ndarray]
    split: list[str] | None


def _sniff(text: str) -> str:
    """The separator of the header line among , ; tab and | (a comma when none is clear)."""
    first = text.split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _row(i: int) -> str:
    return f"row {i} (line {i + 2})"


class CsvDataset(SmilesDataset):
    """A CSV file of SMILES and targets (see the module docstring)."""

    cache_namespace = "csv"
    description = "your own molecules: a CSV file of SMILES and one or more targets (path = ...)"
    param_spec = {
        "path": Param(None, "path", "the CSV file (required; a relative path is read from the working directory)"),
        "name": ADAPTER_PARAMS["name"],
        "smiles_column": Param("smiles", "str", "column of SMILES"),
        "targets": Param(None, "list", "target columns, in order; default: every other numeric column", items="str"),
        "id_column": Param(None, "str", "column of unique molecule ids; default: the row number (0 = first row)"),
        "kind": ADAPTER_PARAMS["kind"],
        "unit": ADAPTER_PARAMS["unit"],
        "metric": ADAPTER_PARAMS["metric"],
        "split_column": Param(
            None, "str", "column of train / valid / test (empty: none), the official split used by iid"
        ),
        "workers": Param(1, "int", "processes that featurise on first use", min=1),
        "delimiter": Param(
            None, "str", "the field separator (one character); default: found in the header among , ; tab and |"
        ),
    }

    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        smiles_column: str = "smiles",
        targets: list[str] | None = None,
        id_column: str | None = None,
        kind: dict[str, str] | None = None,
        unit: dict[str, str] | None = None,
        metric: dict[str, str] | None = None,
        split_column: str | None = None,
        workers: int = 1,
        delimiter: str | None = None,
    ) -> None:
        check_adapter_name("csv", name)
        super().__init__(
            dataset_label("csv", {"path": path, "name": name}), official_split=split_column is not None, workers=workers
        )
        self.path = path
        self.smiles_column, self.id_column, self.split_column = smiles_column, id_column, split_column
        self.targets = None if targets is None else list(targets)
        self.kind, self.unit, self.metric = kind, unit, metric
        self.delimiter = delimiter
        self._table_cache: _Table | None = None
        self._check_parameters()

    # --- parameters and the file ----------------------------------------------------------------
    @property
    def where(self) -> str:
        return f"dataset {self.name!r} ({self.path})"

    def _check_parameters(self) -> None:
        """What is wrong whatever the file holds, before it is read."""
        check_task_declarations(self.kind, self.unit, self.metric, self.where)
        special = [c for c in (self.smiles_column, self.id_column, self.split_column) if c is not None]
        if len(set(special)) != len(special):
            raise PluginError(f"{self.where}: smiles_column, id_column and split_column must be different columns")
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise PluginError(f"{self.where}: delimiter must be one character, got {self.delimiter!r}")
        if self.targets is not None:
            if not self.targets or len(set(self.targets)) != len(self.targets):
                raise PluginError(f"{self.where}: targets must name one or more different columns")
            clash = sorted(set(self.targets) & set(special))
            if clash:
                raise PluginError(f"{self.where}: column(s) {clash} cannot be targets and SMILES/id/split columns")
            slashed = [t for t in self.targets if "/" in t]
            if slashed:
                raise PluginError(f"{self.where}: target names cannot contain '/': {slashed}; rename the column")

    def _table(self) -> _Table:
        if self._table_cache is None:
            self._table_cache = self._read()
        return self._table_cache

    def _read(self) -> _Table:
        import pandas as pd

        if self.path is None:
            raise PluginError("dataset 'csv' needs the parameter path: the CSV file of SMILES and targets")
        file = Path(self.path).expanduser()
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise DataUnavailable(
                f"{self.where}: there is no file {file.absolute()} (a relative path is read from the working directory)"
            ) from None
        except OSError as exc:
            raise PluginError(f"{self.where}: cannot read {file}: {exc.strerror or exc}") from None
        text = self._text(data)
        delimiter = self.delimiter or _sniff(text)
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        names = [c.strip() for c in header]
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:  # pandas would rename the second one (name.1), and every run would then fail
            where = ", ".join(f"{c!r} (columns {', '.join(str(i + 1) for i, n in enumerate(names) if n == c)})"
                              for c in repeated)  # fmt: skip
            raise PluginError(f"{self.where}: the header repeats column {where}; give each column its own name")
        try:
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=delimiter)
        except ValueError as exc:  # pandas' parser and empty-file errors are ValueErrors
            raise PluginError(f"{self.where}: not a readable CSV file: {str(exc).strip()}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        if frame.empty:
            raise PluginError(f"{self.where}: the file has no data rows")
        self._need_columns(frame)
        return _Table(
            sha256=hashlib.sha256(data).hexdigest(),
            ids=self._ids(frame),
            smiles=frame[self.smiles_column].str.strip().tolist(),
            labels=self._labels(frame),
            split=self._split(frame),
        )

    def _text(self, data: bytes) -> str:
        """The file's text: gunzipped when it is gzip (by its magic bytes, whatever its name)."""
        if data[:2] == b"\x1f\x8b":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise PluginError(
                    f"{self.where}: a damaged gzip file ({exc}); unpack it or download it again"
                ) from None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PluginError(
                f"{self.where}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); save the file as "
                "UTF-8 CSV (plain or gzip-compressed)"
            ) from None

    def _need_columns(self, frame: Any) -> None:
        named = [("smiles_column", self.smiles_column), ("id_column", self.id_column)]
        named += [("split_column", self.split_column)] + [("targets", t) for t in self.targets or []]
        for option, column in named:
            if column is not None and column not in frame.columns:
                columns = list(frame.columns)
                hint = ""
                if len(columns) == 1 and any(d in columns[0] for d in ";\t|,"):
                    hint = '; the header has one column only: set delimiter = ";" (or the file\'s separator)'
                raise PluginError(f"{self.where}: no column {column!r} ({option}); the columns are {columns}{hint}")

    def _ids(self, frame: Any) -> np.ndarray:
        if self.id_column is None:
            return np.arange(len(frame), dtype=np.int64)
        values = frame[self.id_column].str.strip()
        empty = np.flatnonzero((values == "").to_numpy())
        if len(empty):
            raise PluginError(f"{self.where}: id column {self.id_column!r} is empty at {_row(int(empty[0]))}")
        duplicated = values[values.duplicated()]
        if len(duplicated):
            raise PluginError(f"{self.where}: id column {self.id_column!r} repeats the id {duplicated.iloc[0]!r}")
        if values.str.fullmatch(_INTEGER).all():
            return values.astype(np.int64).to_numpy()
        return values.to_numpy(dtype=str)

    def _numbers(self, frame: Any, column: str) -> tuple[np.ndarray, int | None]:
        """The column as floats (missing: NaN) and the first row that is not a number, if any."""
        import pandas as pd

        text = frame[column].str.strip()
        missing = text.str.lower().isin(MISSING).to_numpy()
        values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~missing & np.isnan(values))
        return values, int(bad[0]) if len(bad) else None

    def _labels(self, frame: Any) -> dict[str, np.ndarray]:
        special = {self.smiles_column, self.id_column, self.split_column}
        if self.targets is None:  # every other column of numbers, with at least one label
            out = {}
            for column in frame.columns:
                if column in special or "/" in column:
                    continue
                values, bad = self._numbers(frame, column)
                if bad is None and np.isfinite(values).any():
                    out[column] = values
                elif bad is not None and np.isfinite(values).any():
                    # numbers with a bad cell: a target with a typo, not a text column; dropping it
                    # would lose a task without a word
                    raise PluginError(
                        f"{self.where}: column {column!r} holds numbers but {frame[column].iloc[bad]!r} at "
                        f"{_row(bad)}; correct the cell, or name the targets with targets = [...]"
                    )
            if not out:
                raise PluginError(
                    f"{self.where}: no numeric target column besides {self.smiles_column!r}; the columns are "
                    f"{list(frame.columns)} (name them with targets = [...])"
                )
        else:
            out = {}
            for column in self.targets:
                values, bad = self._numbers(frame, column)
                if bad is not None:
                    raise PluginError(
                        f"{self.where}: target column {column!r} is not numeric: {frame[column].iloc[bad]!r} at "
                        f"{_row(bad)}"
                    )
                out[column] = values
        for column, values in out.items():
            infinite = np.flatnonzero(np.isinf(values))
            if len(infinite):
                raise PluginError(f"{self.where}: target column {column!r} is infinite at {_row(int(infinite[0]))}")
        return out

    def _split(self, frame: Any) -> list[str] | None:
        if self.split_column is None:
            return None
        values = frame[self.split_column].str.strip().str.lower()
        bad = np.flatnonzero(~values.isin((*SPLITS, "")).to_numpy())
        if len(bad):
            raise PluginError(
                f"{self.where}: split column {self.split_column!r} holds {frame[self.split_column].iloc[bad[0]]!r} at "
                f"{_row(int(bad[0]))}; allowed: 'train', 'valid', 'test' or empty"
            )
        absent = [s for s in SPLITS if not (values == s).any()]
        if absent:
            raise PluginError(f"{self.where}: split column {self.split_column!r} has no {' or '.join(absent)} row")
        return values.tolist()

    # --- SmilesDataset --------------------------------------------------------------------------
    def check_available(self) -> None:
        self._table()  # a missing file is DataUnavailable (its runs are skipped), bad content an error
        super().check_available()

    def task_infos(self) -> list[TaskInfo]:
        description = f"column of {Path(self.path or '').name}"
        return declared_tasks(self._table().labels, self.kind, self.unit, self.metric, self.where, description)

    def source_key(self) -> str:
        table = self._table()
        return digest(table.sha256, self.smiles_column, list(table.labels), self.id_column, self.split_column, "csv/1")

    def records(self) -> MoleculeRecords:
        table = self._table()
        labels = np.stack(list(table.labels.values()), axis=1)
        return MoleculeRecords(table.ids, table.smiles, labels, table.split)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"tasks": [], "available": False, "path": self.path}
        if self.path is None:
            return {**info, "note": "set the parameter path"}
        try:
            info.update(tasks=[t.name for t in self.tasks], size=len(self._table().ids), available=True)
        except PluginError as exc:
            info["error"] = str(exc)
        return info


def register(register_fn: Any) -> None:
    register_fn("csv", CsvDataset, description=CsvDataset.description, param_spec=CsvDataset.param_spec)
