"""The `pyg` adapter: a torch_geometric dataset class, named in a grid file, is a benchbase dataset -
a small InMemoryDataset the tests build (categorical features, positions, a regression label) and
PyG's FakeDataset, which needs no download (float features, class labels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.compute.pyg_dataset import build
from benchbase.contract.errors import DataUnavailable, PluginError
from benchbase.running.store import Store
from benchbase.testing import check_dataset

runner = CliRunner()
FAKE = {"num_graphs": 60, "avg_num_nodes": 10, "avg_degree": 3, "num_channels": 4, "edge_dim": 2, "task": "graph"}


def test_an_in_memory_dataset_becomes_a_benchbase_dataset(synthetic_env):
    data = build(**{"class": "pyg_toy.Rings", "distribution": "pyg-toy", "kwargs": {"graphs": 40}})
    data.check_available()
    assert data.name == "pyg/Rings" and [(t.name, t.kind) for t in data.tasks] == [("y", "regression")]
    assert data.features.node_vocab == (3, 2) and data.features.edge_vocab == (2,) and data.features.has_pos
    assert {"x_categorical", "edge_attr", "pos", "size", "node_class_counts"} == data.provides
    check_dataset(data)
    sizes = data.graph_property("size")
    assert np.array_equal(data.graph_property("node_class_counts").sum(axis=1), sizes)


def test_fake_dataset_float_features_and_classes_are_deterministic(synthetic_env):
    params = {"class": "torch_geometric.datasets.FakeDataset", "kwargs": {**FAKE, "num_classes": 3}}
    data, again = build(**params), build(**params)
    assert [(t.name, t.kind, t.metric) for t in data.tasks] == [
        ("y_0", "classification", "rocauc"),
        ("y_1", "classification", "rocauc"),
        ("y_2", "classification", "rocauc"),
    ]  # one binary task per class
    assert data.features.node_dim == 4 and data.features.edge_dim == 2 and not data.features.node_vocab
    assert data.provides == {"edge_attr", "size"}
    check_dataset(data)
    assert np.array_equal(data.arrays().x, again.arrays().x)  # seeded: every process sees the same graphs
    other = build(**params, seed=1)
    assert not np.array_equal(data.arrays().x[:5], other.arrays().x[:5])
    regression = build(**params, kind={"label": "regression"}, tasks=["label"], unit={"label": "classes"})
    assert [(t.name, t.kind, t.unit) for t in regression.tasks] == [("label", "regression", "classes")]


GRID = """
seeds = [0]
[train]
epochs = 2
pretrain_epochs = 1
batch_size = 32
[params.encoder.gin]
layers = 2
hidden = 16
[[study]]
datasets = ["pyg"]
protocols = ["iid", "extrapolation-threshold", "size"]
encoders = ["gin"]
pretext = ["none", "node-masking"]
[study.params.dataset.pyg]
class = "pyg_toy.Rings"
distribution = "pyg-toy"
kwargs = {{ graphs = 80 }}
[[study]]
datasets = ["pyg"]
protocols = ["iid"]
encoders = ["gin"]
rebalancers = ["none", "inverse-frequency"]
[study.params.dataset.pyg]
class = "torch_geometric.datasets.FakeDataset"
kwargs = {fake}
name = "fake"
"""


@pytest.mark.slow
def test_pyg_datasets_run_through_a_grid(synthetic_env, tmp_path):
    fake = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in {**FAKE, "num_classes": 2}.items()) + " }"
    grid, store, out = tmp_path / "grid.toml", tmp_path / "store", tmp_path / "lb"
    grid.write_text(GRID.format(fake=fake))
    args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = Store(store).runs()
    assert len(runs) == 8 and all(r["status"] == "finished" for r in runs)
    assert (out / "pyg-Rings__y__size.md").exists() and (out / "pyg-fake__y__iid.md").exists()


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({}, PluginError, "dataset 'pyg' needs the parameter class"),
        ({"class": "no_such_module.Data"}, PluginError, "is not in torch_geometric.datasets: name the installed"),
        ({"class": "NoSuchDataset"}, PluginError, "'NoSuchDataset' is not a class of torch_geometric.datasets"),
        ({"class": "os.system", "distribution": "torch"}, PluginError, "not provided by an installed distribution"),
        ({"class": "a/../b"}, PluginError, "must be a dotted Python name"),
        ({"class": "pyg_toy.missing", "distribution": "pyg-toy"}, PluginError, "cannot import 'pyg_toy.missing'"),
        ({"class": "pyg_toy.np", "distribution": "pyg-toy"}, PluginError, "'pyg_toy.np' is not a class"),
        ({"class": "pyg_toy.Data", "distribution": "pyg-toy"}, PluginError, "not a torch_geometric dataset class"),
        (
            {"class": "pyg_toy.Rings", "distribution": "pyg-toy", "kwargs": {"size": 3}},
            PluginError,
            "cannot be built with kwargs {'size': 3}",
        ),
        (
            {"class": "pyg_toy.NodeLabels", "distribution": "pyg-toy"},
            PluginError,
            "y has one row per node; the pyg adapter reads graph-level",
        ),
        (
            {"class": "pyg_toy.NeedsDownload", "distribution": "pyg-toy"},
            DataUnavailable,
            "its data could not be loaded (<urlopen error",
        ),
        (
            {"class": "pyg_toy.Rings", "distribution": "pyg-toy", "tasks": ["a", "b"]},
            PluginError,
            "tasks names 2 column(s) but y has 1",
        ),
        (
            {"class": "pyg_toy.Rings", "distribution": "pyg-toy", "kind": {"y": "classification"}},
            PluginError,
            "declared classification but its labels",
        ),
        (
            {"class": "pyg_toy.Rings", "distribution": "pyg-toy", "name": "a/b"},
            PluginError,
            "name 'a/b' must start with a letter or digit",
        ),
    ],
)
def test_bad_input_is_one_clear_line(synthetic_env, params, error, message):
    with pytest.raises(error) as raised:
        build(**params).check_available()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_dataset_that_needs_a_download_is_skipped_with_the_reason(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[params.dataset.pyg]\nclass = "pyg_toy.NeedsDownload"\ndistribution = "pyg-toy"\n'
        '[[study]]\ndatasets = ["pyg"]\nprotocols = ["iid"]\nencoders = ["gin"]\n'
    )
    result = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run"])
    assert result.exit_code == 0 and "dataset 'pyg' is not available" in result.output, result.output
    assert "root = " in result.output and "pyg/NeedsDownload" in result.output


class _Planted:
    """A pickle that runs code when loaded: it creates `marker`."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).touch, (self.marker,))


