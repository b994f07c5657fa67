"""The smaller commands (protocols, split, datasets) and the default grid through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from benchbase.cli import app

runner = CliRunner()


def test_protocols_lists_parameters_and_defaults():
    result = runner.invoke(app, ["protocols", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"iid", "extrapolation-threshold", "extrapolation-tails", "size", "scaffold", "imbalance"} <= set(rows)
    assert rows["extrapolation-threshold"]["params"]["quantile"] == 0.8
    text = runner.invoke(app, ["protocols"]).output
    assert "quantile = 0.8" in text and "pretrain_pool" not in text  # a training setting now


def test_split_writes_native_ids(synthetic_env, tmp_path):
    out = tmp_path / "split.json"
    args = ["split", "synthetic/chains", "--protocol", "extrapolation-threshold", "--param", "quantile=0.5"]
    result = runner.invoke(app, [*args, "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    split = json.loads(out.read_text())
    assert {"train", "valid", "test", "test_id"} <= set(split)
    everything = [i for part in split.values() for i in part]
    assert len(everything) == len(set(everything)) == 120 and min(everything) >= 1000  # native ids
    bad = runner.invoke(app, [*args[:4], "--param", "quantiel=0.5", "--out", str(out)])
    assert bad.exit_code == 2 and "quantiel" in bad.output


def test_datasets_lists_tasks_and_availability():
    result = runner.invoke(app, ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert "homo_lumo_gap" in str(rows["qm9/homo_lumo_gap"].get("tasks"))
    assert "ogbg-molhiv" in rows and "pcqm4mv2" in rows and "glass/botan" in rows


def test_default_grid_dry_run_covers_the_study():
    result = runner.invoke(app, ["run", "--grid", "--dry-run", "--store", "/nonexistent-store"])
    assert result.exit_code == 0, result.output
    assert "grid 'quick'" in result.output and "seeds [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in result.output
    for name in ("extrapolation-threshold", "imbalance", "node-masking", "motif", "inverse-frequency", "focal"):
        assert name in result.output
    assert "(pool train)" in result.output  # the pretraining-pool study
    # Shown (and recorded in the store, hence in FINDINGS.md) by its repository name, not by where
    # this checkout happens to live.
    assert "from grids/quick.toml," in result.output


def test_a_grid_on_absent_data_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path / "cache"))
    grid = tmp_path / "grid.toml"
    grid.write_text('[[study]]\ndatasets = ["ogbg-molhiv"]\nprotocols = ["iid"]\nencoders = ["gin"]\n')
    result = runner.invoke(app, ["run", "--grid", str(grid), "--store", str(tmp_path / "store")])
    assert result.exit_code == 2
    assert "nothing to run" in result.output and "ogbg-molhiv" in result.output
    assert str(tmp_path / "cache" / "ogb" / "ogbg_molhiv") in result.output
    assert "Traceback" not in result.output
