"""QM9 (Ramakrishnan et al., Sci. Data 1, 140022, 2014), offline from the PyPI package ``qm9pack``.

``qm9pack`` ships all 130,831 molecules as three CSV files (SMILES, properties, XYZ coordinates
including hydrogens). They are read through `importlib.metadata` - importing ``qm9pack`` itself
fails on recent setuptools - parsed once into a source cache (labels, SMILES, coordinates), and
every requested selection (all molecules, or a `subset`) is featurised once into its own cache file.

Units: energies (homo, lumo, homo_lumo_gap, zpve, u0, u, h, g) are converted from Hartree to eV
(1 Ha = 27.211386 eV); u0/u/h/g are total energies, not atomisation energies. mu in Debye, alpha in
Bohr^3, r2 in Bohr^2, cv in cal/(mol K).

Positions: the graphs hold heavy atoms only (as ``smiles2graph`` makes them); ``pos`` holds the
coordinates (Angstrom) of those heavy atoms in the graph's atom order. QM9's XYZ lists heavy atoms in
the SMILES order for almost every molecule; each molecule's alignment is *verified* (same elements,
every bond of the graph a bond in 3D and no extra heavy-atom bond in 3D, bonds judged from covalent
radii), molecules that fail are aligned by graph matching with RDKit, and a molecule that still cannot
be aligned is left out of the dataset when positions are requested (listed in `misaligned`).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchbase import DataUnavailable, Param, PluginError, TaskInfo, cache_dir, content_digest
from benchbase_molecules.featurize import FEATURIZER_VERSION, featurize_smiles
from benchbase_molecules.moldata import (
    MoleculeDataset,
    assemble,
    digest,
    load_arrays,
    ogb_features,
    pack_strings,
    progress_bar,
    save_arrays,
    unpack_strings,
)

HARTREE_TO_EV = 27.211386
NUM_MOLECULES = 130_831
#: Seed of the `subset` draw. Fixed and independent of run seeds, so every run that asks for the
#: same subset size sees exactly the same molecules.
SUBSET_SEED = 20140805
_PARTS = ("qm9pack/data/qm9_part1.csv", "qm9pack/data/qm9_part2.csv", "qm9pack/data/qm9_part3.csv")

# (task, CSV column, factor to the stated unit, unit, description)
_TARGETS = [
    ("mu", "Dipole_debye", 1.0, "D", "dipole moment"),
    ("alpha", "Polarizability_bohr3", 1.0, "Bohr^3", "isotropic polarizability"),
    ("homo", "HOMO_au", HARTREE_TO_EV, "eV", "energy of the HOMO"),
    ("lumo", "LUMO_au", HARTREE_TO_EV, "eV", "energy of the LUMO"),
    ("homo_lumo_gap", "HOMO_LUMO_gap_au", HARTREE_TO_EV, "eV", "HOMO-LUMO gap"),
    ("r2", "R2_bohr2", 1.0, "Bohr^2", "electronic spatial extent"),
    ("zpve", "ZPVE_au", HARTREE_TO_EV, "eV", "zero-point vibrational energy"),
    ("u0", "InternalEnergy_0K_au", HARTREE_TO_EV, "eV", "internal energy at 0 K"),
    ("u", "InternalEnergy_298K_au", HARTREE_TO_EV, "eV", "internal energy at 298.15 K"),
    ("h", "Enthalphy_298K_au", HARTREE_TO_EV, "eV", "enthalpy at 298.15 K"),
    ("g", "GibbsFreeEnergy_298K_au", HARTREE_TO_EV, "eV", "free energy at 298.15 K"),
    ("cv", "Heatcapacity_Cv_cal_mol_K", 1.0, "cal/(mol K)", "heat capacity at 298.15 K"),
]
#: "Chemical accuracy", 1 kcal/mol in eV (1 kcal/mol = 4.184 kJ/mol; 1 eV = 96.485332 kJ/mol): the
#: conventional threshold below which an energy error is too small to matter chemically, used for
#: QM9's energies since Faber et al. 2017 (J. Chem. Theory Comput. 13, 5255: "chemical accuracy"
#: per target) and in the MoleculeNet / MPNN literature (Gilmer et al. 2017). It is the region of
#: practical equivalence (`TaskInfo.rope`) of the energy tasks below. u0/u/h/g are total energies
#: here, not atomisation energies; they differ by per-atom constants, so their errors are the same.
CHEMICAL_ACCURACY_EV = 0.0433641
#: The energies whose chemical-accuracy threshold is 1 kcal/mol. Not zpve: the same literature
#: sets a far tighter threshold for it, and the non-energy targets have no 1 kcal/mol analogue.
_CHEMICAL_ACCURACY_TASKS = ("homo", "lumo", "homo_lumo_gap", "u0", "u", "h", "g")
TASKS = [
    TaskInfo(
        name=n,
        unit=u,
        metric="mae",
        description=d,
        rope=CHEMICAL_ACCURACY_EV if n in _CHEMICAL_ACCURACY_TASKS else None,
        rope_reason="chemical accuracy" if n in _CHEMICAL_ACCURACY_TASKS else "",
    )
    for n, _, _, u, d in _TARGETS
]
TASK_NAMES = [t.name for t in TASKS]

# Covalent radii in Angstrom (Cordero et al., Dalton Trans. 2008) for the 3D bond check.
_RADII = {1: 0.31, 6: 0.76, 7: 0.71, 8: 0.66, 9: 0.57}
# A graph bond must be shorter than _BONDED x (sum of radii) in 3D (strained QM9 bonds reach 1.77 A
# for C-C), and a non-bonded heavy-atom pair longer than _NON_BONDED x (sum of radii).
_BONDED = 1.3
_NON_BONDED = 1.0


# --- the source ------------------------------------------------------------------------------------
def _distribution() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution("qm9pack")
    except importlib.metadata.PackageNotFoundError:
        raise DataUnavailable(
            "dataset 'qm9' needs the PyPI package qm9pack (it ships the QM9 CSV files): pip install qm9pack"
        ) from None


def source_files() -> list[Path]:
    dist = _distribution()
    paths = [Path(str(dist.locate_file(p))) for p in _PARTS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataUnavailable(
            f"dataset 'qm9': qm9pack is installed but lacks {missing}; reinstall it (pip install qm9pack)"
        )
    return paths


def source_key() -> str:
    """A hash of the source data: the sha256 pip recorded for each CSV (RECORD, free to read), else
    the sha256 of the file. Content only: the same data gives the same run ids on every install."""
    dist = _distribution()
    recorded = {str(f): f.hash.value for f in (dist.files or []) if f.hash is not None}
    parts: list[Any] = [dist.version]
    for rel, path in zip(_PARTS, source_files(), strict=True):
        parts.append([rel, recorded.get(rel) or content_digest(path)])
    return digest(*parts)


def _parse_source(paths: list[Path]) -> dict[str, np.ndarray]:
    """Read the CSVs once: index, labels (in the units above), SMILES, all atoms and coordinates."""
    import pandas as pd
    from rdkit import Chem

    columns = ["Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang"] + [c for _, c, *_ in _TARGETS]
    frame = pd.concat([pd.read_csv(p, usecols=columns) for p in paths], ignore_index=True)
    frame = frame.sort_values("Index", kind="stable").reset_index(drop=True)
    labels = np.stack([frame[col].to_numpy(np.float64) * f for _, col, f, *_ in _TARGETS], axis=1)
    n_atoms = frame["N_atoms"].to_numpy(np.int64)
    strip = str.maketrans("", "", "[]' \"")
    symbols = ",".join(frame["Elements"].astype(str)).translate(strip).split(",")
    table = Chem.GetPeriodicTable()
    lookup = {s: table.GetAtomicNumber(s) for s in set(symbols)}
    atom_z = np.array([lookup[s] for s in symbols], dtype=np.uint8)
    xyz = np.array(",".join(frame["XYZ_Ang"].astype(str)).translate(strip).split(","), dtype=np.float64)
    if len(atom_z) != n_atoms.sum() or len(xyz) != 3 * n_atoms.sum():
        raise PluginError("dataset 'qm9': the qm9pack CSV files are inconsistent (atom counts); reinstall qm9pack")
    atom_ptr = np.zeros(len(n_atoms) + 1, dtype=np.int64)
    np.cumsum(n_atoms, out=atom_ptr[1:])
    s_data, s_ptr = pack_strings(frame["SMILES"].astype(str).tolist())
    return {
        "ids": frame["Index"].to_numpy(np.int64),
        "labels": labels,
        "smiles": s_data,
        "smiles_ptr": s_ptr,
        "atom_z": atom_z,
        "atom_ptr": atom_ptr,
        "xyz": xyz.reshape(-1, 3).astype(np.float32),
    }


def load_source() -> dict[str, np.ndarray]:
    """The parsed CSVs, from the cache after the first call."""
    paths = source_files()
    meta = {"source": source_key(), "what": "qm9-source/1"}
    path = cache_dir("qm9") / f"source-{meta['source']}.npz"
    cached = load_arrays(path, meta)
    if cached is None:
        cached = _parse_source(paths)
        save_arrays(path, cached, meta)
    return cached


def subset_positions(total: int, subset: int | None) -> np.ndarray:
    """Sorted positions of a deterministic random subset (seed `SUBSET_SEED`), or all."""
    if subset is None or subset >= total:
        return np.arange(total)
    if subset <= 0:
        raise PluginError(f"dataset 'qm9': subset must be a positive number of molecules, not {subset}")
    return np.sort(np.random.default_rng(SUBSET_SEED).choice(total, size=subset, replace=False))


# --- 3D alignment ----------------------------------------------------------------------------------
def _radius(z: np.ndarray) -> np.ndarray:
    table = np.full(256, 0.8)
    for k, v in _RADII.items():
        table[k] = v
    return table[z]


def align_positions(
    x: np.ndarray, edge_index: np.ndarray, node_ptr: np.ndarray, edge_ptr: np.ndarray, heavy_z: list, heavy_xyz: list
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates for every graph node in graph order, and a per-graph boolean "aligned".

    `heavy_z[g]`/`heavy_xyz[g]` are the heavy atoms of molecule g in XYZ order. A molecule is taken
    as is when its elements match in order and its 3D bond graph equals the SMILES graph; otherwise
    an element- and bond-preserving atom mapping is searched with RDKit (symmetric atoms are
    interchangeable, which the graph's features cannot tell apart anyway)."""
    n_graphs = len(node_ptr) - 1
    counts = np.diff(node_ptr)
    pos = np.zeros((int(node_ptr[-1]), 3), dtype=np.float32)
    ok = np.zeros(n_graphs, dtype=bool)
    graph_z = x[:, 0].astype(np.int64) + 1
    # Fast path, vectorised per molecule size.
    same_count = np.array([len(z) for z in heavy_z], dtype=np.int64) == counts
    for size in np.unique(counts[same_count]):
        members = np.flatnonzero(same_count & (counts == size))
        if size == 0:
            ok[members] = True
            continue
        z = np.stack([heavy_z[g] for g in members]).astype(np.int64)
        xyz = np.stack([heavy_xyz[g] for g in members]).astype(np.float64)
        rows = node_ptr[members][:, None] + np.arange(size)
        good = (z == graph_z[rows]).all(axis=1)
        dist = np.linalg.norm(xyz[:, :, None, :] - xyz[:, None, :, :], axis=-1)
        radii = _radius(z)
        reach = radii[:, :, None] + radii[:, None, :]
        adjacency = np.zeros(dist.shape, dtype=bool)
        for k, g in enumerate(members):
            e = edge_index[:, edge_ptr[g] : edge_ptr[g + 1]].astype(np.int64)
            adjacency[k, e[0], e[1]] = True
        off_diagonal = ~np.eye(size, dtype=bool)[None]
        consistent = np.where(adjacency, dist < _BONDED * reach, (dist > _NON_BONDED * reach) | ~off_diagonal)
        good &= consistent.all(axis=(1, 2))
        pos[rows[good].reshape(-1)] = xyz[good].reshape(-1, 3)
        ok[members[good]] = True
    # Slow path: graph matching for the few molecules whose XYZ order differs.
    for g in np.flatnonzero(~ok):
        if len(heavy_z[g]) != counts[g]:
            continue
        e = edge_index[:, edge_ptr[g] : edge_ptr[g + 1]].astype(np.int64)
        mapping = _match(graph_z[node_ptr[g] : node_ptr[g + 1]], e, np.asarray(heavy_z[g]), heavy_xyz[g])
        if mapping is not None:
            pos[node_ptr[g] : node_ptr[g + 1]] = heavy_xyz[g][mapping]
            ok[g] = True
    return pos, ok