@pytest.mark.parametrize("planted", ["data.pt", "pre_transform.pt"])
def test_a_malicious_processed_file_under_root_is_refused_unrun(synthetic_env, tmp_path, planted):
    """PyG reads its processed files under `root` with a fallback to a full unpickling (data.pt) or
    with none at all (pre_transform.pt): loaded weights-only, a planted pickle runs nothing."""
    import torch

    params = {"class": "pyg_toy.ProcessedRings", "distribution": "pyg-toy", "kwargs": {"root": str(tmp_path / "r")}}
    assert build(**params).arrays().num_graphs == 20  # processed, then read back weights-only
    assert build(**params).arrays().num_graphs == 20  # from the processed file alone
    marker = tmp_path / "pwned"
    torch.save({"payload": _Planted(marker)}, tmp_path / "r" / "processed" / planted)
    with pytest.raises(PluginError, match=f"{planted} holds objects that a weights-only load refuses"):
        build(**params).arrays()
    assert not marker.exists()


def test_a_class_that_unpickles_its_graphs_itself_runs_no_planted_code(synthetic_env, tmp_path):
    """Some classes read each graph in `get`, after building, with ``torch.load(...,
    weights_only=False)``: that load is weights-only too while benchbase reads the graphs."""
    import torch

    params = {"class": "pyg_toy.FileRings", "distribution": "pyg-toy", "kwargs": {"root": str(tmp_path / "r")}}
    assert build(**params).arrays().num_graphs == 6  # its own files (tensors in a dict) load weights-only
    marker = tmp_path / "pwned"
    torch.save({"payload": _Planted(marker)}, tmp_path / "r" / "processed" / "ring_3.pt")
    with pytest.raises(PluginError, match="ring_3.pt holds objects that a weights-only load refuses"):
        build(**params).arrays()
    assert not marker.exists()
    assert torch.load is not None and "weights_only_load" not in repr(torch.load)  # put back
