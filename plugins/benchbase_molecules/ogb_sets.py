"""OGB graph-property molecule sets and PCQM4Mv2, read through ogb's own dataset classes.

- ``ogbg-mol*`` (Hu et al., "Open Graph Benchmark", 2020): `ogb.graphproppred.GraphPropPredDataset`
  (the numpy one), graphs exactly as OGB ships them, OGB's scaffold split as the
  ``official_split`` graph property, task kinds and metric names as `ogb.graphproppred.Evaluator`
  uses them ("rocauc", "ap", "rmse").
- ``pcqm4mv2`` (OGB-LSC, Hu et al. 2021): `ogb.lsc.PCQM4Mv2Dataset(only_smiles=True)` for SMILES and
  HOMO-LUMO gaps (eV), featurised by `benchbase_molecules.featurize`; SMILES that RDKit rejects are
  skipped and listed. Official split: train, valid; test-dev is "test" (its labels are hidden, NaN,
  so protocols fall back to their own split); test-challenge is "".

Nothing is ever downloaded: this machine may be offline and ogb's downloader asks questions on
stdin. The loaders look for the files first and raise `PluginError` naming the directory and how
to obtain them. Native id = the graph's index in OGB's files.

Loading is safe whatever lies under `root`: nothing there is unpickled beyond plain arrays. ogb
1.3.6 reads its split dicts and its processed file (``processed/data_processed``) with ``torch.load``.
While ogb runs, its modules see a ``torch.load`` that is always weights-only, allowing exactly the
numpy globals a pickled array needs (`_safe_globals`), whatever torch's default; and ogb reads the
dataset from a private view of its folder without ``processed/`` (links to the other entries), so
that it always builds the graphs from the raw files, never unpickling a processed file, which holds
pickle protocol 4 that a weights-only load cannot read, and writes nothing under `root`.
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchbase import DataUnavailable, Param, PluginError, TaskInfo, cache_dir, content_digest
from benchbase_molecules.featurize import FEATURIZER_VERSION, featurize_smiles
from benchbase_molecules.moldata import (
    MoleculeDataset,
    assemble,
    compact_int,
    digest,
    ogb_features,
    pack_strings,
    progress_bar,
)

# name -> (number of tasks, kind, metric, short name); from ogb/graphproppred/master.csv.
OGB_SETS: dict[str, tuple[int, str, str, str]] = {
    "ogbg-molhiv": (1, "classification", "rocauc", "hiv"),
    "ogbg-molpcba": (128, "classification", "ap", "pcba"),
    "ogbg-molesol": (1, "regression", "rmse", "esol"),
    "ogbg-molfreesolv": (1, "regression", "rmse", "freesolv"),
    "ogbg-mollipo": (1, "regression", "rmse", "lipo"),
    "ogbg-molbace": (1, "classification", "rocauc", "bace"),
    "ogbg-molbbbp": (1, "classification", "rocauc", "bbbp"),
    "ogbg-moltox21": (12, "classification", "rocauc", "tox21"),
}
_SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


def default_root() -> Path:
    return cache_dir("ogb")


def _safe_globals() -> list[Any]:
    """What a weights-only load needs besides tensors to rebuild numeric numpy arrays (ogb's split
    dicts): the array reconstructor under the module names numpy 1 and 2 pickle it with, the array
    class, and the dtype classes of booleans and numbers - no object arrays, nothing that runs code."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    codes = ("b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")
    numeric = {type(np.dtype(code)) for code in codes}
    return [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *sorted(numeric, key=str),
    ]


