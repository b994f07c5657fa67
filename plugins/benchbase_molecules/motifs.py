"""Per-molecule multi-label vocabularies computed with RDKit from SMILES.

Two fixed vocabularies and one built from data:

- `GRAPH_PATTERNS`: element-agnostic structural patterns (ring sizes, ring fusion, branching, bond
  types and two-bond paths), read from topology and bond orders only - an atom's element never
  enters, so the task asks for structure, not chemistry (Takashige et al. 2023's "graph pattern").
- `FUNCTIONAL_GROUPS`: RDKit's 85 ``fr_*`` fragment descriptors, the functional-group vocabulary
  GROVER (Rong et al. 2020) predicts as its motif task; a label is 1 when the fragment occurs.
- BRICS fragments (Degen et al. 2008), from which `brics_vocabulary` keeps the most frequent ones
  of a pool.

Labels are computed once for every molecule of a dataset and cached on disk (keyed by a hash of
the SMILES list), because the SMARTS matching of the 85 descriptors costs ~0.5 ms per molecule.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable

import numpy as np

from benchbase import PluginError, atomic_path, cache_dir

_BOND_SYMBOL = {"SINGLE": "-", "DOUBLE": "=", "TRIPLE": "#", "AROMATIC": ":"}
_BOND_ORDER = ["-", "=", "#", ":"]
_PAIR_PATTERNS = [f"path_{a}{b}" for i, a in enumerate(_BOND_ORDER) for b in _BOND_ORDER[i:]]

GRAPH_PATTERNS: list[str] = (
    [f"ring_{k}" for k in range(3, 9)]
    + [
        "ring_macro",  # a ring of more than 8 atoms
        "acyclic",  # no ring at all
        "ring_fused",  # two rings of the smallest set of rings share a bond
        "ring_spiro",  # two rings share exactly one atom and no bond
        "ring_systems_2",  # at least two separate ring systems
        "ring_aromatic",  # a ring made only of aromatic bonds
        "ring_double",  # a non-aromatic double bond inside a ring
        "exocyclic_double",  # a double bond from a ring atom to a non-ring atom
        "branch_3",  # an atom with exactly 3 heavy neighbours
        "branch_4",  # an atom with 4 or more heavy neighbours
        "chain_3",  # 3 bonded atoms none of which is in a ring
        "terminal_3",  # at least 3 atoms with a single heavy neighbour
        "bond_double",
        "bond_triple",
        "bond_aromatic",
    ]
    # path_XY: two bonds of types X and Y meeting at an atom (- single, = double, # triple, : aromatic)
    + _PAIR_PATTERNS
)
"""The graph-pattern vocabulary, fixed and documented (one line per label above)."""


def _bond_symbol(bond) -> str:
    return _BOND_SYMBOL.get(str(bond.GetBondType()), "-")


def graph_patterns(mol) -> np.ndarray:
    """0/1 vector over `GRAPH_PATTERNS` for one RDKit molecule (hydrogens implicit)."""
    present: set[str] = set()
    ring_info = mol.GetRingInfo()
    atom_rings = [set(r) for r in ring_info.AtomRings()]
    bond_rings = [set(r) for r in ring_info.BondRings()]
    if not atom_rings:
        present.add("acyclic")
    for ring, bonds in zip(atom_rings, bond_rings, strict=True):
        size = len(ring)
        present.add(f"ring_{size}" if size <= 8 else "ring_macro")
        if all(mol.GetBondWithIdx(b).GetIsAromatic() for b in bonds):
            present.add("ring_aromatic")
    for i in range(len(atom_rings)):
        for j in range(i + 1, len(atom_rings)):
            if bond_rings[i] & bond_rings[j]:
                present.add("ring_fused")
            elif len(atom_rings[i] & atom_rings[j]) == 1:
                present.add("ring_spiro")
    # Ring systems: rings joined by shared atoms.
    systems: list[set[int]] = []
    for ring in atom_rings:
        merged = [s for s in systems if s & ring]
        new = set(ring).union(*merged) if merged else set(ring)
        systems = [s for s in systems if not (s & ring)] + [new]
    if len(systems) >= 2:
        present.add("ring_systems_2")
    terminal = 0
    for atom in mol.GetAtoms():
        degree = atom.GetDegree()
        if degree == 3:
            present.add("branch_3")
        elif degree >= 4:
            present.add("branch_4")
        elif degree == 1:
            terminal += 1
        symbols = sorted((_bond_symbol(b) for b in atom.GetBonds()), key=_BOND_ORDER.index)
        for a in range(len(symbols)):
            for b in range(a + 1, len(symbols)):
                present.add(f"path_{symbols[a]}{symbols[b]}")
        if not atom.IsInRing():
            ring_free = [n for n in atom.GetNeighbors() if not n.IsInRing()]
            if len(ring_free) >= 2:
                present.add("chain_3")
    if terminal >= 3:
        present.add("terminal_3")
    for bond in mol.GetBonds():
        symbol = _bond_symbol(bond)
        if symbol == "=":
            present.add("bond_double")
            a, b = bond.GetBeginAtom(), bond.GetEndAtom()
            if bond.IsInRing():
                present.add("ring_double")
            elif a.IsInRing() != b.IsInRing():
                present.add("exocyclic_double")
        elif symbol == "#":
            present.add("bond_triple")
        elif symbol == ":":
            present.add("bond_aromatic")
    return np.array([name in present for name in GRAPH_PATTERNS], dtype=np.uint8)


def _functional_group_functions() -> list[tuple[str, Callable]]:
    from rdkit.Chem import Descriptors

    return [(name, fn) for name, fn in Descriptors._descList if name.startswith("fr_")]


FUNCTIONAL_GROUPS: list[str] = [name for name, _ in _functional_group_functions()]
"""RDKit's ``fr_*`` fragment descriptors (85 in current RDKit), in RDKit's order."""


def functional_groups(mol, functions: list[tuple[str, Callable]] | None = None) -> np.ndarray:
    """0/1 vector over `FUNCTIONAL_GROUPS`: which fragments occur at least once."""
    functions = functions or _functional_group_functions()
    return np.array([fn(mol) > 0 for _, fn in functions], dtype=np.uint8)


def brics_fragments(mol) -> list[str]:
    """The BRICS fragments (canonical SMILES with dummy attachment atoms) of a molecule."""
    from rdkit.Chem import BRICS

    return sorted(BRICS.BRICSDecompose(mol))


def _mol(smiles: str, index: int):
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise PluginError(f"RDKit cannot parse the SMILES of graph {index}: {smiles!r}")
    return mol


def _cache_file(kind: str, smiles: list[str]) -> str:
    digest = hashlib.sha256("\n".join(smiles).encode()).hexdigest()[:24]
    return str(cache_dir("pretext-labels") / f"{kind}-v1-{digest}.npy")


def label_matrix(kind: str, smiles: list[str]) -> np.ndarray:
    """(G, L) uint8 labels of `kind` ("graph-pattern" or "functional-group") for every molecule,
    cached on disk."""
    from pathlib import Path

    path = Path(_cache_file(kind, smiles))
    if path.exists():
        return np.load(path)
    if kind == "graph-pattern":
        rows = [graph_patterns(_mol(s, i)) for i, s in enumerate(smiles)]
        width = len(GRAPH_PATTERNS)
    elif kind == "functional-group":
        functions = _functional_group_functions()
        rows = [functional_groups(_mol(s, i), functions) for i, s in enumerate(smiles)]
        width = len(functions)
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    labels = np.stack(rows) if rows else np.zeros((0, width), dtype=np.uint8)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, labels)
    return labels


def brics_fragment_lists(smiles: list[str]) -> list[list[str]]:
    """The BRICS fragments of every molecule, cached on disk like `label_matrix`."""
    import json
    from pathlib import Path

    path = Path(_cache_file("brics", smiles).replace(".npy", ".json"))
    if path.exists():
        return json.loads(path.read_text())
    lists = [brics_fragments(_mol(s, i)) for i, s in enumerate(smiles)]
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(lists))
    return lists


def brics_vocabulary(fragments: list[list[str]], pool: np.ndarray, size: int, min_count: int = 2) -> list[str]:
    """The `size` most frequent BRICS fragments of the pool molecules (ties broken by the fragment
    string, so the vocabulary is deterministic), each occurring in at least `min_count` molecules."""
    counter: Counter[str] = Counter()
    for i in pool:
        counter.update(set(fragments[int(i)]))
    ranked = sorted((item for item in counter.items() if item[1] >= min_count), key=lambda kv: (-kv[1], kv[0]))
    return [fragment for fragment, _ in ranked[:size]]


def brics_labels(fragments: list[list[str]], vocabulary: list[str]) -> np.ndarray:
    """(G, len(vocabulary)) 0/1: which vocabulary fragments each molecule contains."""
    column = {fragment: j for j, fragment in enumerate(vocabulary)}
    out = np.zeros((len(fragments), len(vocabulary)), dtype=np.uint8)
    for row, frags in enumerate(fragments):
        for fragment in frags:
            j = column.get(fragment)
            if j is not None:
                out[row, j] = 1
    return out
