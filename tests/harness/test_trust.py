"""Results that reproduce and say what is real, through the real CLI: `reproduce`, kept and
exported predictions, `collect`, and leaderboards whose comparisons find a planted effect and
nothing where there is none."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.compute.metrics import get_metric
from benchbase.compute.runspec import RunSpec
from benchbase.compute.settings import PROFILES
from benchbase.contract.api import Predictions
from benchbase.contract.registry import default_registry
from benchbase.reporting.publish import write_leaderboards
from benchbase.running.planning import make_spec
from benchbase.running.store import FINISHED, Store, read_predictions, write_predictions

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _run_grid(grid, store, out):
    result = invoke("run", "--grid", grid, "--store", store, "--leaderboard-out", out, "--jobs", "1")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_reproduce_passes_on_its_own_export_and_fails_on_a_doctored_one(synthetic_env, synthetic_grid, tmp_path):
    out = tmp_path / "lb"
    rows = _run_grid(synthetic_grid, tmp_path / "store", out)
    result = invoke("reproduce", "--from", out / "results.jsonl", "--sample", "2")
    assert result.exit_code == 0, result.output
    assert "2 of 2 run(s) reproduced within 0" in result.output
    assert result.output.count(": identical") == 2
    pretrained = [r for r in rows if r["stage_id"]][0]
    doctored = dict(pretrained, metrics={"count": {**pretrained["metrics"]["count"], "test_mae": 123.0}})
    export = tmp_path / "doctored.jsonl"
    export.write_text(json.dumps(doctored) + "\n")
    failed = invoke("reproduce", "--from", export)
    assert failed.exit_code == 1
    assert "count/test_mae: recorded 123.0" in failed.output and "0 of 1 run(s) reproduced" in failed.output
    assert invoke("reproduce", "--from", tmp_path / "missing.jsonl").exit_code == 2
    elsewhere = invoke("reproduce", "--from", out / "results.jsonl", "--dataset", "qm9")
    assert elsewhere.exit_code == 2 and "'qm9' has no finished run in the export" in elsewhere.output
    only = invoke("reproduce", "--from", out / "results.jsonl", "--dataset", "synthetic/chains", "--sample", "1")
    assert only.exit_code == 0 and "1 of 1 run(s) reproduced within 0" in only.output, only.output


@pytest.mark.slow
def test_predictions_are_kept_checksummed_and_exported(synthetic_env, synthetic_grid, tmp_path):
    store_dir = tmp_path / "store"
    _run_grid(synthetic_grid, store_dir, tmp_path / "lb")
    store = Store(store_dir)
    run = next(r for r in store.runs(FINISHED) if r["spec"]["protocol"]["name"] == "extrapolation-threshold")
    predictions = store.load_predictions(run)
    assert {"valid", "test", "test_id"} <= set(predictions)
    test = predictions["test"]["count"]
    assert len(test.y_true) == len(test.y_pred) == len(test.graph) > 0
    # The stored predictions give back the recorded metric.
    assert get_metric("mae")(test) == run["metrics"]["count"]["test_mae"]
    exported = tmp_path / "predictions"
    result = invoke("results", "--store", store_dir, "--predictions", exported)
    assert result.exit_code == 0, result.output
    manifest = json.loads((exported / "manifest.json").read_text())
    assert len(manifest) == 12
    with np.load(exported / f"{run['run_id']}.npz") as data:
        assert (data["test/count/graph_id"] == test.graph + 1000).all()  # native ids of the dataset
    # A damaged prediction file is detected, never read silently, and the run is redone.
    (store_dir / run["predictions"]).write_bytes(b"damaged")
    again = invoke("run", "--grid", tmp_path / "grid.toml", "--store", store_dir, "--no-leaderboard", "--jobs", "1")
    assert again.exit_code == 0, again.output
    assert "1 finished runs have missing or damaged predictions: redone" in again.output
    assert "1 finished, 0 failed, 11 were already finished" in again.output


@pytest.mark.slow
def test_collect_loads_records_that_never_reached_the_database(synthetic_env, synthetic_grid, tmp_path):
    store_dir = tmp_path / "store"
    _run_grid(synthetic_grid, store_dir, tmp_path / "lb")
    with sqlite3.connect(store_dir / "benchbase.sqlite") as db:  # the driver died before recording them
        db.execute("DELETE FROM runs WHERE run_id IN (SELECT run_id FROM runs ORDER BY run_id LIMIT 5)")
        db.execute("DELETE FROM stages")
    result = invoke("collect", "--store", store_dir)
    assert result.exit_code == 0, result.output
    assert "loaded 9 record(s)" in result.output  # 5 runs and 4 stages
    rerun = invoke("run", "--grid", tmp_path / "grid.toml", "--store", store_dir, "--no-leaderboard", "--jobs", "1")
    assert "0 finished, 0 failed, 12 were already finished" in rerun.output


def _synthetic_store(
    tmp_path,
    effects: dict[str, float],
    seeds: int = 6,
    graphs: int = 400,
    shared: bool = True,
    luck: dict | None = None,
) -> Store:
    """A store with runs of the synthetic plugin whose predictions are planted: the baseline
    (rebalancer none) errs by a per-graph amount; each rebalancer by that plus its effect and, from
    `luck`, a per-seed offset of that size. `shared`: every seed is scored on the same graphs
    (crossed design), else each seed on its own (nested)."""
    registry = default_registry()
    store = Store(tmp_path / "store")
    rng = np.random.default_rng(0)
    for seed in range(seeds):
        graph = np.arange(graphs) + (0 if shared else seed * graphs)
        base_error = rng.exponential(size=graphs) + 0.5
        for method, effect in {"none": 0.0, **effects}.items():
            chosen = {
                "dataset": "synthetic/chains",
                "protocol": "iid",
                "encoder": "tiny",
                "pretext": "tiny-masking",
                "rebalancer": method,
            }
            spec = make_spec(registry, chosen, {}, PROFILES["quick"], seed, "quick")
            run = RunSpec(spec)
            noise = rng.normal(scale=0.1, size=graphs) + rng.normal(scale=(luck or {}).get(method, 0.0))
            y = rng.normal(size=graphs)
            pred = Predictions(y, y + np.maximum(base_error + effect + noise, 0), graph)
            path = store.predictions_path(run.run_id)
            sha = write_predictions(path, {"test": {"count": pred}})
            mae = float(np.mean(np.abs(pred.y_pred - pred.y_true)))
            store.record_run(
                run.run_id,
                "synthetic",
                spec,
                FINISHED,
                metrics={"count": {"test_mae": mae}},
                details={"tasks": {"count": {"name": "count", "unit": "nodes"}}},
                predictions=str(path.relative_to(store.root)),
                predictions_sha256=sha,
                stage_id=run.stage_id,
            )
            assert read_predictions(path)["test"]["count"].y_pred.dtype == np.float32
    question = {
        "id": "q",
        "title": "Does re-weighting change the error?",
        "factor": "rebalancer",
        "baseline": "none",
        "metrics": ["test_mae"],
    }
    store.record_grid(
        "synthetic",
        "synthetic.toml",
        {"analysis": {"rope": {"mae": 0.05}}, "questions": [question], "seeds": list(range(seeds))},
    )
    return store


def _verdict_lines(text: str) -> dict[str, str]:
    """Comparison lines by method."""
    return {
        cells[2].strip(): line
        for line in text.splitlines()
        if line.startswith("| ") and len(cells := line.split("|")) > 10 and cells[2].strip().startswith("tiny /")
    }


@pytest.mark.slow
def test_each_of_the_five_verdicts_from_a_store_built_to_give_it(synthetic_env, tmp_path):
    effects = {
        "inverse-frequency": -0.3,  # better: well beyond the ROPE of 0.05
        "focal": 0.3,  # worse
        "sqrt-inverse-frequency": 0.02,  # real, but inside the ROPE
        "class-balanced": 0.0,  # equivalent
        "logit-adjustment": 0.0,  # inconclusive: its seeds vary by 0.3
    }
    store = _synthetic_store(tmp_path, effects, luck={"logit-adjustment": 0.3})
    out = tmp_path / "lb"
    write_leaderboards(store, out)
    findings = (out / "FINDINGS.md").read_text()
    lines = _verdict_lines(findings)
    assert "**better**" in lines["tiny / tiny-masking / inverse-frequency"]
    assert "**worse**" in lines["tiny / tiny-masking / focal"]
    assert "**real but smaller than the ROPE**" in lines["tiny / tiny-masking / sqrt-inverse-frequency"]
    assert "**equivalent**" in lines["tiny / tiny-masking / class-balanced"]
    inconclusive = lines["tiny / tiny-masking / logit-adjustment"]
    assert "| inconclusive " in inconclusive and "MDE" in inconclusive and "paired seeds would" in inconclusive
    # The table shows the question's comparisons with the same numbers as FINDINGS.md.
    table = (out / "synthetic-chains__count__iid.md").read_text()
    for method, line in _verdict_lines(table).items():
        assert line.split("|")[6:12] == lines[method].split("|")[5:11]


@pytest.mark.slow
def test_design_follows_the_splits(synthetic_env, tmp_path):
    """The same graphs for every seed: crossed (one resample of graphs shared by seeds and arms);
    a test set per seed: nested (the seed spread holds the test-set noise)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    crossed = _synthetic_store(tmp_path / "a", {"focal": 0.3}, shared=True)
    nested = _synthetic_store(tmp_path / "b", {"focal": 0.3}, shared=False)
    write_leaderboards(crossed, tmp_path / "a" / "lb")
    write_leaderboards(nested, tmp_path / "b" / "lb")
    assert "Design: crossed" in (tmp_path / "a" / "lb" / "FINDINGS.md").read_text()
    assert "Design: nested" in (tmp_path / "b" / "lb" / "FINDINGS.md").read_text()


