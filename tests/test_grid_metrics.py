"""Third-party metrics reach the tables: ``[analysis] metrics`` adds a registered metric (here the
synthetic plugin's ``max_error``) to every table of the grid, each column once, through the CLI."""

from __future__ import annotations

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
