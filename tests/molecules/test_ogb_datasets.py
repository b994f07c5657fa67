"""OGB sets and PCQM4Mv2 from files written in OGB's own on-disk formats, loaded by ogb's classes."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ogb.graphproppred import Evaluator
from ogb.utils import smiles2graph

from benchbase.contract.api import PluginError
from benchbase_molecules.ogb_sets import OGB_SETS, OGBMolecules, PCQM4Mv2, task_infos

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "CCN", "O=C=O", "CCCC", "c1ccncc1", "CC(C)O", "C#N", "OCCO"]


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path / "cache"))


def write_ogb_set(root: Path, name: str, labels: np.ndarray) -> Path:
    """A small ``name`` dataset via `ogb.io.DatasetSaver`, placed where ogb looks for it."""
    from ogb.io import DatasetSaver

    work = root.parent / "saver"
    saver = DatasetSaver(dataset_name=name, is_hetero=False, version=1, root=str(work / "sub"))
    saver.save_graph_list([smiles2graph(s) for s in SMILES])
    saver.save_target_labels(labels)
    saver.save_split({"train": np.arange(6), "valid": np.array([6, 7]), "test": np.array([8, 9])}, "scaffold")
    mapping = work / "mapping"
    mapping.mkdir(parents=True)
    (mapping / "README.md").write_text("toy mapping")
    pd.DataFrame({"label": labels[:, 0], "smiles": SMILES, "mol_id": range(len(SMILES))}).to_csv(
        mapping / "mol.csv.gz", index=False
    )
    saver.copy_mapping_dir(str(mapping))
    task_type = "regression" if OGB_SETS[name][1] == "regression" else "binary classification"
    saver.save_task_info(
        task_type=task_type, eval_metric=OGB_SETS[name][2], num_classes=2 if "binary" in task_type else -1
    )
    saver.get_meta_dict()
    target = root / name.replace("-", "_")
    shutil.copytree(saver.dataset_dir, target)
    return target


def test_molhiv_through_ogb_classes(tmp_path):
    root = tmp_path / "ogb"
    labels = np.array([[0], [1], [0], [1], [0], [1], [0], [np.nan], [1], [0]])
    write_ogb_set(root, "ogbg-molhiv", labels)
    data = OGBMolecules("ogbg-molhiv", root=str(root))
    arrays = data.arrays()
    assert arrays.num_graphs == 10 and data.smiles() == SMILES
    for i, smi in enumerate(SMILES):  # OGB's graphs, unchanged
        ref = smiles2graph(smi)
        a, b = arrays.node_ptr[i], arrays.node_ptr[i + 1]
        assert np.array_equal(arrays.x[a:b], ref["node_feat"])
        c, d = arrays.edge_ptr[i], arrays.edge_ptr[i + 1]
        assert np.array_equal(arrays.edge_index[:, c:d], ref["edge_index"])
    y = arrays.targets["hiv"]
    assert np.isnan(y[7]) and np.array_equal(y[~np.isnan(y)], labels[~np.isnan(labels)])
    split = data.graph_property("official_split")
    assert split.tolist() == ["train"] * 6 + ["valid"] * 2 + ["test"] * 2
    assert "official_split" in data.provides and data.describe()["available"] is True
    task = data.task()
    assert (task.kind, task.metric, task.higher_is_better) == ("classification", "rocauc", True)
    # The metric name is the one ogb's Evaluator reports.
    ev = Evaluator("ogbg-molhiv")
    assert task.metric in ev.eval({"y_true": labels[[0, 1, 2, 3]], "y_pred": np.array([[0.1], [0.9], [0.2], [0.8]])})
    # Second load: my cache; third (cache removed): built from the raw files again. ogb writes its
    # processed file in a private folder, nothing under root.
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert np.array_equal(OGBMolecules("ogbg-molhiv", root=str(root)).arrays().x, arrays.x)
    data._graph_file().unlink()
    assert np.array_equal(OGBMolecules("ogbg-molhiv", root=str(root)).arrays().x, arrays.x)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


class _Planted:
    """A pickle that runs code when loaded: it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loading_is_weights_only_and_never_overrides_it_process_wide(tmp_path, monkeypatch):
    import os

    root = tmp_path / "ogb"
    write_ogb_set(root, "ogbg-molesol", np.linspace(-3, 1, 10)[:, None])
    write_pcqm(root, ["CCO", "CCN", "CCC", "CO", "CN", "CC"], [5.0, 6.0, 7.0, 8.0, float("nan"), float("nan")])
    calls, load = [], torch.load

    def watched(*args, **kwargs):
        calls.append((os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"), kwargs.get("weights_only")))
        return load(*args, **kwargs)

    monkeypatch.delenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", raising=False)
    monkeypatch.setattr(torch, "load", watched)
    assert OGBMolecules("ogbg-molesol", root=str(root)).arrays().num_graphs == 10
    assert PCQM4Mv2(root=str(root)).arrays().num_graphs == 6
    assert len(calls) == 2 and all(call == (None, True) for call in calls)  # the two split dicts
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_a_malicious_processed_file_or_split_dict_runs_nothing(tmp_path):
    root, marker = tmp_path / "ogb", tmp_path / "pwned"
    folder = write_ogb_set(root, "ogbg-molesol", np.linspace(-3, 1, 10)[:, None])
    (folder / "processed").mkdir(exist_ok=True)
    torch.save({"graphs": _Planted(marker), "labels": None}, folder / "processed" / "data_processed")
    assert OGBMolecules("ogbg-molesol", root=str(root)).arrays().num_graphs == 10  # from the raw files
    assert not marker.exists()
    write_pcqm(root, ["CCO", "CCN", "CCC", "CO", "CN", "CC"], [5.0, 6.0, 7.0, 8.0, float("nan"), float("nan")])
    torch.save({"train": _Planted(marker)}, root / "pcqm4m-v2" / "split_dict.pt")
    with pytest.raises(PluginError, match="split_dict.pt holds objects other than arrays and tensors; refused"):
        PCQM4Mv2(root=str(root)).arrays()
    assert not marker.exists()


def test_regression_and_multitask_metadata():
    esol = task_infos("ogbg-molesol")
    assert [(t.name, t.kind, t.metric, t.higher_is_better) for t in esol] == [("esol", "regression", "rmse", False)]
    tox = task_infos("ogbg-moltox21")
    assert len(tox) == 12 and tox[0].name == "tox21_0" and tox[0].metric == "rocauc"
    assert len(task_infos("ogbg-molpcba")) == 128 and task_infos("ogbg-molpcba")[0].metric == "ap"
    for name, (_, _, metric, _) in OGB_SETS.items():
        assert Evaluator(name).eval_metric == metric


def test_esol_regression_set(tmp_path):
    root = tmp_path / "ogb"
    labels = np.linspace(-3, 1, 10)[:, None]
    write_ogb_set(root, "ogbg-molesol", labels)
    data = OGBMolecules("ogbg-molesol", root=str(root))
    np.testing.assert_allclose(data.labels("esol"), labels[:, 0])
    assert data.graph_property("group").shape == (10,)


def test_data_key_follows_content_not_file_times(tmp_path):
    """Run ids carry the data key: a copy of the same files (new modification times, another
    machine) must keep it, an edited file must change it."""
    import os

    root = tmp_path / "ogb"
    folder = write_ogb_set(root, "ogbg-molesol", np.linspace(-3, 1, 10)[:, None])
    key = OGBMolecules("ogbg-molesol", root=str(root)).content_key()
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (1_000_000_000, 1_000_000_000))
    assert OGBMolecules("ogbg-molesol", root=str(root)).content_key() == key
    edited = next(p for p in folder.rglob("*.csv.gz") if "processed" not in p.parts)
    edited.write_bytes(edited.read_bytes() + b"\n")
    assert OGBMolecules("ogbg-molesol", root=str(root)).content_key() != key


def test_missing_data_is_one_clear_error(tmp_path):
    data = OGBMolecules("ogbg-molhiv", root=str(tmp_path / "nowhere"))
    assert data.describe()["available"] is False
    with pytest.raises(PluginError, match=r"ogbg-molhiv.*nowhere.*GraphPropPredDataset"):
        data.arrays()
    with pytest.raises(PluginError, match=r"pcqm4mv2.*nowhere.*PCQM4Mv2Dataset"):
        PCQM4Mv2(root=str(tmp_path / "nowhere")).arrays()
    # A half-copied folder (no release note) must not reach ogb, which would ask on stdin.
    (tmp_path / "half" / "ogbg_molhiv" / "raw").mkdir(parents=True)
    with pytest.raises(PluginError, match="RELEASE_v1.txt"):
        OGBMolecules("ogbg-molhiv", root=str(tmp_path / "half")).arrays()


def test_cli_exit_code_2_when_offline(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from benchbase.cli import app
    from benchbase.contract.registry import reset_default_registry

    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path / "empty-cache"))
    reset_default_registry()
    result = CliRunner().invoke(app, ["datasets", "prepare", "ogbg-molbbbp"])
    reset_default_registry()
    assert result.exit_code == 2
    assert "ogbg-molbbbp" in result.output and "ogbg_molbbbp" in result.output