def _match(graph_z: np.ndarray, edges: np.ndarray, xyz_z: np.ndarray, xyz: np.ndarray) -> np.ndarray | None:
    """mapping[i] = XYZ atom of graph atom i, preserving elements and bonds both ways, or None."""
    from rdkit import Chem

    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    radii = _radius(xyz_z.astype(np.int64))
    reach = radii[:, None] + radii[None]
    pairs = {(int(a), int(b)) for a, b in zip(edges[0], edges[1], strict=True) if a < b}
    for factor in (0.5 * (_BONDED + _NON_BONDED), _BONDED, _NON_BONDED):
        bonded = np.triu(dist < factor * reach, 1)
        if int(bonded.sum()) == len(pairs):
            break
    else:
        return None

    def build(zs: np.ndarray, bonds: list[tuple[int, int]]) -> Chem.Mol:
        mol = Chem.RWMol()
        for z in zs:
            mol.AddAtom(Chem.Atom(int(z)))
        for a, b in bonds:
            mol.AddBond(a, b, Chem.BondType.SINGLE)
        mol.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(mol)
        return mol

    query = build(graph_z, sorted(pairs))
    target = build(xyz_z, [(int(a), int(b)) for a, b in zip(*np.nonzero(bonded), strict=True)])
    match = target.GetSubstructMatch(query)
    return np.asarray(match, dtype=np.int64) if len(match) == len(graph_z) else None