class _WeightsOnlyTorch:
    """`torch` as ogb's modules see it while benchbase reads a dataset: `load` is weights-only."""

    def __getattr__(self, name: str) -> Any:
        import torch

        return getattr(torch, name)

    @staticmethod
    def load(f: Any, map_location: Any = None, **kwargs: Any) -> Any:
        import torch

        if map_location == "rb":  # ogb passes the file mode where torch takes map_location
            map_location = None
        # safe_globals with (object, name) entries (numpy's reconstructor under both its names): 2.6.
        if torch.torch_version.TorchVersion(torch.__version__) < (2, 6):
            raise PluginError(f"reading OGB's files safely needs torch >= 2.6 (this is {torch.__version__})")
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(f, map_location=map_location, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as exc:  # which one depends on the torch version
            raise PluginError(f"{f} holds objects other than arrays and tensors; refused ({exc})") from None


@contextlib.contextmanager
def _ogb_torch_load() -> Iterator[None]:
    """ogb's dataset modules load weights-only while they run; nothing else in the process changes."""
    import ogb.graphproppred.dataset
    import ogb.lsc.pcqm4mv2

    modules = (ogb.graphproppred.dataset, ogb.lsc.pcqm4mv2)
    saved = [module.torch for module in modules]  # type: ignore[attr-defined]
    for module in modules:
        module.torch = _WeightsOnlyTorch()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.torch = original  # type: ignore[attr-defined]


@contextlib.contextmanager
def _without_processed(folder: Path) -> Iterator[Path]:
    """A private copy of the dataset folder made of links to its entries, less ``processed/``: ogb
    builds from the raw files there and writes its processed file there, not under `root`."""
    with tempfile.TemporaryDirectory(prefix="ogb-", dir=cache_dir("ogb-cache")) as tmp:
        view = Path(tmp) / folder.name
        (view / "processed").mkdir(parents=True)  # where ogb saves the graphs it builds
        for entry in folder.iterdir():
            if entry.name != "processed":
                (view / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        yield view


def _files_key(folder: Path) -> str:
    """Names and content hashes of the dataset's raw files: changes whenever the data does, and
    only then (a copy to another machine keeps it). The hashes are remembered in the cache
    (`content_digest`), so that only the first planning reads a large dataset's files."""
    entries = sorted(
        (str(p.relative_to(folder)), content_digest(p))
        for p in folder.rglob("*")
        if p.is_file() and "processed" not in p.parts
    )
    return digest(entries)


def task_infos(name: str) -> list[TaskInfo]:
    n_tasks, kind, metric, short = OGB_SETS[name]
    names = [short] if n_tasks == 1 else [f"{short}_{i}" for i in range(n_tasks)]
    return [
        TaskInfo(
            name=t,
            kind=kind,  # type: ignore[arg-type]
            metric=metric,
            higher_is_better=metric in ("rocauc", "ap"),
            unit="log mol/L"
            if short == "esol"
            else "kcal/mol"
            if short == "freesolv"
            else "logD"
            if short == "lipo"
            else "",
            description=f"{name} task {i} (OGB Evaluator metric {metric})",
        )
        for i, t in enumerate(names)
    ]


class OGBMolecules(MoleculeDataset):
    """An ``ogbg-mol*`` set from `root` (default: the cache dir's ``ogb/``), laid out as ogb
    downloads it: ``<root>/ogbg_molhiv/{raw,split/scaffold,mapping,RELEASE_v1.txt}``."""

    base_provides = MoleculeDataset.base_provides | {"official_split"}
    param_spec = {"root": Param(None, "str", "directory holding ogb's dataset folders (default: the cache)")}

    def __init__(self, name: str, root: str | None = None, tasks: list[str] | None = None) -> None:
        self.all_tasks = task_infos(name)
        super().__init__(name, tasks)
        self.ogb_name = name
        self.root = Path(root) if root is not None else default_root()
        self.folder = self.root / name.replace("-", "_")
        self.provides = self.base_provides
        self.features = ogb_features(has_pos=False)

    def _missing(self) -> str | None:
        raw = self.folder / "raw"
        if not (self.folder / "RELEASE_v1.txt").exists():
            return "RELEASE_v1.txt"
        if not ((raw / "edge.csv.gz").exists() or (raw / "data.npz").exists()):
            return "raw/edge.csv.gz"
        if not (self.folder / "split" / "scaffold").is_dir():
            return "split/scaffold/"
        return None

    def check_available(self) -> None:
        missing = self._missing()
        if missing:
            raise DataUnavailable(
                f"dataset {self.ogb_name!r}: no data in {self.folder} (missing {missing}). This machine cannot "
                f'download it; on a machine with internet run `python -c "from ogb.graphproppred import '
                f"GraphPropPredDataset as D; D('{self.ogb_name}', root='dataset')\"` and copy "
                f"dataset/{self.folder.name} to {self.folder} (or pass the dataset parameter root=DIR)"
            )

    def _cache_meta(self) -> dict[str, Any]:
        self.check_available()
        return {"name": self.ogb_name, "files": _files_key(self.folder), "what": "ogb-graphs/1"}

    def _graph_file(self) -> Path:
        return cache_dir("ogb-cache") / f"{self.folder.name}-{digest(self._cache_meta())}.npz"

    def _build(self, progress: bool) -> dict[str, np.ndarray]:
        self.check_available()
        from ogb.graphproppred import GraphPropPredDataset

        with _ogb_torch_load(), _without_processed(self.folder) as view:
            if (view / "raw" / "data.npz").exists():
                data = GraphPropPredDataset(self.ogb_name, meta_dict=self._binary_meta(view))
            else:
                data = GraphPropPredDataset(self.ogb_name, root=str(view.parent))
            split = data.get_idx_split()
        graphs = data.graphs
        n_nodes = np.array([g["num_nodes"] for g in graphs], dtype=np.int64)
        n_edges = np.array([g["edge_index"].shape[1] for g in graphs], dtype=np.int64)
        labels = np.asarray(data.labels, dtype=np.float64).reshape(len(graphs), -1)
        official = np.full(len(graphs), 3, dtype=np.uint8)
        for part, code in _SPLIT_CODES.items():
            official[np.asarray(split[part], dtype=np.int64)] = code
        smiles = self._smiles_from_mapping(len(graphs))
        s_data, s_ptr = pack_strings(smiles)
        empty, empty_ptr = pack_strings([])
        return {
            "x": compact_int(np.concatenate([g["node_feat"] for g in graphs]).reshape(-1, 9)),
            "edge_index": compact_int(np.concatenate([g["edge_index"] for g in graphs], axis=1).reshape(2, -1)),
            "edge_attr": compact_int(np.concatenate([g["edge_feat"] for g in graphs]).reshape(-1, 3)),
            "node_ptr": np.concatenate([[0], np.cumsum(n_nodes)]).astype(np.int64),
            "edge_ptr": np.concatenate([[0], np.cumsum(n_edges)]).astype(np.int64),
            "ids": np.arange(len(graphs), dtype=np.int64),
            "labels": labels,
            "smiles": s_data,
            "smiles_ptr": s_ptr,
            "skipped_ids": np.zeros(0, dtype=np.int64),
            "skipped_smiles": empty,
            "skipped_smiles_ptr": empty_ptr,
            "official_split": official,
        }

    def _binary_meta(self, folder: Path) -> dict[str, Any]:
        """ogb's meta information for the binary layout that `ogb.io.DatasetSaver` writes (graphs
        stored with both edge directions, so no inverse edges are added), read from `folder`."""
        import ogb.graphproppred
        import pandas as pd

        master = pd.read_csv(Path(ogb.graphproppred.__file__).parent / "master.csv", index_col=0, keep_default_na=False)
        meta = dict(master[self.ogb_name])
        meta.update(binary="True", add_inverse_edge="False", dir_path=str(folder))
        return meta

    def _smiles_from_mapping(self, n: int) -> list[str]:
        import pandas as pd

        path = self.folder / "mapping" / "mol.csv.gz"
        if not path.exists():
            raise PluginError(
                f"dataset {self.ogb_name!r}: {path} is missing (it holds the SMILES); re-copy the dataset"
            )
        smiles = pd.read_csv(path)["smiles"].astype(str).tolist()
        if len(smiles) != n:
            raise PluginError(f"dataset {self.ogb_name!r}: {path} has {len(smiles)} rows for {n} graphs")
        return smiles

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        available = self._missing() is None
        info.update(available=available, root=str(self.folder), metric=self.all_tasks[0].metric)
        if available and self._cache is not None:
            info["size"] = len(self._cache["ids"])
        return info


class PCQM4Mv2(MoleculeDataset):
    """PCQM4Mv2 HOMO-LUMO gap (eV) from ``<root>/pcqm4m-v2/raw/data.csv.gz`` and ``split_dict.pt``.
    Parameters: `root` (default: the cache dir's ``ogb/``), `subset` (first N molecules of the file,
    for quick runs), `workers` (featurisation processes)."""

    all_tasks = [TaskInfo(name="homo_lumo_gap", unit="eV", metric="mae", description="HOMO-LUMO gap (DFT)")]
    base_provides = MoleculeDataset.base_provides | {"official_split"}

    param_spec = {
        "root": Param(None, "str", "directory holding pcqm4m-v2/ (default: the cache)"),
        "subset": Param(None, "int", "the first this many molecules", min=1, max=3_746_620),
        "workers": Param(1, "int", "processes that featurise on first use", min=1),
    }

    def __init__(self, root: str | None = None, subset: int | None = None, workers: int = 1) -> None:
        super().__init__("pcqm4mv2", None)
        self.root = Path(root) if root is not None else default_root()
        self.folder = self.root / "pcqm4m-v2"
        self.subset = None if subset is None else int(subset)
        self.workers = int(workers)
        self.provides = self.base_provides
        self.features = ogb_features(has_pos=False)

    def _missing(self) -> str | None:
        for rel in ("RELEASE_v1.txt", "raw/data.csv.gz", "split_dict.pt"):
            if not (self.folder / rel).exists():
                return rel
        return None

    def check_available(self) -> None:
        missing = self._missing()
        if missing:
            raise DataUnavailable(
                f"dataset 'pcqm4mv2': no data in {self.folder} (missing {missing}). This machine cannot download "
                'it; on a machine with internet run `python -c "from ogb.lsc import PCQM4Mv2Dataset as D; '
                f"D(root='dataset', only_smiles=True)\"` and copy dataset/pcqm4m-v2 to {self.folder} "
                "(or pass the dataset parameter root=DIR)"
            )

    def _cache_meta(self) -> dict[str, Any]:
        self.check_available()
        return {
            "files": _files_key(self.folder),
            "featurizer": FEATURIZER_VERSION,
            "subset": self.subset,
            "what": "pcqm4mv2-graphs/1",
        }

    def _graph_file(self) -> Path:
        return cache_dir("ogb-cache") / f"pcqm4mv2-{digest(self._cache_meta())}.npz"

    def _build(self, progress: bool) -> dict[str, np.ndarray]:
        self.check_available()
        from ogb.lsc import PCQM4Mv2Dataset

        with _ogb_torch_load():
            data = PCQM4Mv2Dataset(root=str(self.root), only_smiles=True)
            split = data.get_idx_split()
        smiles = list(data.graphs)
        labels = np.asarray(data.labels, dtype=np.float64)
        official = np.full(len(smiles), 3, dtype=np.uint8)
        for part, code in (("train", 0), ("valid", 1), ("test-dev", 2)):
            if part in split:
                official[np.asarray(split[part], dtype=np.int64)] = code
        if self.subset is not None:
            smiles, labels, official = smiles[: self.subset], labels[: self.subset], official[: self.subset]
        update, close = progress_bar(len(smiles), "featurising pcqm4mv2", progress)
        try:
            graphs = featurize_smiles(smiles, workers=self.workers, progress=update)
        finally:
            close()
        ids = np.arange(len(smiles), dtype=np.int64)
        return assemble(graphs, ids, smiles, labels[:, None], extra={"official_split": official[graphs.parsed]})

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(available=self._missing() is None, root=str(self.folder), size=self.subset or 3_746_620)
        return info


def register(register_fn: Any) -> None:
    for name, (n_tasks, kind, metric, _) in OGB_SETS.items():

        def build(_name: str = name, **params: Any) -> OGBMolecules:
            return OGBMolecules(_name, **params)

        description = f"OGB {name}: {n_tasks} {kind} task(s), metric {metric}, scaffold split"
        register_fn(name, build, description=description, param_spec=OGBMolecules.param_spec)
    description = "OGB-LSC PCQM4Mv2 HOMO-LUMO gap (eV), official split"
    register_fn("pcqm4mv2", PCQM4Mv2, description=description, param_spec=PCQM4Mv2.param_spec)