def write_pcqm(root: Path, smiles: list[str], gaps: list[float]) -> None:
    folder = root / "pcqm4m-v2"
    (folder / "raw").mkdir(parents=True)
    (folder / "RELEASE_v1.txt").write_text("v1")
    with gzip.open(folder / "raw" / "data.csv.gz", "wt") as fh:
        pd.DataFrame({"idx": range(len(smiles)), "smiles": smiles, "homolumogap": gaps}).to_csv(fh, index=False)
    n = len(smiles)
    split = {
        "train": np.arange(n - 4),
        "valid": np.array([n - 4, n - 3]),
        "test-dev": np.array([n - 2]),
        "test-challenge": np.array([n - 1]),
    }
    torch.save(split, folder / "split_dict.pt")


def test_pcqm4mv2_skips_bad_smiles_without_shifting_labels(tmp_path):
    root = tmp_path / "ogb"
    smiles = ["CCO", "C1CC", "c1ccccc1", "CC(=O)O", "CCN", "O=C=O", "CCCC", "C#N"]
    gaps = [5.0, 1.0, 6.5, 7.0, 7.5, 8.0, float("nan"), float("nan")]
    write_pcqm(root, smiles, gaps)
    data = PCQM4Mv2(root=str(root))
    arrays = data.arrays()
    assert arrays.num_graphs == 7 and data.skipped == [(1, "C1CC")]
    assert data.ids().tolist() == [0, 2, 3, 4, 5, 6, 7]
    np.testing.assert_array_equal(arrays.targets["homo_lumo_gap"][:5], [5.0, 6.5, 7.0, 7.5, 8.0])
    assert np.isnan(arrays.targets["homo_lumo_gap"][5:]).all()  # hidden test labels stay NaN
    assert data.graph_property("official_split").tolist() == ["train"] * 3 + ["valid"] * 2 + ["test", ""]
    assert data.task().unit == "eV" and data.smiles()[1] == "c1ccccc1"
    assert PCQM4Mv2(root=str(root), subset=3).arrays().num_graphs == 2
