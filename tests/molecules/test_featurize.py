"""The featuriser equals `ogb.utils.smiles2graph` molecule by molecule, in one process and in several."""

from __future__ import annotations

import numpy as np
import pytest
from ogb.utils import smiles2graph
from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims

from benchbase_molecules.featurize import featurize_smiles
from benchbase_molecules.moldata import ATOM_VOCAB, BOND_VOCAB, unpack_strings
from benchbase_molecules.qm9 import load_source

AWKWARD = [
    "Cl[C@H](/C=C/C)Br",  # tetrahedral and double-bond stereo
    "F/C=C/F",
    "F/C=C\\F",
    "C[C@H]1CC[C@@H](C)CC1",
    "C[S@@](=O)c1ccccc1",  # chiral sulfoxide
    "[NH3+]CC([O-])=O",  # zwitterion
    "[13CH4]",  # isotopes
    "[2H]C([2H])([2H])O",  # explicit isotopic hydrogens stay atoms
    "[H][H]",
    "c1cc[nH]c1",  # aromatic heteroatoms
    "o1cccc1",
    "c1ccc2[nH]ccc2c1",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "c1ccncc1.[Na+].[Cl-]",  # disconnected fragments, ions
    "[Fe+3]",
    "[CH2]C",  # radical
    "[U]",
    "*C",  # dummy atom -> misc atomic number
    "C#N",
    "O",
    "OC(=O)C=1C=CC=CC1",
    "[O-][N+](=O)c1ccccc1",
    "C1=CC2=CC=CC=CC2=C1",
    "FC(F)(F)S(=O)(=O)[O-].[Li+]",
]


def _assert_equal(graphs, smiles):
    for i, smi in enumerate(smiles):
        if i in set(graphs.failed.tolist()):
            continue
        ref = smiles2graph(smi)
        mine = graphs.graph(i)
        assert mine["num_nodes"] == ref["num_nodes"], smi
        for key in ("node_feat", "edge_index", "edge_feat"):
            assert mine[key].dtype == ref[key].dtype == np.int64, (smi, key)
            assert mine[key].shape == ref[key].shape, (smi, key)
            assert np.array_equal(mine[key], ref[key]), (smi, key)


def test_awkward_molecules_equal_smiles2graph():
    graphs = featurize_smiles(AWKWARD)
    assert len(graphs) == len(AWKWARD) and graphs.failed.size == 0
    _assert_equal(graphs, AWKWARD)
    assert graphs.node_feat[graphs.node_ptr[AWKWARD.index("*C")], 0] == 118  # misc


def test_failed_smiles_keep_positions_aligned():
    smiles = ["CCO", "not a smiles", "C1CC", "c1ccccc1", "C(C)(C)(C)(C)C", "O=O"]
    graphs = featurize_smiles(smiles)
    assert graphs.failed.tolist() == [1, 2, 4]  # syntax error, unclosed ring, pentavalent carbon
    assert graphs.parsed.tolist() == [True, False, False, True, False, True]
    assert np.diff(graphs.node_ptr).tolist() == [3, 0, 0, 6, 0, 2]
    _assert_equal(graphs, smiles)


@pytest.mark.slow
def test_thousands_of_qm9_molecules_equal_smiles2graph(qm9_cache):
    src = load_source()
    smiles = unpack_strings(src["smiles"], src["smiles_ptr"])
    rng = np.random.default_rng(0)
    sample = [smiles[i] for i in rng.choice(len(smiles), size=2500, replace=False)]
    graphs = featurize_smiles(sample, chunk_size=700)
    assert graphs.failed.size == 0
    _assert_equal(graphs, sample)


def test_workers_give_identical_arrays():
    smiles = AWKWARD * 20 + ["bad(", "CC"]
    one = featurize_smiles(smiles)
    two = featurize_smiles(smiles, workers=2, chunk_size=50)
    for key in ("node_feat", "edge_index", "edge_feat", "node_ptr", "edge_ptr", "failed"):
        assert np.array_equal(getattr(one, key), getattr(two, key)), key
    assert two.failed.tolist() == [len(AWKWARD) * 20]


def test_empty_input_and_progress():
    seen = []
    graphs = featurize_smiles([], progress=seen.append)
    assert len(graphs) == 0 and graphs.node_feat.shape == (0, 9) and graphs.edge_index.shape == (2, 0)
    featurize_smiles(["C"] * 5, chunk_size=2, progress=seen.append)
    assert sum(seen) == 5


def test_vocabularies_match_ogb():
    assert ATOM_VOCAB == tuple(get_atom_feature_dims())
    assert BOND_VOCAB == tuple(get_bond_feature_dims())


@pytest.fixture(scope="module")
def qm9_cache(tmp_path_factory):
    import os

    old = os.environ.get("BENCHBASE_CACHE")
    os.environ["BENCHBASE_CACHE"] = str(tmp_path_factory.getbasetemp() / "qm9-cache")
    yield
    if old is None:
        del os.environ["BENCHBASE_CACHE"]
    else:
        os.environ["BENCHBASE_CACHE"] = old
