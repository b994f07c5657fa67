"""The compatibility policy, through the real CLI: a plugin written against the contract's older
forms loads with a DeprecationWarning and runs; what a combination needs is checked at planning
and becomes a skip with its reason, never a failed run."""

from __future__ import annotations

import importlib
import sys

import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.contract.registry import reset_default_registry
from benchbase.running.store import Store

runner = CliRunner()


@pytest.fixture
def old_env(synthetic_env, monkeypatch):
    monkeypatch.setenv("BENCHBASE_EXTRA_PLUGINS", "synthetic_plugin,old_contract_plugin")
    reset_default_registry()
    yield
    reset_default_registry()


def test_old_forms_load_with_a_deprecation_warning_naming_the_new_form_and_the_release():
    sys.modules.pop("old_contract_plugin", None)
    with pytest.warns(DeprecationWarning) as caught:
        module = importlib.import_module("old_contract_plugin")
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert any(
        "OldIID: report(task, predictions, dataset, split) is deprecated and removed in contract 2.0; use "
        "report(..., split, pretrain_pool=None)" in m
        for m in messages
    ), messages
    assert any("leaderboard_metrics" in m and "use leaderboard_columns(task) -> [Column]" in m for m in messages)
    columns = module.OldIID().leaderboard_columns(None)
    assert [(c.slice, c.metric) for c in columns] == [("test", "mae"), ("test", "rmse")]


@pytest.mark.slow
def test_an_old_protocol_runs_and_reaches_its_leaderboard(old_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'seeds = [0]\n[train]\nepochs = 2\nbatch_size = 32\n[[study]]\ndatasets = ["synthetic/chains"]\n'
        'protocols = ["old-iid"]\nencoders = ["tiny"]\npretext = ["none", "tiny-masking"]\n'
    )
    out = tmp_path / "lb"
    args = ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = Store(tmp_path / "s").runs()
    assert [r["status"] for r in runs] == ["finished", "finished"], [r.get("error") for r in runs]
    table = (out / "synthetic-chains__count__old-iid.md").read_text()
    assert "test_rmse" in table, table


def test_capabilities_are_checked_at_planning_and_skipped_with_reasons(old_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'seeds = [0]\n[[study]]\ndatasets = ["old/no-smiles"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
        'pretext = ["smiles-masking", "tiny-masking"]\n'
        '[[study]]\ndatasets = ["old/class-chains", "synthetic/chains"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
        'pretext = ["none", "tiny-masking"]\nrebalancers = ["single-label-only"]\n'
    )
    dry = runner.invoke(app, ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        "pretext 'smiles-masking' needs smiles(), which dataset 'old/no-smiles' declares ('smiles') but does not "
        "define" in dry.output
    ), dry.output
    reason = "rebalancer 'single-label-only' does not support multi-label losses, which the classification tasks"
    assert dry.output.count(reason) == 2, dry.output  # class-chains, with and without pretraining
    # what it can take still runs: a multiclass pretext loss on a regression dataset
    assert "total: 2 runs" in dry.output, dry.output


@pytest.mark.slow
def test_the_cli_shows_an_old_plugins_deprecations(synthetic_env):
    import os
    import subprocess

    env = {**os.environ, "BENCHBASE_EXTRA_PLUGINS": "synthetic_plugin,old_contract_plugin"}
    env.pop("PYTHONWARNINGS", None)
    listing = subprocess.run(
        [sys.executable, "-m", "benchbase.cli", "plugins"], env=env, capture_output=True, text=True, timeout=300
    )
    assert listing.returncode == 0, listing.stderr
    assert "old_contract_plugin.py:" in listing.stderr and "removed in contract 2.0" in listing.stderr, listing.stderr
    assert "old-iid" in listing.stdout
