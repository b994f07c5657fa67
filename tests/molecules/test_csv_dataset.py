"""The `csv` dataset on real molecules (QM9 SMILES and gaps from qm9pack, written as a user's file):
a grid with every molecular protocol, with and without pretraining; the parameters; every bad input
with one clear line; several CSV data sets in one grid kept apart."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qm9_csv import REJECTED, qm9_rows, user_csv, write_csv
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.contract.errors import DataUnavailable, PluginError
from benchbase.running.store import Store
from benchbase.testing import check_dataset, check_protocol
from benchbase_molecules.csv_dataset import CsvDataset

runner = CliRunner()

GRID = """
seeds = [0]
[train]
epochs = 3
pretrain_epochs = 1
batch_size = 64
[params.dataset.csv]
path = "{path}"
id_column = "mol_id"
targets = ["gap"]
unit = {{ gap = "eV" }}
[params.encoder.gin]
layers = 2
hidden = 16
[[study]]
datasets = ["csv"]
protocols = ["iid", "extrapolation-threshold", "scaffold"]
encoders = ["gin"]
pretext = ["none", "node-masking"]
"""


@pytest.fixture
def mols(synthetic_env, tmp_path) -> Path:
    return user_csv(tmp_path / "mols.csv")


def _grid(tmp_path: Path, body: str) -> Path:
    grid = tmp_path / "grid.toml"
    grid.write_text(body)
    return grid


@pytest.mark.slow
def test_a_csv_runs_through_a_grid_and_its_rejected_rows_are_reported(mols, tmp_path, caplog):
    grid, store, out = _grid(tmp_path, GRID.format(path=mols)), tmp_path / "store", tmp_path / "lb"
    dry = runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(store)])
    assert dry.exit_code == 0 and "6 runs" in dry.output, dry.output
    # reported at planning (the CLI prints the log line on stderr) and in every run record
    summary = "dataset 'csv/mols': 3 of 300 rows skipped: 2 SMILES rejected by RDKit (ids 89065, 89415); 1 no label"
    assert any(record.getMessage().startswith(summary) for record in caplog.records)
    args = ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = Store(store).runs()
    assert len(runs) == 6 and all(r["status"] == "finished" for r in runs)
    assert {r["spec"]["pretext"]["name"] for r in runs} == {"none", "node-masking"}
    details = runs[0]["details"]
    assert details["skipped_inputs"] == 3
    reasons = dict(map(tuple, details["skipped_examples"]))
    rows = qm9_rows(300)
    assert reasons[int(rows[5]["mol_id"])] == f"SMILES rejected by RDKit: {REJECTED[0]!r}"
    assert reasons[int(rows[40]["mol_id"])] == f"SMILES rejected by RDKit: {REJECTED[1]!r}"
    assert reasons[int(rows[7]["mol_id"])].startswith("no label: ")
    for protocol in ("iid", "extrapolation-threshold", "scaffold"):
        assert "# csv/mols · gap · " + protocol in (out / f"csv-mols__gap__{protocol}.md").read_text()
    # the rejected rows exported by `benchbase results --rejected`, once per dataset and id
    exported = runner.invoke(app, ["results", "--store", str(store), "--rejected", str(tmp_path / "rejected.csv")])
    assert exported.exit_code == 0 and "exported 3 rejected rows" in exported.output, exported.output
    lines = (tmp_path / "rejected.csv").read_text().splitlines()
    assert lines[0] == "dataset,id,reason" and len(lines) == 4
    assert f"csv/mols,{rows[5]['mol_id']},SMILES rejected by RDKit: {REJECTED[0]!r}" in lines


def test_defaults_infer_targets_kinds_metrics_and_ids(mols):
    data = CsvDataset(path=str(mols))
    data.check_available()
    assert data.name == "csv/mols" and [t.name for t in data.tasks] == ["mol_id", "gap", "wide_gap"]
    by_name = {t.name: t for t in data.tasks}
    assert (by_name["gap"].kind, by_name["gap"].metric, by_name["gap"].higher_is_better) == ("regression", "mae", False)
    assert (by_name["wide_gap"].kind, by_name["wide_gap"].metric) == ("classification", "rocauc")
    assert data.ids()[:3].tolist() == [0, 1, 2]  # the row number without an id column
    check_dataset(data)
    assert {"smiles", "size", "group", "node_class_counts", "x_categorical", "edge_attr"} <= data.provides
    # the row without a gap keeps its mol_id "label": only the two rejected SMILES are left out
    assert len(data.smiles()) == data.arrays().num_graphs == 298
    assert np.isfinite(data.labels("gap")).sum() == 297


def test_declared_parameters_shape_the_tasks(mols):
    data = CsvDataset(
        path=str(mols),
        name="qm9-sample",
        targets=["wide_gap", "gap"],
        id_column="mol_id",
        kind={"wide_gap": "regression"},
        unit={"gap": "eV"},
        metric={"wide_gap": "rmse", "gap": "rmse"},
    )
    data.check_available()
    assert data.name == "csv/qm9-sample" and [t.name for t in data.tasks] == ["wide_gap", "gap"]
    assert [(t.kind, t.unit, t.metric) for t in data.tasks] == [
        ("regression", "", "rmse"),
        ("regression", "eV", "rmse"),
    ]
    assert data.ids()[0] == int(qm9_rows(1)[0]["mol_id"])
    assert data._graph_file().name.startswith("csv-qm9-sample-")


def test_string_ids_and_an_official_split_used_by_iid(synthetic_env, tmp_path):
    rows = qm9_rows(60)
    for i, row in enumerate(rows):
        row["mol_id"] = f"mol-{i:03d}"
        row["split"] = ("train", "train", "train", "valid", "test")[i % 5]
    path = write_csv(tmp_path / "split.csv", rows)
    data = CsvDataset(path=str(path), targets=["gap"], id_column="mol_id", split_column="split")
    data.check_available()
    assert data.ids()[0] == "mol-000" and "official_split" in data.provides
    from benchbase.compute.protocols import IID

    split = IID().split(data, data.task(), seed=0)
    assert split["test"].tolist() == list(range(4, 60, 5))
    check_protocol(IID, data)


@pytest.mark.slow
def test_several_csv_datasets_stay_apart_in_one_grid(synthetic_env, tmp_path):
    first = write_csv(tmp_path / "a.csv", qm9_rows(80))
    second = write_csv(tmp_path / "b.csv", qm9_rows(80, stride=7))
    body = f"""
