"""The grid's ``[analysis]`` and ``[[question]]``: checked at planning against the expanded runs,
through the real CLI (``--dry-run`` exits 2 with one line naming file, table and key); budgets,
ROPEs, and stored declarations read back without failing."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.contract.api import Column, TaskInfo
from benchbase.contract.errors import GridError
from benchbase.running.analysis import (
    ROPE_FROM_GRID,
    ROPE_NONE,
    Budget,
    in_task_unit,
    load_declarations,
    parse_budget,
    rope_for,
)

runner = CliRunner()

#: A small QM9 grid: two protocols, two pretext tasks, a rebalancer and a pool sweep, one seed.
GRID = """
name = "analysis-test"
seeds = [0]
[params.dataset."qm9/homo_lumo_gap"]
subset = 300
[[study]]
datasets = ["qm9/homo_lumo_gap"]
protocols = ["extrapolation-threshold"]
encoders = ["gin"]
pretext = ["none", "node-masking"]
[study.sweep]
"train.pretrain_pool" = ["all", "train"]
[[study]]
datasets = ["qm9/homo_lumo_gap"]
protocols = ["imbalance"]
encoders = ["gin"]
pretext = ["node-masking"]
rebalancers = ["none", "focal"]
[study.train]
pretrain_pool = "train"
"""

ANALYSIS = """
[analysis]
rope = { mae = 0.01, test_spearman = 0.01, balanced_acc = 0.01 }
baselines = { "train.pretrain_pool" = "train" }
[analysis.until_decided]
round = 2
max_seeds = 10
budget = "1.5h"
"""

QUESTION_A = """
[[question]]
id = "a"
title = "Does pretraining help extrapolation?"
protocol = "extrapolation-threshold"
factor = "pretext"
baseline = "none"
metrics = ["test_mae", "test_spearman"]
where = { "train.pretrain_pool" = "train" }
"""

QUESTION_D = """
[[question]]
id = "d"
title = "Does re-weighting help the masking task on rare elements?"
protocol = "imbalance"
factor = "rebalancer"
baseline = "none"
treatments = ["focal"]
metrics = ["pretext_balanced_acc", "rare_mae"]
"""


def _dry_run(tmp_path, text: str):
    grid = tmp_path / "bad.toml"
    grid.write_text(GRID + text)
    return runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(tmp_path / "store")])


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # one line, no traceback
    assert lines[0].startswith("error: ") and "bad.toml" in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_well_formed_declarations_pass_and_are_kept(tmp_path):
    from benchbase.contract.registry import default_registry
    from benchbase.running.planning import load_grid

    result = _dry_run(tmp_path, ANALYSIS + QUESTION_A + QUESTION_D)
    assert result.exit_code == 0, result.output
    grid = load_grid(default_registry(), tmp_path / "bad.toml")
    assert [q["id"] for q in grid.questions] == ["a", "d"]
    assert grid.analysis["rope"] == {"mae": 0.01, "test_spearman": 0.01, "balanced_acc": 0.01}
    assert grid.analysis["until_decided"] == {"round": 2, "max_seeds": 10, "budget": "1.5h"}


BAD_CASES = {
    "misspelt metric": (
        QUESTION_A.replace('"test_spearman"]', '"test_spearmann"]'),
        "[[question]] 1 (id 'a'): metrics: 'test_spearmann' is not a column of its tables",
        "'test_spearman'",  # the known columns are listed
    ),
    "metric name instead of a column": (
        QUESTION_D.replace('"rare_mae"', '"mae"'),
        "[[question]] 1 (id 'd'): metrics: 'mae' is not a column of its tables (a question's metrics are full",
        "'rare_mae'",
    ),
    "missing factor": (
        QUESTION_A.replace('factor = "pretext"\n', ""),
        "[[question]] 1 (id 'a'): factor is missing",
        "'train.<setting>'",
    ),
    "misspelt baseline": (
        QUESTION_A.replace('baseline = "none"', 'baseline = "nnone"'),
        "[[question]] 1 (id 'a'): baseline: no run the question is about (protocol 'extrapolation-threshold') "
        'has pretext = "nnone"',
        'its values there: ["node-masking", "none"]',
    ),
    "misspelt treatment": (
        QUESTION_D.replace('["focal"]', '["focall"]'),
        "[[question]] 1 (id 'd'): treatments: no run the question is about (protocol 'imbalance') "
        'has rebalancer = "focall"',
        '["focal", "none"]',
    ),
    "unknown factor setting": (
        QUESTION_A.replace('factor = "pretext"', 'factor = "train.pretrain_poool"'),
        "[[question]] 1 (id 'a'): factor 'train.pretrain_poool': unknown training setting 'pretrain_poool'",
        "'pretrain_pool'",
    ),
    "factor not a kind": (
        QUESTION_A.replace('factor = "pretext"', 'factor = "protocol"'),
        "[[question]] 1 (id 'a'): factor must be a plugin kind (encoder, pretext, rebalancer)",
        "'protocol'",
    ),
    "unknown plugin parameter": (
        QUESTION_A.replace('factor = "pretext"', 'factor = "encoder.params.hiden"'),
        "[[question]] 1 (id 'a'): factor: no run the question is about (protocol 'extrapolation-threshold') "
        "has encoder parameter 'hiden'",
        "'hidden'",
    ),
    "baseline and ladder": (
        QUESTION_A.replace('baseline = "none"', 'baseline = "none"\nladder = ["none", "node-masking"]'),
        "[[question]] 1 (id 'a'): needs exactly one of baseline",
        "ladder",
    ),
    "short ladder": (
        QUESTION_A.replace('baseline = "none"', 'ladder = ["none"]'),
        "[[question]] 1 (id 'a'): ladder must be a list of at least 2 values",
        "['none']",
    ),
    "misspelt protocol": (
        QUESTION_A.replace('protocol = "extrapolation-threshold"', 'protocol = "extrapolation"'),
        "[[question]] 1 (id 'a'): protocol: 'extrapolation' is not a protocol of the grid's studies",
        "'imbalance'",
    ),
    "unknown task": (
        QUESTION_A.replace('factor = "pretext"', 'task = "gap"\nfactor = "pretext"'),
        "[[question]] 1 (id 'a'): task: 'gap' is not a task of its datasets",
        "['homo_lumo_gap']",
    ),
    "unknown where key": (
        QUESTION_A.replace('"train.pretrain_pool" = "train"', '"train.pool" = "train"'),
        "[[question]] 1 (id 'a'): where: no run the question is about (protocol 'extrapolation-threshold') "
        "has the setting 'train.pool'",
        "'train.pretrain_pool'",
    ),
    "unknown question key": (
        QUESTION_A.replace('factor = "pretext"', 'factor = "pretext"\nmetric = ["test_mae"]'),
        "[[question]] 1 (id 'a'): unknown key(s) ['metric']; known:",
        "'metrics'",
    ),
    "duplicate question ids": (
        QUESTION_A + QUESTION_D.replace('id = "d"', 'id = "a"'),
        "[[question]] 2 (id 'a'): id 'a' is already the id of [[question]] 1; ids must be unique",
        "",
    ),
    "rope not a table": (
        "[analysis]\nrope = 5\n",
        "[analysis]: rope must be a table of metric or column name -> non-negative number",
        "got 5",
    ),
    "negative rope": (
        "[analysis]\nrope = { mae = -0.01 }\n",
        "[analysis]: rope.mae must be a non-negative number (in the metric's units), got -0.01",
        "",
    ),
    "unknown rope metric": (
        "[analysis]\nrope = { maee = 0.01 }\n",
        "[analysis]: rope.maee: 'maee' is neither a metric nor a column of the grid's tables",
        "'mae'",
    ),
    "unknown analysis key": (
        "[analysis]\nropes = { mae = 0.01 }\n",
        "[analysis]: unknown key(s) ['ropes']; known: ['rope', 'baselines', 'until_decided', 'metrics']",
        "",
    ),
    "misspelt analysis baseline": (
        '[analysis]\nbaselines = { "train.pretrain_pool" = "trian" }\n',
        '[analysis]: baselines."train.pretrain_pool": baseline: no run of the grid has train.pretrain_pool = "trian"',
        '["all", "train"]',
    ),
    "until_decided round 0": (
        "[analysis.until_decided]\nround = 0\n",
        "[analysis]: until_decided.round (seeds added per round) must be an integer >= 1, got 0",
        "",
    ),
    "until_decided max_seeds not an integer": (
        '[analysis.until_decided]\nmax_seeds = "ten"\n',
        "[analysis]: until_decided.max_seeds (seeds per row at most) must be an integer >= 1, got 'ten'",
        "",
    ),
    "until_decided bad budget": (
        '[analysis.until_decided]\nbudget = "8 parsecs"\n',
        "[analysis]: until_decided.budget must be a number of runs (an integer >= 1, e.g. 200) or a duration",
        "got '8 parsecs'",
    ),
    "until_decided unknown key": (
        "[analysis.until_decided]\nrounds = 2\n",
        "[analysis]: until_decided: unknown key(s) ['rounds']; known: ['round', 'max_seeds', 'budget']",
        "",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
@pytest.mark.slow
def test_bad_declarations_fail_the_dry_run_with_one_line(tmp_path, case):
    text, expected, listed = BAD_CASES[case]
    line = _error_line(_dry_run(tmp_path, text))
    assert f"bad.toml {expected}" in line, line
    assert listed in line, line


def test_parse_budget_runs_and_durations():
    assert parse_budget(200) == Budget(runs=200)
    assert parse_budget("200") == Budget(runs=200)
    assert parse_budget("90s") == Budget(seconds=90.0)
    assert parse_budget("8m") == Budget(seconds=480.0)
    assert parse_budget("1.5h") == Budget(seconds=5400.0)
    assert parse_budget(" 2 H ") == Budget(seconds=7200.0)
    assert str(parse_budget("1.5h")) == "90m" and str(parse_budget("2h")) == "2h" and str(Budget(runs=3)) == "3 runs"
    for bad in (0, -3, True, 1.5, "0", "0s", "1.5", "8 parsecs", "h", "", "1e3s", None):
        with pytest.raises(GridError, match=r"--budget must be a number of runs .* or a duration .* 90s, 8m, 1.5h"):
            parse_budget(bad, "--budget")  # type: ignore[arg-type]


def test_rope_for_grid_then_dataset_default_then_none():
    gap = TaskInfo("homo_lumo_gap", unit="eV", rope=0.0433641, rope_reason="chemical accuracy")
    analysis = {"rope": {"mae": 0.01, "test_spearman": 0.02}}
    assert rope_for(analysis, "test_mae", "mae", gap, True) == (0.01, ROPE_FROM_GRID)
    assert rope_for(analysis, "test_spearman", "spearman", gap, False) == (0.02, ROPE_FROM_GRID)
    assert rope_for({"rope": {"test_mae": 0.03, "mae": 0.01}}, "test_mae", "mae", gap, True) == (0.03, ROPE_FROM_GRID)
    assert rope_for({}, "rare_mae", "mae", gap, True) == (0.0433641, "dataset default (chemical accuracy)")
    assert rope_for({}, "test_spearman", "spearman", gap, False) == (0.0, ROPE_NONE)
    assert rope_for({}, "test_mae", "mae", TaskInfo("mu", unit="D"), True) == (0.0, ROPE_NONE)
    assert rope_for({}, "test_mae", "mae", None, True) == (0.0, ROPE_NONE)
    # a ratio of two MAEs is not in eV: neither the metric's grid ROPE nor the task's applies
    assert rope_for(analysis, "mae_ratio", "mae", gap, False) == (0.0, ROPE_NONE)
    assert rope_for({"rope": {"mae_ratio": 0.05}}, "mae_ratio", "mae", gap, False) == (0.05, ROPE_FROM_GRID)
    # malformed stored values are passed over, never raised
    assert rope_for({"rope": {"mae": "x"}}, "test_mae", "mae", gap, True)[1].startswith("dataset default")
    assert rope_for({"rope": 5}, "test_mae", "mae", None, True) == (0.0, ROPE_NONE)
    assert in_task_unit(Column("rare", "mae")) and in_task_unit(Column("test", "rmse"))
    assert not in_task_unit(Column("test", "mae", per="test_id")) and not in_task_unit(Column("test", "spearman"))


def test_qm9_energies_declare_chemical_accuracy():
    from benchbase_molecules.qm9 import TASKS

    ropes = {t.name: (t.rope, t.rope_reason) for t in TASKS}
    for energy in ("homo", "lumo", "homo_lumo_gap", "u0", "u", "h", "g"):
        assert ropes[energy] == (pytest.approx(4.184 / 96.485332, abs=1e-7), "chemical accuracy")
    for other in ("mu", "alpha", "r2", "zpve", "cv"):
        assert ropes[other] == (None, "")


def test_stored_declarations_read_back_without_failing():
    analysis, questions, problems = load_declarations(
        {"rope": {"mae": 0.01, "spearman": -1}, "baselines": 5, "until_decided": {"round": 0}, "extra": 1},
        [
            {"id": "ok", "title": "t", "factor": "pretext", "baseline": "none", "metrics": ["test_mae"]},
            {"id": "no-factor", "title": "t", "baseline": "none", "metrics": ["test_mae"]},
            {"id": "ok", "title": "again", "factor": "pretext", "baseline": "none", "metrics": ["test_mae"]},
            "not a table",
        ],
        source="quick",
    )
    assert analysis == {"rope": {"mae": 0.01}, "baselines": {}}
    assert [q["title"] for q in questions] == ["t"]
    assert len(problems) == 7 and all(p.startswith("quick [") for p in problems), problems
    assert any("[[question]] 2 (id 'no-factor'): factor is missing" in p for p in problems)
    assert any("[[question]] 3 (id 'ok'): id 'ok' is already the id" in p for p in problems)
    assert load_declarations(None, None) == ({}, [], [])
    assert load_declarations(5, {"id": "a"})[2] == [
        "[analysis] must be a table with keys ['rope', 'baselines', 'until_decided', 'metrics'], got 5",
        "[[question]] must be an array of tables ([[question]] blocks), got {'id': 'a'}",
    ]


@pytest.mark.slow
def test_checks_that_need_an_unavailable_datasets_runs_are_left_out(tmp_path):
    """A dataset whose data is not on this machine is skipped; a question that may be about its runs
    cannot be checked against them, while one about the available dataset still is."""
    missing = tmp_path / "not-here.csv"
    study = f"""
[[study]]
datasets = ["csv"]
protocols = ["extrapolation-threshold"]
encoders = ["gin"]
[study.params.dataset.csv]
path = "{missing}"
targets = ["gap"]
name = "lab"
"""
    about_any = QUESTION_A.replace('"test_spearman"]', '"test_spearmann"]')
    result = _dry_run(tmp_path, study + "[analysis]\nrope = { maee = 0.01 }\n" + about_any)
    assert result.exit_code == 0, result.output
    assert "is not available" in result.output  # the csv runs are skipped, saying why
    about_qm9 = about_any.replace('factor = "pretext"', 'dataset = "qm9/homo_lumo_gap"\nfactor = "pretext"')
    line = _error_line(_dry_run(tmp_path, study + about_qm9))
    assert "[[question]] 1 (id 'a'): metrics: 'test_spearmann' is not a column of its tables" in line
    line = _error_line(_dry_run(tmp_path, study + about_qm9.replace('"qm9/homo_lumo_gap"', '"qm9/gap"')))
    assert (
        "dataset: 'qm9/gap' is not a dataset of the grid's studies; datasets: ['csv/lab', 'qm9/homo_lumo_gap']" in line
    )
