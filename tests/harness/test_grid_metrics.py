"""Third-party metrics reach the tables: ``[analysis] metrics`` adds a registered metric (here the
synthetic plugin's ``max_error``) to every table of the grid, each column once, through the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchbase.cli import app

runner = CliRunner()

GRID = """
seeds = [0]
[train]
epochs = 2
batch_size = 32
[analysis]
metrics = {metrics}
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
"""


@pytest.mark.slow
def test_a_plugin_metric_is_added_to_a_builtin_protocols_table_once(synthetic_env, tmp_path):
    grid, out = tmp_path / "grid.toml", tmp_path / "lb"
    grid.write_text(GRID.format(metrics='["max_error", "mae"]'))  # mae is the headline already
    args = ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    header = next(
        line for line in (out / "synthetic-chains__count__iid.md").read_text().splitlines() if line.startswith("| rank")
    )
    cells = [c.strip().split(" ")[0] for c in header.split("|") if c.strip()]
    assert cells.count("test_mae") == 1 and cells.count("test_max_error") == 1, header


def test_an_unknown_metric_stops_planning(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.format(metrics='["max_eror"]'))
    result = runner.invoke(app, ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--dry-run"])
    assert result.exit_code == 2 and "[analysis]: metrics: unknown metric 'max_eror'" in result.output, result.output


def _columns(table: str) -> list[str]:
    header = next(line for line in table.splitlines() if line.startswith("| rank"))
    return [c.strip().split(" ")[0] for c in header.split("|") if c.strip()]


@pytest.mark.slow
def test_a_studys_metrics_reach_the_tables_of_its_runs_only(synthetic_env, tmp_path):
    grid, out = tmp_path / "grid.toml", tmp_path / "lb"
    grid.write_text(
        "seeds = [0]\n[train]\nepochs = 2\nbatch_size = 32\n"
        '[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
        'metrics = ["max_error"]\n'
        '[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["extrapolation-threshold"]\nencoders = ["tiny"]\n'
    )
    args = ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "test_max_error" in _columns((out / "synthetic-chains__count__iid.md").read_text())
    assert "test_max_error" not in _columns((out / "synthetic-chains__count__extrapolation-threshold.md").read_text())
    grid.write_text(grid.read_text().replace('"max_error"', '"max_eror"'))
    dry = runner.invoke(app, ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--dry-run"])
    assert dry.exit_code == 2 and "[[study]] 1: metrics: unknown metric 'max_eror'" in dry.output, dry.output
