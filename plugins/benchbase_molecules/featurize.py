"""SMILES -> OGB molecular graphs, many at a time, as contiguous arrays.

The features are exactly those of `ogb.utils.smiles2graph` (Hu et al., "Open Graph Benchmark",
2020): 9 categorical atom features, 3 categorical bond features, both directions of every bond,
atoms in RDKit's parse order and edges in bond order (``(i, j)`` then ``(j, i)``). What differs is
how they are computed: OGB builds a Python list per atom and per bond and looks every value up with
``list.index``; here each molecule contributes one tuple of raw RDKit values per atom/bond and the
whole chunk is mapped to OGB's vocabulary indices with a few vectorised table look-ups. Chunks are
spread over processes when ``workers`` asks for it.

Bump `FEATURIZER_VERSION` whenever the output could change: caches are keyed by it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

FEATURIZER_VERSION = "ogb-1.3.6-features/1"

ATOM_FEATURE_NAMES = (
    "atomic_num",
    "chirality",
    "degree",
    "formal_charge",
    "num_h",
    "num_radical_e",
    "hybridization",
    "is_aromatic",
    "is_in_ring",
)
BOND_FEATURE_NAMES = ("bond_type", "bond_stereo", "is_conjugated")


@dataclass
class MolGraphs:
    """Featurised molecules. Molecule i (the i-th input SMILES) owns node rows
    ``node_ptr[i]:node_ptr[i+1]`` and edge columns ``edge_ptr[i]:edge_ptr[i+1]``; `edge_index` is
    local to each molecule. Positions listed in `failed` (SMILES that RDKit rejects, or molecules
    that OGB's featuriser itself cannot encode) own no rows."""

    node_feat: np.ndarray  # (total_atoms, 9) int64
    edge_index: np.ndarray  # (2, total_edges) int64
    edge_feat: np.ndarray  # (total_edges, 3) int64
    node_ptr: np.ndarray  # (n + 1,) int64
    edge_ptr: np.ndarray  # (n + 1,) int64
    failed: np.ndarray  # (n_failed,) int64, sorted input positions

    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    @property
    def parsed(self) -> np.ndarray:
        """Boolean mask over inputs: True where the molecule was featurised."""
        mask = np.ones(len(self), dtype=bool)
        mask[self.failed] = False
        return mask

    def graph(self, i: int) -> dict[str, np.ndarray | int]:
        """Molecule i in `smiles2graph`'s dict layout (for tests and debugging, not hot paths)."""
        a, b = self.node_ptr[i], self.node_ptr[i + 1]
        c, d = self.edge_ptr[i], self.edge_ptr[i + 1]
        return {
            "node_feat": self.node_feat[a:b],
            "edge_index": self.edge_index[:, c:d],
            "edge_feat": self.edge_feat[c:d],
            "num_nodes": int(b - a),
        }


def _tables() -> dict[str, np.ndarray]:
    """Lookup tables from raw RDKit values to OGB vocabulary indices, built from OGB's own lists so
    that a change there cannot go unnoticed (the equality test would fail)."""
    from ogb.utils.features import allowable_features as allowed
    from rdkit.Chem import rdchem

    def by_name(enum: type, options: list, strict: bool) -> np.ndarray:
        values = dict(enum.values)
        table = np.full(max(values) + 1, -1 if strict else len(options) - 1, dtype=np.int64)
        for code, member in values.items():
            if str(member) in options:
                table[code] = options.index(str(member))
        return table

    return {
        "chirality": by_name(rdchem.ChiralType, allowed["possible_chirality_list"], strict=False),
        "hybridization": by_name(rdchem.HybridizationType, allowed["possible_hybridization_list"], strict=False),
        "bond_type": by_name(rdchem.BondType, allowed["possible_bond_type_list"], strict=False),
        # OGB uses list.index for the stereo: a value outside its list (atropisomers) raises there;
        # here it marks the molecule as failed (-1).
        "bond_stereo": by_name(rdchem.BondStereo, allowed["possible_bond_stereo_list"], strict=True),
    }


_TABLES: dict[str, np.ndarray] | None = None


def _range_index(values: np.ndarray, low: int, high: int) -> np.ndarray:
    """OGB's ``safe_index`` on an integer list ``[low..high, 'misc']``: values outside go to misc."""
    out = values - low
    out[(values < low) | (values > high)] = high - low + 1
    return out


def _enum_index(values: np.ndarray, table: np.ndarray, misc: int) -> np.ndarray:
    inside = (values >= 0) & (values < len(table))
    return np.where(inside, table[np.clip(values, 0, len(table) - 1)], misc)


def _featurize_chunk(smiles: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Featurise one chunk in this process: (node_feat, edge_index, edge_feat, n_nodes, n_edges, failed)."""
    global _TABLES
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    if _TABLES is None:
        _TABLES = _tables()
    tables = _TABLES
    from_smiles = Chem.MolFromSmiles
    n = len(smiles)
    n_nodes = np.zeros(n, dtype=np.int64)
    n_bonds = np.zeros(n, dtype=np.int64)
    atoms: list = []
    bonds: list = []
    mols: list = []  # keeps the molecules alive while their atom/bond wrappers are read
    failed: list[int] = []
    for i, smi in enumerate(smiles):
        mol = from_smiles(smi) if isinstance(smi, str) else None
        if mol is None:
            failed.append(i)
            continue
        mols.append(mol)
        mol_atoms = mol.GetAtoms()
        mol_bonds = mol.GetBonds()
        atoms += mol_atoms
        bonds += mol_bonds
        n_nodes[i] = len(mol_atoms)
        n_bonds[i] = len(mol_bonds)

    # Column by column over the whole chunk: `map` over unbound methods runs the loop in C, which
    # is where the time goes compared with one Python list per atom.
    def column(getter: Callable, items: list) -> np.ndarray:
        return np.fromiter(map(getter, items), dtype=np.int64, count=len(items))

    atom_cls, bond_cls = Chem.Atom, Chem.Bond
    raw_a = np.stack(
        [
            column(atom_cls.GetAtomicNum, atoms),
            column(atom_cls.GetChiralTag, atoms),
            column(atom_cls.GetTotalDegree, atoms),
            column(atom_cls.GetFormalCharge, atoms),
            column(atom_cls.GetTotalNumHs, atoms),
            column(atom_cls.GetNumRadicalElectrons, atoms),
            column(atom_cls.GetHybridization, atoms),
            column(atom_cls.GetIsAromatic, atoms),
            column(atom_cls.IsInRing, atoms),
        ],
        axis=1,
    ).reshape(-1, 9)
    raw_b = np.stack(
        [
            column(bond_cls.GetBeginAtomIdx, bonds),
            column(bond_cls.GetEndAtomIdx, bonds),
            column(bond_cls.GetBondType, bonds),
            column(bond_cls.GetStereo, bonds),
            column(bond_cls.GetIsConjugated, bonds),
        ],
        axis=1,
    ).reshape(-1, 5)
    del atoms, bonds, mols
    x = np.empty_like(raw_a)
    x[:, 0] = _range_index(raw_a[:, 0], 1, 118)
    x[:, 1] = _enum_index(raw_a[:, 1], tables["chirality"], 4)
    x[:, 2] = _range_index(raw_a[:, 2], 0, 10)
    x[:, 3] = _range_index(raw_a[:, 3], -5, 5)
    x[:, 4] = _range_index(raw_a[:, 4], 0, 8)
    x[:, 5] = _range_index(raw_a[:, 5], 0, 4)
    x[:, 6] = _enum_index(raw_a[:, 6], tables["hybridization"], 5)
    x[:, 7] = raw_a[:, 7]
    x[:, 8] = raw_a[:, 8]

    bond_feat = np.empty((len(raw_b), 3), dtype=np.int64)
    bond_feat[:, 0] = _enum_index(raw_b[:, 2], tables["bond_type"], 4)
    bond_feat[:, 1] = _enum_index(raw_b[:, 3], tables["bond_stereo"], -1)
    bond_feat[:, 2] = raw_b[:, 4]

    bad_bond = bond_feat[:, 1] < 0
    if bad_bond.any():  # molecules OGB cannot encode: drop their rows, report them as failed
        bond_owner = np.repeat(np.arange(n), n_bonds)
        bad_mol = np.zeros(n, dtype=bool)
        bad_mol[bond_owner[bad_bond]] = True
        keep_atoms = ~np.repeat(bad_mol, n_nodes)
        keep_bonds = ~bad_mol[bond_owner]
        x, raw_b, bond_feat = x[keep_atoms], raw_b[keep_bonds], bond_feat[keep_bonds]
        n_nodes[bad_mol] = 0
        n_bonds[bad_mol] = 0
        failed = sorted(set(failed) | set(np.flatnonzero(bad_mol).tolist()))

    # Both directions of each bond, interleaved as smiles2graph does: (i, j), (j, i), ...
    edge_index = np.empty((2, 2 * len(raw_b)), dtype=np.int64)
    edge_index[0, 0::2] = raw_b[:, 0]
    edge_index[1, 0::2] = raw_b[:, 1]
    edge_index[0, 1::2] = raw_b[:, 1]
    edge_index[1, 1::2] = raw_b[:, 0]
    edge_feat = np.repeat(bond_feat, 2, axis=0)
    return x, edge_index, edge_feat, n_nodes, 2 * n_bonds, np.asarray(failed, dtype=np.int64)


def _ptr(counts: np.ndarray) -> np.ndarray:
    ptr = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def featurize_smiles(
    smiles: Sequence[str],
    workers: int | None = None,
    chunk_size: int = 2000,
    progress: Callable[[int], None] | None = None,
) -> MolGraphs:
    """Featurise SMILES exactly as `ogb.utils.smiles2graph`, into contiguous arrays.

    `workers`: None or 1 runs in this process; N > 1 uses N processes; 0 or a negative value uses
    every CPU. `progress`, if given, is called with the number of molecules finished after each
    chunk (for a progress bar). Unparsable SMILES are listed in ``failed`` and own no rows, so
    positions stay aligned with the input.
    """
    smiles = list(smiles)
    if workers is not None and workers <= 0:
        workers = os.cpu_count() or 1
    chunks = [smiles[i : i + chunk_size] for i in range(0, len(smiles), chunk_size)] or [[]]
    if workers is None or workers <= 1 or len(chunks) == 1:
        results = []
        for chunk in chunks:
            results.append(_featurize_chunk(chunk))
            if progress is not None:
                progress(len(chunk))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            results = []
            for chunk, result in zip(chunks, pool.map(_featurize_chunk, chunks), strict=True):
                results.append(result)
                if progress is not None:
                    progress(len(chunk))

    starts = np.cumsum([0] + [len(c) for c in chunks[:-1]])
    return MolGraphs(
        node_feat=np.concatenate([r[0] for r in results]),
        edge_index=np.concatenate([r[1] for r in results], axis=1),
        edge_feat=np.concatenate([r[2] for r in results]),
        node_ptr=_ptr(np.concatenate([r[3] for r in results])),
        edge_ptr=_ptr(np.concatenate([r[4] for r in results])),
        failed=np.concatenate([r[5] + s for r, s in zip(results, starts, strict=True)]).astype(np.int64),
    )