seeds = [0]
[train]
epochs = 2
[params.encoder.gin]
layers = 1
hidden = 8
[[study]]
datasets = ["csv"]
protocols = ["iid"]
encoders = ["gin"]
[study.params.dataset.csv]
path = "{first}"
targets = ["gap"]
name = "first"
[[study]]
datasets = ["csv"]
protocols = ["iid"]
encoders = ["gin"]
[study.params.dataset.csv]
path = "{second}"
targets = ["gap"]
name = "second"
"""
    store, out = tmp_path / "store", tmp_path / "lb"
    args = ["run", "--grid", str(_grid(tmp_path, body)), "--store", str(store), "--leaderboard-out", str(out)]
    args += ["--jobs", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = Store(store).runs()
    assert len({r["run_id"] for r in runs}) == 2
    assert (out / "csv-first__gap__iid.md").exists() and (out / "csv-second__gap__iid.md").exists()
    caches = sorted(
        p.name.split("-")[1] for p in (tmp_path / "cache" / "csv").glob("*.npz") if "scaffold" not in p.name
    )
    assert caches == ["first", "second"]


def test_the_cache_follows_the_file_content(synthetic_env, tmp_path):
    path = write_csv(tmp_path / "m.csv", qm9_rows(30))
    data = CsvDataset(path=str(path), targets=["gap"])
    data.check_available()
    before = data._graph_file()
    again = CsvDataset(path=str(path), targets=["gap"])
    assert again._graph_file() == before and again.arrays().num_graphs == 30  # read from the cache
    write_csv(path, qm9_rows(31))
    changed = CsvDataset(path=str(path), targets=["gap"])
    assert changed._graph_file() != before and changed.arrays().num_graphs == 31


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


GOOD = "smiles,y\nCCO,1.0\nCCN,2.0\nCCC,3.0\n"


@pytest.mark.parametrize(
    "text, params, message",
    [
        (GOOD, {"smiles_column": "SMILES"}, "no column 'SMILES' (smiles_column); the columns are ['smiles', 'y']"),
        (GOOD, {"targets": ["z"]}, "no column 'z' (targets)"),
        ("smiles,name\nCCO,ethanol\n", {}, "no numeric target column besides 'smiles'"),
        (
            "smiles,y\nCCO,1.0\nCCN,high\n",
            {"targets": ["y"]},
            "target column 'y' is not numeric: 'high' at row 1 (line 3)",
        ),
        ("smiles,y\nCCO,1.0\nCCN,inf\n", {}, "target column 'y' is infinite at row 1 (line 3)"),
        (GOOD.replace("y\n", "y,s\n").replace("0\n", "0,train\n"), {"split_column": "s"}, "has no valid or test row"),
        ("smiles,y,s\nCCO,1,train\nCCN,2,dev\n", {"split_column": "s"}, "holds 'dev' at row 1 (line 3); allowed:"),
        ("smiles,y,id\nCCO,1,a\nCCN,2,a\n", {"id_column": "id"}, "id column 'id' repeats the id 'a'"),
        ("smiles,y,id\nCCO,1,a\nCCN,2,\n", {"id_column": "id"}, "id column 'id' is empty at row 1 (line 3)"),
        (GOOD, {"metric": {"y": "accuracy"}}, "unknown metric 'accuracy' for task 'y'"),
        (GOOD, {"metric": {"y": "rocauc"}}, "metric 'rocauc' does not apply to regression task 'y'"),
        (GOOD, {"kind": {"y": "classification"}}, "task 'y' is declared classification but its labels are not all 0/1"),
        (GOOD, {"kind": {"y": "ordinal"}}, "kind must be 'regression' or 'classification', got 'ordinal'"),
        (GOOD, {"unit": {"z": "eV"}}, "unit names unknown task(s) ['z']; the tasks are ['y']"),
        (GOOD, {"targets": ["y", "smiles"]}, "column(s) ['smiles'] cannot be targets"),
        (GOOD, {"name": "my data"}, "name 'my data' must start with a letter or digit"),
        ("", {}, "not a readable CSV file"),
        ("smiles,y\n", {}, "the file has no data rows"),
        ("smiles,y\nC1CC,1.0\nc1cccc1,2\nCCO,\n", {}, "no molecule is left to use: 3 of 3 rows skipped"),
    ],
)
def test_bad_input_is_one_clear_line(synthetic_env, tmp_path, text, params, message):
    with pytest.raises(PluginError) as error:
        CsvDataset(path=_write(tmp_path, text), **params).check_available()
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "bad.csv" in str(error.value) or "name" in params


def test_a_missing_file_or_path_fails_planning_with_exit_code_2(synthetic_env, tmp_path):
    with pytest.raises(DataUnavailable, match="there is no file .*nowhere.csv"):
        CsvDataset(path=str(tmp_path / "nowhere.csv")).check_available()
    with pytest.raises(PluginError, match="cannot read .*: Is a directory"):
        CsvDataset(path=str(tmp_path)).check_available()
    cases = [  # a missing file skips the dataset's runs: nothing is left to run
        ({"path": str(tmp_path / "nowhere.csv")}, "every combination is skipped:\n  dataset 'csv' is not available"),
        ({}, "dataset 'csv': dataset 'csv' needs the parameter path"),
        ({"path": str(tmp_path), "targets": "gap"}, "targets must be a list of str values"),
        ({"path": str(tmp_path), "workers": 0}, "workers must be an integer >= 1"),
        ({"path": str(tmp_path), "unit": "eV"}, "unit must be a dict or null, got str 'eV'"),
    ]
    for params, message in cases:
        table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in params.items())
        body = (
            f'[params.dataset.csv]\n{table}\n[[study]]\ndatasets = ["csv"]\nprotocols = ["iid"]\nencoders = ["gin"]\n'
        )
        result = runner.invoke(app, ["run", "--grid", str(_grid(tmp_path, body)), "--store", str(tmp_path / "s")])
        assert result.exit_code == 2 and message in result.output, result.output


def test_a_csv_edited_in_place_gets_new_run_ids(mols, tmp_path):
    from benchbase.contract.registry import default_registry
    from benchbase.running.planning import load_grid

    grid = _grid(tmp_path, GRID.format(path=mols))
    before = {run.run_id for run in load_grid(default_registry(), grid).runs}
    lines = mols.read_text().splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("gap")] = "9.99999"  # one label changed, same path, same parameters
    mols.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    from benchbase.compute import loading

    loading._datasets.clear()  # a new invocation builds the dataset afresh
    after = {run.run_id for run in load_grid(default_registry(), grid).runs}
    assert before.isdisjoint(after)  # the data is part of every run's identity


def _dry_run(tmp_path: Path, data: bytes, params: dict, name: str = "mols.csv") -> Any:
    path = tmp_path / name
    path.write_bytes(data)
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in {"path": str(path), **params}.items())
    body = f'[params.dataset.csv]\n{table}\n[[study]]\ndatasets = ["csv"]\nprotocols = ["iid"]\nencoders = ["gin"]\n'
    return runner.invoke(
        app, ["run", "--grid", str(_grid(tmp_path, body)), "--store", str(tmp_path / "s"), "--dry-run"]
    )


ESOL = "smiles,logSolubility,logP\nCCO,-0.77,0.1\nc1ccccc1,-1.64,2.1\nCCN,0.5,-0.1\nCCCO,-0.1,0.3\n"


@pytest.mark.parametrize(
    "data, params, message",
    [
        # a bad cell in a second, inferred target column: reported, not the column silently dropped
        (
            ESOL.replace("2.1", "n.d.").encode(),
            {},
            "column 'logP' holds numbers but 'n.d.' at row 1 (line 3); correct the cell, or name the targets",
        ),
        # ... and in a second declared one, like the first
        (
            ESOL.replace("2.1", "n.d.").encode(),
            {"targets": ["logSolubility", "logP"]},
            "target column 'logP' is not numeric: 'n.d.' at row 1 (line 3)",
        ),
        # a repeated header: rejected at planning, not a KeyError in every run
        (
            ESOL.replace("logP", "logSolubility").encode(),
            {},
            "the header repeats column 'logSolubility' (columns 2, 3); give each column its own name",
        ),
        # a separator the sniffer cannot see and a wrong declared one: what to set
        (
            ESOL.replace(",", ";").encode(),
            {"delimiter": ","},
            'the header has one column only: set delimiter = ";" (or the file\'s separator)',
        ),
        (ESOL.encode("utf-16"), {}, "not UTF-8 text (byte 0xff at offset 0); save the file as UTF-8 CSV"),
        (gzip.compress(ESOL.encode())[:30], {}, "a damaged gzip file"),
        (ESOL.encode(), {"delimiter": ";;"}, "delimiter must be one character, got ';;'"),
    ],
    ids=[
        "inferred-target",
        "declared-target",
        "duplicate-header",
        "wrong-delimiter",
        "utf16",
        "damaged-gzip",
        "long-delimiter",
    ],  # fmt: skip
)
def test_bad_csv_files_stop_planning_with_one_line(synthetic_env, tmp_path, data, params, message):
    result = _dry_run(tmp_path, data, params)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "data, params, name",
    [
        (ESOL.replace(",", ";").encode(), {}, "mols.csv"),  # semicolons, found in the header
        (ESOL.replace(",", "\t").encode(), {"delimiter": "\t"}, "mols.tsv"),
        (gzip.compress(ESOL.encode()), {}, "mols.csv.gz"),  # gzip, read as is
    ],
    ids=["semicolon", "tab", "gzip"],
)
def test_semicolon_tab_and_gzip_files_are_read(synthetic_env, tmp_path, data, params, name):
    result = _dry_run(tmp_path, data, params, name)
    assert result.exit_code == 0 and "total: 1 runs" in result.output, result.output
    dataset = CsvDataset(path=str(tmp_path / name), **params)
    assert [t.name for t in dataset.tasks] == ["logSolubility", "logP"] and dataset.name == "csv/mols"
    assert dataset._table().labels["logP"].tolist() == [0.1, 2.1, -0.1, 0.3]