# --- the dataset -----------------------------------------------------------------------------------
class QM9(MoleculeDataset):
    """QM9 from qm9pack: tasks as in `TASKS`, native id = the QM9 ``Index``.

    Parameters: `subset` - a deterministic random subset of that many molecules (fixed seed
    `SUBSET_SEED`, independent of run seeds, so that all runs share identical data; molecules keep
    QM9 index order); `positions` - provide heavy-atom coordinates as ``pos`` (default True);
    `workers` - processes used to featurise on first use (default 1).
    """

    all_tasks = TASKS
    param_spec = {
        "subset": Param(None, "int", "a fixed random subset of this many molecules", min=1, max=NUM_MOLECULES),
        "positions": Param(True, "bool", "provide heavy-atom 3D coordinates as pos"),
        "workers": Param(1, "int", "processes that featurise on first use", min=1),
    }

    def __init__(
        self, tasks: list[str] | None = None, subset: int | None = None, positions: bool = True, workers: int = 1
    ) -> None:
        name = "qm9" if tasks is None else f"qm9/{tasks[0]}"
        super().__init__(name, tasks)
        self.subset = None if subset is None else int(subset)
        self.positions = bool(positions)
        self.workers = int(workers)
        self.provides = self.base_provides | ({"pos"} if self.positions else frozenset())
        self.features = ogb_features(has_pos=self.positions)

    def _cache_meta(self) -> dict[str, Any]:
        return {
            "source": source_key(),
            "featurizer": FEATURIZER_VERSION,
            "subset": self.subset,
            "subset_seed": SUBSET_SEED,
            "positions": self.positions,
            "what": "qm9-graphs/3",
        }

    def _graph_file(self) -> Path:
        return cache_dir("qm9") / f"graphs-{digest(self._cache_meta())}.npz"

    def _build(self, progress: bool) -> dict[str, np.ndarray]:
        src = load_source()
        chosen = subset_positions(len(src["ids"]), self.subset)
        all_smiles = unpack_strings(src["smiles"], src["smiles_ptr"])
        smiles = [all_smiles[i] for i in chosen]
        update, close = progress_bar(len(smiles), "featurising qm9", progress)
        try:
            graphs = featurize_smiles(smiles, workers=self.workers, progress=update)
        finally:
            close()
        out = assemble(graphs, src["ids"][chosen], smiles, src["labels"][chosen])
        out["misaligned_ids"] = np.zeros(0, dtype=np.int64)
        out["misaligned_smiles"], out["misaligned_smiles_ptr"] = pack_strings([])
        if not self.positions:
            return out
        kept = chosen[graphs.parsed]
        heavy_z, heavy_xyz = [], []
        atom_ptr, atom_z, xyz = src["atom_ptr"], src["atom_z"], src["xyz"]
        for g in kept.tolist():
            z = atom_z[atom_ptr[g] : atom_ptr[g + 1]]
            heavy = z != 1
            heavy_z.append(z[heavy])
            heavy_xyz.append(xyz[atom_ptr[g] : atom_ptr[g + 1]][heavy])
        pos, ok = align_positions(out["x"], out["edge_index"], out["node_ptr"], out["edge_ptr"], heavy_z, heavy_xyz)
        out["pos"] = pos
        if not ok.all():
            out = _drop_graphs(out, ok)
        return out

    @property
    def misaligned(self) -> list[int]:
        """QM9 indices left out because their 3D structure could not be matched to their SMILES
        (2 of 130,831: their relaxed geometry has different bonds); only when `positions` is True."""
        return [int(i) for i in self._load()["misaligned_ids"]]

    @property
    def skipped(self) -> list[tuple[Any, str]]:
        """(QM9 index, SMILES) of every molecule left out: RDKit could not parse it, or (with
        positions) its 3D structure does not match its SMILES."""
        c = self._load()
        extra = unpack_strings(c["misaligned_smiles"], c["misaligned_smiles_ptr"])
        return super().skipped + [(int(i), s) for i, s in zip(c["misaligned_ids"], extra, strict=True)]

    def describe(self) -> dict[str, Any]:
        try:
            source_files()
            available = True
        except PluginError:
            available = False
        info = super().describe()
        info.update(
            size=self.subset or NUM_MOLECULES,
            available=available,
            source="PyPI package qm9pack",
            cached=self._graph_file().exists() if available else False,
        )
        return info


