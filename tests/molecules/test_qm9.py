"""QM9 from qm9pack: labels and units, subsets, 3D alignment, graph properties and the cache."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pandas as pd
import pytest

from benchbase.contract.api import PluginError
from benchbase_molecules import qm9
from benchbase_molecules.featurize import featurize_smiles
from benchbase_molecules.moldata import load_arrays, save_arrays


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache directory for the module: the CSVs are parsed once (about 10 s)."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cache")
    mp.setenv("BENCHBASE_CACHE", str(path))
    yield path
    mp.undo()


def test_registered_names_and_tasks(cache):
    from benchbase.contract.registry import load_registry

    names = set(load_registry().names("dataset"))
    assert {"qm9"} | {f"qm9/{t}" for t in qm9.TASK_NAMES} <= names
    assert qm9.TASK_NAMES == ["mu", "alpha", "homo", "lumo", "homo_lumo_gap", "r2", "zpve", "u0", "u", "h", "g", "cv"]
    gap = qm9.QM9(tasks=["homo_lumo_gap"])
    assert (
        gap.name == "qm9/homo_lumo_gap" and gap.task().unit == "eV" and [t.name for t in gap.tasks] == ["homo_lumo_gap"]
    )
    assert qm9.QM9().task("cv").unit == "cal/(mol K)"
    with pytest.raises(PluginError, match="unknown task"):
        qm9.QM9(tasks=["gap"])


@pytest.mark.slow
def test_subset_labels_units_and_ids(cache):
    data = qm9.QM9(subset=300)
    arrays = data.arrays()
    assert arrays.num_graphs == 300 and data.skipped == []
    ids = data.ids()
    assert np.all(np.diff(ids) > 0)  # QM9 index order
    # Same molecules for every construction (the subset seed is fixed, independent of run seeds).
    assert np.array_equal(qm9.QM9(tasks=["homo"], subset=300).ids(), ids)
    assert not np.array_equal(qm9.QM9(subset=301).ids()[:300], ids)
    # Labels against the raw CSV rows, converted Hartree -> eV.
    dist = importlib.metadata.distribution("qm9pack")
    frame = pd.concat([pd.read_csv(dist.locate_file(p)) for p in qm9._PARTS]).set_index("Index").loc[ids]
    np.testing.assert_allclose(arrays.targets["homo_lumo_gap"], frame["HOMO_LUMO_gap_au"] * 27.211386)
    np.testing.assert_allclose(arrays.targets["u0"], frame["InternalEnergy_0K_au"] * 27.211386)
    np.testing.assert_allclose(arrays.targets["mu"], frame["Dipole_debye"])
    assert data.smiles() == frame["SMILES"].tolist()
    # Graphs are exactly the featuriser's.
    ref = featurize_smiles(frame["SMILES"].tolist())
    assert np.array_equal(arrays.x, ref.node_feat) and np.array_equal(arrays.edge_index, ref.edge_index)
    assert np.array_equal(arrays.edge_attr, ref.edge_feat) and np.array_equal(arrays.node_ptr, ref.node_ptr)


@pytest.mark.slow
def test_positions_align_with_heavy_atoms(cache):
    data = qm9.QM9(subset=300)
    a = data.arrays()
    assert data.features.has_pos and "pos" in data.provides and a.pos.shape == (len(a.x), 3)
    graph_of_edge = np.repeat(np.arange(a.num_graphs), np.diff(a.edge_ptr))
    src = a.node_ptr[graph_of_edge] + a.edge_index[0]
    dst = a.node_ptr[graph_of_edge] + a.edge_index[1]
    length = np.linalg.norm(a.pos[src] - a.pos[dst], axis=1)
    assert 1.0 < length.min() and length.max() < 1.9  # every graph bond is a real bond in 3D
    no_pos = qm9.QM9(subset=300, positions=False)
    assert no_pos.arrays().pos is None and "pos" not in no_pos.provides and not no_pos.features.has_pos


def test_misaligned_geometry_is_left_out_not_shifted():
    """Molecules 133857/133859 relaxed into different bonds than their SMILES: no positions for them."""
    x = featurize_smiles(["CC1C2C3C4=CCC13C24"])
    heavy_xyz = np.array(
        [[0, 0, 0], [1.5, 0, 0], [3.0, 0, 0], [4.5, 0, 0], [6, 0, 0], [7.5, 0, 0], [9, 0, 0], [10.5, 0, 0], [12, 0, 0]],
        dtype=np.float32,
    )
    pos, ok = qm9.align_positions(
        x.node_feat, x.edge_index, x.node_ptr, x.edge_ptr, [np.full(9, 6, dtype=np.uint8)], [heavy_xyz]
    )
    assert not ok[0]
    # A permuted but chemically identical XYZ order is recovered by graph matching.
    ethanol = featurize_smiles(["CCO"])
    xyz = np.array([[0.0, 0, 0], [1.43, 0, 0], [2.2, 1.3, 0]], dtype=np.float32)  # O, C(H2), C(H3)
    pos, ok = qm9.align_positions(
        ethanol.node_feat, ethanol.edge_index, ethanol.node_ptr, ethanol.edge_ptr, [np.array([8, 6, 6])], [xyz]
    )
    assert ok[0] and np.allclose(pos, xyz[[2, 1, 0]])


def test_graph_properties(cache):
    data = qm9.QM9(subset=300)
    a = data.arrays()
    size = data.graph_property("size")
    assert np.array_equal(size, np.diff(a.node_ptr)) and size.max() <= 9
    names = data.node_class_names()
    assert names[:3] == ["C", "N", "O"] and set(names) <= {"C", "N", "O", "F"}
    counts = data.graph_property("node_class_counts")
    assert counts.shape == (300, len(names)) and np.array_equal(counts.sum(1), size)
    groups = data.graph_property("group")
    assert groups.shape == (300,) and "" in set(groups) and any("1" in g for g in groups)
    assert data.graph_property("official_split") is None
    assert data.graph_property("nonsense") is None
    info = data.describe()
    assert info["size"] == 300 and info["available"] is True and info["tasks"] == qm9.TASK_NAMES


def test_cache_reused_and_corruption_rebuilt(cache):
    data = qm9.QM9(tasks=["homo_lumo_gap"], subset=120)
    first = data.arrays()
    path = data._graph_file()
    assert path.exists()
    stamp = path.stat().st_mtime_ns
    again = qm9.QM9(tasks=["homo_lumo_gap"], subset=120)
    assert np.array_equal(again.arrays().x, first.x) and path.stat().st_mtime_ns == stamp
    # Truncated file: warning, rebuilt, same data.
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.warns(UserWarning, match="damaged"):
        rebuilt = qm9.QM9(tasks=["homo_lumo_gap"], subset=120).arrays()
    assert np.array_equal(rebuilt.x, first.x) and np.array_equal(
        rebuilt.targets["homo_lumo_gap"], first.targets["homo_lumo_gap"]
    )
    # A flipped byte inside an array: caught by the checksum.
    raw = bytearray(path.read_bytes())
    offset = raw.find(b"x.npy") + 200
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="damaged"):
        assert np.array_equal(qm9.QM9(tasks=["homo_lumo_gap"], subset=120).arrays().x, first.x)


def test_cache_helpers_detect_checksum_and_stale_meta(tmp_path):
    path = tmp_path / "a.npz"
    save_arrays(path, {"v": np.arange(1000, dtype=np.int64)}, {"k": 1})
    assert load_arrays(path, {"k": 2}) is None and path.exists()  # stale: ignored, not deleted
    assert np.array_equal(load_arrays(path, {"k": 1})["v"], np.arange(1000))
    raw = bytearray(path.read_bytes())
    raw[raw.find(b"v.npy") + 300] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="damaged"):
        assert load_arrays(path, {"k": 1}) is None
    assert not path.exists()


def test_bad_subset_is_a_plugin_error(cache):
    with pytest.raises(PluginError, match="subset"):
        qm9.QM9(subset=0).arrays()
