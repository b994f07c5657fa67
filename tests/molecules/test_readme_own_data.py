"""The README's "Your own data" examples work as written: its grid files run (on a small CSV of QM9
molecules and a small FakeDataset), and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from qm9_csv import qm9_rows, write_csv
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.running.store import Store

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Your own data") :].split("\n## ", 1)[0]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), re.S)


#: Appended to the README's grids: smaller training, so that the test is quick; their data and
#: studies run as written.
QUICK = """
[train]
epochs = 2
pretrain_epochs = 1
[params.encoder.gin]
layers = 2
hidden = 16
"""
#: Only for a grid that uses gcn: parameters of an encoder that no study uses are refused.
QUICK_GCN = """
[params.encoder.gcn]
layers = 2
hidden = 16
"""


def _run(grid: str, tmp_path: Path) -> list[dict]:
    (tmp_path / "grid.toml").write_text(grid + QUICK + (QUICK_GCN if '"gcn"' in grid else ""))
    args = ["run", "--grid", "grid.toml", "--store", "store", "--jobs", "1", "--leaderboard-out", "lb"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return Store(tmp_path / "store").runs()


@pytest.mark.slow
def test_the_csv_grid_runs_as_written(synthetic_env, tmp_path, monkeypatch):
    csv_grid, _ = _blocks("toml")
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "molecules.csv", qm9_rows(40), columns=["smiles", "gap"])
    runs = _run(csv_grid, tmp_path)
    assert len(runs) == 6 and all(r["status"] == "finished" for r in runs)
    assert (tmp_path / "lb" / "csv-molecules__gap__scaffold.md").exists()


@pytest.mark.slow
def test_the_pyg_grid_runs_as_written(synthetic_env, tmp_path, monkeypatch):
    _, pyg_grid = _blocks("toml")
    monkeypatch.chdir(tmp_path)
    runs = _run(pyg_grid, tmp_path)
    assert {r["spec"]["encoder"]["name"] for r in runs} == {"gin", "gcn"}
    assert all(r["status"] == "finished" for r in runs)


def test_the_plugin_commands_are_the_ones_the_suite_tests():
    (commands,) = _blocks("bash")
    lines = [line.split("#")[0].strip() for line in commands.strip().splitlines()]
    # tests/harness/test_new_plugin.py runs these steps: generate in an empty directory, install, run its tests
    assert lines == [
        "benchbase new-plugin acme",
        "pip install -e benchbase-acme",
        "cd benchbase-acme && python -m pytest -q",
    ]
