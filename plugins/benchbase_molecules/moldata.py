"""Shared machinery of the molecular datasets: the array cache and a base `Dataset` class.

Cache files are uncompressed ``.npz`` archives of contiguous arrays plus a JSON manifest holding
each array's dtype, shape and CRC-32 and the metadata the file was built from. They are written
through `benchbase.compute.cache.atomic_path` (a killed process never leaves a half-written file under the
final name) and verified on load: a truncated or corrupted file is reported with a warning, deleted
and rebuilt. Loading builds no Python object per graph.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchbase import Dataset, FeatureSpec, GraphArrays, PluginError, TaskInfo, atomic_path

CACHE_LAYOUT_VERSION = 1
_MANIFEST = "__manifest__"


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (cache keys)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1)) if array.size else 0


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` and `meta` atomically to `path` (an .npz file)."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    manifest = {
        "layout": CACHE_LAYOUT_VERSION,
        "meta": meta,
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape), "crc32": _crc(v)} for k, v in arrays.items()},
    }
    payload = np.frombuffer(json.dumps(manifest, default=str).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays, **{_MANIFEST: payload})


def load_arrays(path: Path, meta: dict[str, Any] | None = None) -> dict[str, np.ndarray] | None:
    """The arrays stored at `path`, or None when the file is absent, stale (its metadata differs
    from `meta`) or damaged - damaged files are deleted with a warning so that the caller rebuilds."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            manifest = json.loads(archive[_MANIFEST].tobytes().decode())
            if manifest.get("layout") != CACHE_LAYOUT_VERSION or (meta is not None and manifest.get("meta") != meta):
                return None
            out = {}
            for name, spec in manifest["arrays"].items():
                array = archive[name]
                if (
                    array.dtype.str != spec["dtype"]
                    or list(array.shape) != spec["shape"]
                    or _crc(array) != spec["crc32"]
                ):
                    raise ValueError(f"array {name!r} does not match its checksum")
                out[name] = array
            return out
    except Exception as exc:  # truncated zip, bad CRC, bad JSON ...: rebuild
        warnings.warn(f"cache file {path} is damaged ({type(exc).__name__}: {exc}); rebuilding it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def pack_strings(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 byte array plus offsets (no object arrays in cache files)."""
    encoded = [s.encode() for s in strings]
    ptr = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=ptr[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), ptr


def unpack_strings(data: np.ndarray, ptr: np.ndarray) -> list[str]:
    raw = data.tobytes()
    bounds = ptr.tolist()
    return [raw[a:b].decode() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def compact_int(values: np.ndarray) -> np.ndarray:
    """The smallest unsigned/signed integer dtype that holds `values` (cache files stay small)."""
    if values.size == 0:
        return values.astype(np.uint8)
    low, high = int(values.min()), int(values.max())
    for dtype in (np.uint8, np.uint16, np.int32) if low >= 0 else (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.astype(dtype)
    return values.astype(np.int64)


#: ``ogb.utils.features.get_atom_feature_dims()`` / ``get_bond_feature_dims()`` of ogb 1.3.6, written
#: out so that building a dataset object does not import ogb and RDKit (tests check they agree).
ATOM_VOCAB = (119, 5, 12, 12, 10, 6, 6, 2, 2)
BOND_VOCAB = (5, 6, 2)


def ogb_features(has_pos: bool) -> FeatureSpec:
    return FeatureSpec(node_vocab=ATOM_VOCAB, edge_vocab=BOND_VOCAB, has_pos=has_pos)


def element_symbol(atomic_number: int) -> str:
    from rdkit import Chem

    return Chem.GetPeriodicTable().GetElementSymbol(int(atomic_number)) if 0 < atomic_number <= 118 else "misc"


def scaffolds(smiles: Sequence[str]) -> list[str]:
    """Bemis-Murcko scaffold SMILES (Bemis & Murcko, J. Med. Chem. 1996) via RDKit; acyclic
    molecules get the empty scaffold ""."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold

    RDLogger.DisableLog("rdApp.*")
    out = []
    for smi in smiles:
        mol = Chem.MolFromSmiles(smi)
        out.append("" if mol is None else MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False))
    return out


class MoleculeDataset(Dataset):
    """A molecular dataset held as one featurised cache file (see `_graph_file`). Subclasses build
    the cache contents in `_build()` and give its metadata in `_cache_meta()`.

    Cache arrays: ``x`` (N, 9), ``edge_index`` (2, E), ``edge_attr`` (E, 3), ``node_ptr``,
    ``edge_ptr``, ``ids`` (G,), ``labels`` (G, T) float64 in task order, ``smiles``/``smiles_ptr``,
    ``skipped_ids``/``skipped_smiles``/``skipped_smiles_ptr`` (inputs that RDKit rejected), and
    optionally ``pos`` (N, 3) and ``official_split`` (G,) uint8 (0 train, 1 valid, 2 test).
    """

    #: every task the source has, in the column order of the cached ``labels`` array
    all_tasks: list[TaskInfo] = []
    base_provides = frozenset({"x_categorical", "edge_attr", "smiles", "size", "group", "node_class_counts"})

    def __init__(self, name: str, tasks: list[str] | None) -> None:
        by_name = {t.name: t for t in self.all_tasks}
        tasks = list(by_name) if tasks is None else tasks
        unknown = [t for t in tasks if t not in by_name]
        if unknown:
            raise PluginError(f"dataset {name!r}: unknown task(s) {unknown}; known: {list(by_name)}")
        self.name = name
        self.tasks = [by_name[t] for t in tasks]
        self._reset()

    def _reset(self) -> None:
        """Forget what was loaded (subclasses that do not call `__init__` call this)."""
        self._cache: dict[str, np.ndarray] | None = None
        self._arrays: GraphArrays | None = None
        self._smiles: list[str] | None = None
        self._props: dict[str, np.ndarray] = {}

    # --- to implement -------------------------------------------------------------------------
    def content_key(self) -> str:
        """The cache key: the source files' hashes and the featuriser's version (`_cache_meta`)."""
        return digest(self._cache_meta())

    def _graph_file(self) -> Path:
        raise NotImplementedError

    def _cache_meta(self) -> dict[str, Any]:
        raise NotImplementedError

    def _build(self, progress: bool) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # --- the cache ----------------------------------------------------------------------------
    def _load(self, progress: bool = False) -> dict[str, np.ndarray]:
        if self._cache is None:
            path, meta = self._graph_file(), self._cache_meta()
            cached = load_arrays(path, meta)
            if cached is None:
                cached = self._build(progress)
                save_arrays(path, cached, meta)
            self._cache = cached
        return self._cache

    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            c = self._load()
            columns = [t.name for t in self.all_tasks]
            self._arrays = GraphArrays(
                node_ptr=c["node_ptr"],
                edge_ptr=c["edge_ptr"],
                edge_index=c["edge_index"].astype(np.int64),
                x=c["x"].astype(np.int64),
                edge_attr=c["edge_attr"].astype(np.int64),
                pos=c["pos"] if "pos" in c and self.features.has_pos else None,
                targets={t.name: np.ascontiguousarray(c["labels"][:, columns.index(t.name)]) for t in self.tasks},
            )
        return self._arrays

    def ids(self) -> np.ndarray:
        return self._load()["ids"]

    def smiles(self) -> list[str]:
        """One SMILES per graph position (the source's string, as featurised)."""
        if self._smiles is None:
            c = self._load()
            self._smiles = unpack_strings(c["smiles"], c["smiles_ptr"])
        return self._smiles

    @property
    def skipped(self) -> list[tuple[Any, str]]:
        """(native id, SMILES) of every molecule left out because RDKit could not parse it."""
        c = self._load()
        smiles = unpack_strings(c["skipped_smiles"], c["skipped_smiles_ptr"])
        return [(_plain(i), s) for i, s in zip(c["skipped_ids"], smiles, strict=True)]

    def prepare(self, progress: bool = True) -> None:
        self._load(progress=progress)

    # --- graph properties ---------------------------------------------------------------------
    def _element_classes(self) -> np.ndarray:
        """OGB atomic-number indices (atomic number - 1) present in the dataset, sorted."""
        return np.unique(self._load()["x"][:, 0]).astype(np.int64)

    def node_class_names(self) -> list[str]:
        return [element_symbol(z + 1) for z in self._element_classes()]

    def graph_property(self, key: str) -> np.ndarray | None:
        if key in self._props:
            return self._props[key]
        c = self._load()
        value: np.ndarray | None = None
        if key == "size":
            value = np.diff(c["node_ptr"])
        elif key == "node_class_counts":
            classes = self._element_classes()
            lookup = np.full(int(classes.max()) + 1 if classes.size else 1, -1, dtype=np.int64)
            lookup[classes] = np.arange(len(classes))
            graph_of = np.repeat(np.arange(len(c["node_ptr"]) - 1), np.diff(c["node_ptr"]))
            flat = graph_of * len(classes) + lookup[c["x"][:, 0].astype(np.int64)]
            value = np.bincount(flat, minlength=(len(c["node_ptr"]) - 1) * len(classes)).reshape(-1, len(classes))
        elif key == "group":
            value = self._scaffolds()
        elif key == "official_split" and "official_split" in c:
            value = np.array(["train", "valid", "test", ""])[c["official_split"].astype(np.int64)]
        if value is not None:
            self._props[key] = value
        return value

    def _scaffolds(self) -> np.ndarray:
        """Bemis-Murcko scaffolds, computed once per cache file and stored beside it."""
        path = self._graph_file().with_suffix(".scaffolds.npz")
        meta = {"graphs": self._cache_meta(), "what": "murcko-scaffold-smiles/1"}
        cached = load_arrays(path, meta)
        if cached is None:
            data, ptr = pack_strings(scaffolds(self.smiles()))
            cached = {"data": data, "ptr": ptr}
            save_arrays(path, cached, meta)
        return np.array(unpack_strings(cached["data"], cached["ptr"]), dtype=object)

    # --- listing ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"tasks": [t.name for t in self.tasks], "units": {t.name: t.unit for t in self.tasks}}


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def assemble(
    graphs: Any,
    ids: np.ndarray,
    smiles: Sequence[str],
    labels: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Cache arrays from a `MolGraphs` over all inputs: failed SMILES are dropped from every
    per-graph array (so labels cannot shift) and listed as skipped."""
    keep = graphs.parsed
    node_keep = np.repeat(keep, np.diff(graphs.node_ptr))
    edge_keep = np.repeat(keep, np.diff(graphs.edge_ptr))
    kept_nodes = np.diff(graphs.node_ptr)[keep]
    kept_edges = np.diff(graphs.edge_ptr)[keep]
    node_ptr = np.zeros(len(kept_nodes) + 1, dtype=np.int64)
    edge_ptr = np.zeros(len(kept_edges) + 1, dtype=np.int64)
    np.cumsum(kept_nodes, out=node_ptr[1:])
    np.cumsum(kept_edges, out=edge_ptr[1:])
    smiles = list(smiles)
    kept_smiles = [s for s, k in zip(smiles, keep.tolist(), strict=True) if k]
    skipped = [smiles[i] if isinstance(smiles[i], str) else "" for i in graphs.failed.tolist()]
    s_data, s_ptr = pack_strings(kept_smiles)
    k_data, k_ptr = pack_strings(skipped)
    out = {
        "x": compact_int(graphs.node_feat[node_keep]).reshape(-1, 9),
        "edge_index": compact_int(graphs.edge_index[:, edge_keep]).reshape(2, -1),
        "edge_attr": compact_int(graphs.edge_feat[edge_keep]).reshape(-1, 3),
        "node_ptr": node_ptr,
        "edge_ptr": edge_ptr,
        "ids": np.asarray(ids)[keep],
        "labels": np.asarray(labels, dtype=np.float64)[keep],
        "smiles": s_data,
        "smiles_ptr": s_ptr,
        "skipped_ids": np.asarray(ids)[graphs.failed],
        "skipped_smiles": k_data,
        "skipped_smiles_ptr": k_ptr,
    }
    for name, values in (extra or {}).items():
        out[name] = values
    return out


ProgressFn = Callable[[int], None]


def progress_bar(total: int, desc: str, enabled: bool) -> tuple[ProgressFn | None, Callable[[], None]]:
    """A tqdm bar (on stderr) as a callback plus its closer, or (None, no-op) when disabled."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="mol")
    return bar.update, bar.close
