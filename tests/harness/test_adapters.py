"""Adapter datasets (one registered name, many data sets) are told apart by name in run ids,
caches and leaderboard tables; their per-task declarations are checked with one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from benchbase.compute.adapters import dataset_label, declared_tasks
from benchbase.compute.runspec import RunSpec
from benchbase.contract.errors import PluginError
from benchbase.reporting.tables import group_tables


def test_dataset_label_names_the_data_set_an_adapter_serves():
    assert dataset_label("csv", {"path": "data/solubility.csv", "name": None}) == "csv/solubility"
    assert dataset_label("csv", {"path": "data/solubility.csv", "name": "esol"}) == "csv/esol"
    assert dataset_label("pyg", {"class": "torch_geometric.datasets.FakeDataset"}) == "pyg/FakeDataset"
    assert dataset_label("qm9/homo_lumo_gap", {"subset": 3000, "positions": True}) == "qm9/homo_lumo_gap"


def _run(params: dict, metrics: dict | None = None) -> dict:
    spec = {
        "dataset": {"name": "csv", "params": params},
        "protocol": {"name": "iid", "params": {}},
        "encoder": {"name": "gin", "params": {}},
        "pretext": {"name": "none", "params": {}},
        "rebalancer": {"name": "none", "params": {}},
        "train": {},
        "seed": 0,
    }
    return {"run_id": RunSpec(spec).run_id, "spec": spec, "status": "finished", "metrics": metrics or {"y": {}}}


def test_two_csv_data_sets_get_two_tables_and_distinct_run_ids():
    first, second = _run({"path": "a.csv", "name": "first"}), _run({"path": "a.csv", "name": "second"})
    assert first["run_id"] != second["run_id"]
    assert sorted(group_tables([first, second])) == ["csv-first__y__iid", "csv-second__y__iid"]
    assert sorted(group_tables([_run({"path": "x/a.csv", "name": None}), _run({"path": "b.csv", "name": None})])) == [
        "csv-a__y__iid",
        "csv-b__y__iid",
    ]


def test_declarations_infer_kinds_and_reject_what_does_not_fit():
    labels = {"y": np.array([0.5, 2.0, np.nan]), "c": np.array([0.0, 1.0, np.nan])}
    tasks = declared_tasks(labels, None, {"y": "eV"}, None, "here")
    assert [(t.name, t.kind, t.unit, t.metric, t.higher_is_better) for t in tasks] == [
        ("y", "regression", "eV", "mae", False),
        ("c", "classification", "", "rocauc", True),
    ]
    assert declared_tasks(labels, {"c": "regression"}, None, {"c": "rmse"}, "here")[1].metric == "rmse"
    with pytest.raises(PluginError, match="here: kind must be a table task -> string"):
        from benchbase.compute.adapters import check_declarations

        check_declarations(3, None, None, "here")
    with pytest.raises(PluginError, match="here: task 'y' has no label at all"):
        declared_tasks({"y": np.array([np.nan])}, None, None, None, "here")