@pytest.mark.slow
def test_a_planted_effect_is_better_and_regeneration_is_byte_identical(synthetic_env, tmp_path):
    store = _synthetic_store(tmp_path, {"inverse-frequency": -0.2, "focal": 0.0})
    out = tmp_path / "lb"
    write_leaderboards(store, out)
    table = (out / "synthetic-chains__count__iid.md").read_text()
    lines = _verdict_lines(table)
    assert "**better**" in lines["tiny / tiny-masking / inverse-frequency"]
    # The planted method ranks first, every cell has its interval.
    assert "| 1      | tiny      | tiny-masking | inverse-frequency |" in table and "[" in table
    first = (out / "README.md").read_bytes()
    write_leaderboards(store, tmp_path / "lb2")
    assert (tmp_path / "lb2" / "README.md").read_bytes() == first


def test_per_class_accuracies_are_shown_with_the_items_they_rest_on():
    from benchbase.contract.api import Column, TaskInfo
    from benchbase.reporting.markdown import render_classes
    from benchbase.reporting.tables import Row, Table

    runs = {
        seed: {
            "metrics": {
                "gap": {
                    "pretext_n_C": 300.0 + seed,
                    "pretext_acc_C": 0.9,
                    "pretext_n_F": 20.0,
                    "pretext_acc_F": 0.5,
                    "pretext_excluded_F": 1.0,
                    "test_mae": 0.3,
                }
            }
        }
        for seed in (0, 1)
    }
    row = Row("k", {}, runs, label="gin / node-masking / none")
    table = Table("t", "d", TaskInfo("gap"), "imbalance", {}, [Column("test", "mae")], [row], {}, [], [])
    text = render_classes(table)
    assert "| gin / node-masking / none | 300 items, acc 0.900" in text.replace("  ", " ").replace("  ", " ")
    assert "20 items, acc 0.500, too rare in 2 seed(s)" in text
    assert "test_mae" not in text


def test_a_class_only_some_seeds_scored_is_shown_whichever_run_comes_first():
    """A rare class is absent from the metrics of seeds that drew none of it: the section must not
    depend on the order of the runs (it follows run ids, which change with the code)."""
    from benchbase.contract.api import Column, TaskInfo
    from benchbase.reporting.markdown import render_classes
    from benchbase.reporting.tables import Row, Table

    common = {"pretext_n_C": 300.0, "pretext_acc_C": 0.9}
    rare = {**common, "pretext_n_Sn": 1.0, "pretext_acc_Sn": 0.0, "pretext_excluded_Sn": 1.0}
    texts = []
    for order in ((0, 1), (1, 0)):
        runs = {seed: {"metrics": {"gap": rare if seed == 1 else common}} for seed in order}
        row = Row("k", {}, runs, label="gin / node-masking / none")
        table = Table("t", "d", TaskInfo("gap"), "imbalance", {}, [Column("test", "mae")], [row], {}, [], [])
        texts.append(render_classes(table))
    assert texts[0] == texts[1] and "1 items, acc 0.000, too rare in 1 seed(s)" in texts[0]
