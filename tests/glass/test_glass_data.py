"""Glass loaders (BOTAN and GlassBench layouts), dataset assembly and the glass protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from botan_tree import N, random_configuration, write_botan_tree

from benchbase.compute.batching import TensorGraphs
from benchbase.contract.api import PluginError
from benchbase_glass.datasets import BotanDataset, GlassBenchDataset
from benchbase_glass.formats import read_botan_file, read_glassbench_file
from benchbase_glass.protocols import GlassTemperatureTransfer, GlassTime
from benchbase_glass.targets import propensity

ROOT = Path(__file__).resolve().parents[2]
BOTAN_SMALL = ROOT.parent / "shared" / "data" / "botan_small" / "small_data"


def _write(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"drop": "positions"}, "missing key"),
        ({"initial_positions": np.zeros((N, 2))}, "shape"),
        ({"positions": np.zeros((N, 3))}, "shape"),
        ({"nan": "positions"}, "NaN"),
        ({"types": np.full(N, 3)}, "0 \\(A\\) or 1 \\(B\\)"),
        ({"box": np.array([-1.0])}, "box"),
    ],
)
def test_botan_reader_rejects_malformed_files(tmp_path, change, message):
    types, initial, positions = random_configuration(np.random.default_rng(0))
    arrays = {"types": types, "initial_positions": initial, "positions": positions}
    if "drop" in change:
        arrays.pop(change["drop"])
    elif "nan" in change:
        arrays[change["nan"]] = arrays[change["nan"]].copy()
        arrays[change["nan"]][0, 0, 0] = np.nan
    else:
        arrays.update(change)
    path = _write(tmp_path / "T0.5" / "train" / "x_tc01.npz", **arrays)
    with pytest.raises(PluginError, match=message) as info:
        read_botan_file(path)
    assert str(path) in str(info.value)


def test_botan_reader_needs_time_index_and_temperature(tmp_path):
    types, initial, positions = random_configuration(np.random.default_rng(0))
    no_tc = _write(tmp_path / "T0.5" / "train" / "x.npz", types=types, initial_positions=initial, positions=positions)
    with pytest.raises(PluginError, match="tc<NN>"):
        read_botan_file(no_tc)
    no_t = _write(tmp_path / "misc" / "x_tc03.npz", types=types, initial_positions=initial, positions=positions)
    with pytest.raises(PluginError, match="temperature"):
        read_botan_file(no_t)
    bad = tmp_path / "T0.5" / "train" / "broken_tc01.npz"
    bad.write_text("not a zip")
    with pytest.raises(PluginError, match="not a readable"):
        read_botan_file(bad)


def test_glassbench_reader_and_rejections(tmp_path):
    rng = np.random.default_rng(2)
    types, initial, _ = random_configuration(rng)
    prop = rng.uniform(size=(10, N))  # (times, N) is accepted and transposed
    path = _write(
        tmp_path / "KA_models" / "T0.44" / "train" / "c0.npz", types=types, initial_positions=initial, md_prop=prop
    )
    samples = read_glassbench_file(path)
    assert [s.time_index for s in samples] == list(range(10))
    assert samples[3].temperature == 0.44 and samples[3].split == "train"
    np.testing.assert_allclose(samples[3].propensity, prop[3])
    bad = prop.copy()
    bad[2, 5] = np.inf
    with pytest.raises(PluginError, match="NaN or infinite"):
        read_glassbench_file(_write(tmp_path / "T0.44" / "b.npz", types=types, initial_positions=initial, md_prop=bad))
    with pytest.raises(PluginError, match="md_prop"):
        read_glassbench_file(
            _write(tmp_path / "T0.44" / "c.npz", types=types, initial_positions=initial, md_prop=np.zeros((5, 7)))
        )
    with pytest.raises(PluginError, match="missing key"):
        read_glassbench_file(_write(tmp_path / "T0.44" / "d.npz", types=types, md_prop=prop))


def test_glassbench_dataset_has_node_task_only(tmp_path):
    rng = np.random.default_rng(3)
    for split, count in (("train", 3), ("test", 1)):
        for c in range(count):
            types, initial, _ = random_configuration(rng)
            _write(
                tmp_path / "T0.44" / split / f"c{c}.npz",
                types=types,
                initial_positions=initial,
                md_prop=rng.uniform(size=(N, 4)),
            )
    ds = GlassBenchDataset(root=str(tmp_path))
    a = ds.arrays()
    assert [t.name for t in ds.tasks] == ["propensity"] and set(a.targets) == {"propensity"}
    assert a.num_graphs == 16
    split = GlassTime(time_index=2).split(ds, ds.task(), seed=0)
    assert len(split["test"]) == 1 and len(split["train"]) + len(split["valid"]) == 3


def test_botan_dataset_arrays_and_batches(tmp_path):
    root = write_botan_tree(tmp_path / "data")
    ds = BotanDataset(root=str(root))
    a = ds.arrays()
    assert a.num_graphs == 2 * 5 * 2
    assert a.x.dtype == np.int64 and a.x.shape == (a.num_graphs * N, 1)
    assert a.edge_attr.shape == (a.edge_ptr[-1], 3)
    assert np.all(np.linalg.norm(a.edge_attr, axis=1) < 2.0)
    assert ds.node_class_names() == ["A", "B"]
    counts = ds.graph_property("node_class_counts")
    assert counts.shape == (a.num_graphs, 2) and np.all(counts.sum(1) == N)
    # node mask = type A; edge mask = A-A pairs closer than 1.35
    assert np.array_equal(a.target_masks["propensity"], a.x[:, 0] == 0)
    g = 5
    lo, hi = a.node_ptr[g], a.node_ptr[g + 1]
    elo, ehi = a.edge_ptr[g], a.edge_ptr[g + 1]
    src, dst = a.edge_index[:, elo:ehi]
    types = a.x[lo:hi, 0]
    expected = (types[src] == 0) & (types[dst] == 0) & (np.linalg.norm(a.edge_attr[elo:ehi], axis=1) < 1.35)
    assert np.array_equal(a.target_masks["bond_motion"][elo:ehi], expected)
    sample = read_botan_file(sorted((root / "T0.5" / "test").glob("*.npz"))[0])
    np.testing.assert_allclose(
        a.targets["propensity"][a.node_ptr[0] : a.node_ptr[1]],
        propensity(sample.initial_positions, sample.positions),
        rtol=1e-6,
    )
    batch = TensorGraphs(a).batch(np.array([0, 3]))
    assert batch.targets["bond_motion"].shape[0] == batch.edge_index.shape[1]
    assert batch.graph_attr["box"].shape == (2, 3)


def test_glass_time_protocol(tmp_path):
    ds = BotanDataset(root=str(write_botan_tree(tmp_path / "data")))
    temps, times, official = (ds.graph_property(k) for k in ("temperature", "time_index", "official_split"))
    split = GlassTime(temperature=0.8, time_index=1).split(ds, ds.task(), seed=0)
    for part in split.values():
        assert np.all(np.isclose(temps[part], 0.8)) and np.all(times[part] == 1)
    assert np.all(official[split["test"]] == "test") and len(split["test"]) == 2
    assert np.all(official[split["valid"]] == "train") and len(split["valid"]) == 1
    assert set(split["train"]).isdisjoint(split["valid"])
    default = GlassTime().split(ds, ds.task(), seed=0)  # lowest temperature, latest time
    assert np.all(np.isclose(temps[default["test"]], 0.5)) and np.all(times[default["test"]] == 1)
    assert GlassTime().pretrain_pool(split, "train").tolist() == split["train"].tolist()
    with pytest.raises(PluginError, match="time_index = 9"):
        GlassTime(time_index=9).split(ds, ds.task(), seed=0)
    assert GlassTime().leaderboard_columns(ds.task())[0].name == "test_pearson_per_graph"


def test_temperature_transfer_protocol(tmp_path):
    ds = BotanDataset(root=str(write_botan_tree(tmp_path / "data")))
    temps = ds.graph_property("temperature")
    split = GlassTemperatureTransfer(time_index=0).split(ds, ds.task(), seed=1)
    assert np.all(np.isclose(temps[split["train"]], 0.8)) and np.all(np.isclose(temps[split["test"]], 0.5))
    assert np.all(np.isclose(temps[split["test_id"]], 0.8))
    one_t = BotanDataset(root=str(root_one := write_botan_tree(tmp_path / "one", temps=(0.5,))))
    assert root_one.exists()
    assert "two temperatures" in GlassTemperatureTransfer().incompatibility(one_t)


def test_missing_root_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PluginError, match="botan_small"):
        BotanDataset().arrays()
    with pytest.raises(PluginError, match="does not exist"):
        BotanDataset(root=str(tmp_path / "nowhere")).arrays()
    # grid expansion asks the protocol: a missing data directory is a skip with the reason
    assert "does not exist" in GlassTime().incompatibility(BotanDataset())
    with pytest.raises(PluginError, match="Zenodo"):
        GlassBenchDataset()


@pytest.mark.skipif(not BOTAN_SMALL.is_dir(), reason=f"botan_small not found at {BOTAN_SMALL}")
@pytest.mark.slow
def test_botan_small_default_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    ds = BotanDataset(max_configs=1)
    a = ds.arrays()
    assert a.num_graphs == 2 and sorted(ds.graph_property("official_split")) == ["test", "train"]
    assert np.all(ds.graph_property("time_index") == 7)
    # about 40 neighbours within 2.0 at density 1.2, and about 9 A-A pairs below 1.35 per A particle
    assert 35 < a.edge_ptr[-1] / a.node_ptr[-1] < 45


def test_ka_small_reads_its_root_and_describes_cheaply(tmp_path):
    from benchbase_glass.datasets import KASmallDataset, ka_small_configs

    root = write_botan_tree(tmp_path / "ka")
    ds = KASmallDataset(root=str(root))
    assert ds.describe()["available"] is False  # no .complete marker: it would simulate on load
    assert ds.known_temperatures() == [0.5, 0.8] and ds._arrays is None  # read from directory names
    (root / ".complete").write_text("ok\n")
    assert ds.arrays().num_graphs == 20 and ds.describe()["size"] == 20
    # the embedded default's budget: two temperatures, ~2e8 particle-steps (<= 10 min on 2 cores)
    configs = ka_small_configs()
    assert len({c.temperature for c in configs}) == 2
    steps = 0
    for c in configs:
        per_config = c.steps(c.equilibration) + c.runs * c.steps(c.times[-1])
        steps += c.particles * (c.configurations * per_config + c.steps(c.initial_equilibration + c.melt))
        c.validate()
    assert steps < 2.2e8
