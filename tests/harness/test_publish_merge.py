"""`benchbase run` never deletes or rewrites a leaderboard file it has no runs for: run in a folder
that holds another store's tables (the committed leaderboards, from a clone's root), it writes its
own tables and leaves the others, their plots, the index and FINDINGS.md as they were."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.reporting.tables import HEADER

runner = CliRunner()

GRID = """
seeds = [0]
[train]
epochs = 2
batch_size = 32
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
"""


@pytest.mark.slow
def test_a_run_merges_into_a_folder_of_tables_it_has_no_runs_for(synthetic_env, tmp_path):
    out = tmp_path / "leaderboards"
    (out / "plots").mkdir(parents=True)
    committed = {
        "glass-botan__propensity__glass-time.md": (HEADER + "# glass table\n").encode(),
        "plots/glass-botan__propensity__glass-time__curve.png": b"\x89PNG not really",
        "FINDINGS.md": b"# Findings\n\n## The glass question\n",
        "README.md": (HEADER + "# benchbase leaderboards\n").encode(),
        "results.jsonl": b'{"run_id": "elsewhere"}\n',
    }
    for name, data in committed.items():
        (out / name).write_bytes(data)
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    args = ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--jobs", "1", "--leaderboard-out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {name: (out / name).read_bytes() for name in committed} == committed  # untouched, byte for byte
    assert (out / "synthetic-chains__count__iid.md").read_text().startswith(HEADER)  # its own table, written
    assert "1 tables this store has no runs for, the index and FINDINGS.md left as they were" in result.output


@pytest.mark.slow
def test_a_folder_of_its_own_is_written_whole(synthetic_env, tmp_path):
    out = tmp_path / "lb"
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    args = ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--jobs", "1", "--leaderboard-out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    assert {"README.md", "FINDINGS.md", "results.jsonl", "synthetic-chains__count__iid.md"} <= {
        p.name for p in out.iterdir()
    }