def _drop_graphs(out: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """Remove graphs (whose positions could not be aligned) from every per-graph/node/edge array."""
    node_counts, edge_counts = np.diff(out["node_ptr"]), np.diff(out["edge_ptr"])
    node_keep, edge_keep = np.repeat(keep, node_counts), np.repeat(keep, edge_counts)
    smiles = unpack_strings(out["smiles"], out["smiles_ptr"])
    s_data, s_ptr = pack_strings([s for s, k in zip(smiles, keep.tolist(), strict=True) if k])
    result = dict(out)
    result.update(
        x=out["x"][node_keep],
        pos=out["pos"][node_keep],
        edge_index=out["edge_index"][:, edge_keep],
        edge_attr=out["edge_attr"][edge_keep],
        node_ptr=np.concatenate([[0], np.cumsum(node_counts[keep])]).astype(np.int64),
        edge_ptr=np.concatenate([[0], np.cumsum(edge_counts[keep])]).astype(np.int64),
        ids=out["ids"][keep],
        labels=out["labels"][keep],
        smiles=s_data,
        smiles_ptr=s_ptr,
        misaligned_ids=out["ids"][~keep].astype(np.int64),
    )
    result["misaligned_smiles"], result["misaligned_smiles_ptr"] = pack_strings(
        [s for s, k in zip(smiles, keep.tolist(), strict=True) if not k]
    )
    return result


def factory(task: str | None) -> Any:
    """A dataset factory for ``qm9`` (all tasks, `task` None) or ``qm9/<task>``."""

    def build(**params: Any) -> QM9:
        return QM9(tasks=None if task is None else [task], **params)

    build.__doc__ = QM9.__doc__
    return build


def register(register_fn: Any) -> None:
    register_fn(
        "qm9",
        factory(None),
        description="QM9, all 12 targets (multi-task), offline from qm9pack",
        param_spec=QM9.param_spec,
    )
    for info in TASKS:
        description = f"QM9 {info.description} ({info.unit})"
        register_fn(f"qm9/{info.name}", factory(info.name), description=description, param_spec=QM9.param_spec)
