"""Leaderboards merged from a local store and others' exports (`benchbase leaderboard --from`),
through the real CLI: rows keep where they come from and whether they were reproduced here,
conflicting records of one run are reported and never overwrite, malformed exports end with one
line, and `benchbase reproduce` verifies an imported run into the local store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.contract.identity import content_hash
from benchbase.contract.kinds import RUN_KINDS

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
TABLE = "synthetic-chains__count__iid.md"
TESTS = Path(__file__).resolve().parents[1]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _row(table: str, setting: str) -> list[str]:
    line = next(line for line in table.splitlines() if setting in line)
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Three stores of one small grid: A (seed 0) and S (seeds 0 and 1) share a run; B (another
    encoder width) shares none. A and B are published as exports, S is the local store."""
    from benchbase.contract.registry import reset_default_registry

    root = tmp_path_factory.mktemp("published")
    grids = {
        "a": GRID,
        "s": GRID.replace("seeds = [0]", "seeds = [0, 1]"),
        "b": GRID + '[study.sweep]\n"encoder.tiny.hidden" = [8]\n',
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")])))
        patch.setenv("BENCHBASE_EXTRA_PLUGINS", "synthetic_plugin")
        patch.setenv("BENCHBASE_CACHE", str(root / "cache"))
        reset_default_registry()
        for name, text in grids.items():
            (root / f"{name}.toml").write_text(text)
            args = ["run", "--grid", root / f"{name}.toml", "--store", root / f"store-{name}", "--jobs", "1"]
            result = invoke(*args, "--leaderboard-out", root / f"export-{name}")
            assert result.exit_code == 0, result.output
    reset_default_registry()
    return root


@pytest.mark.slow
def test_two_exports_merge_with_a_store_and_every_row_keeps_its_provenance(synthetic_env, published, tmp_path):
    out = tmp_path / "merged"
    a, b, store = published / "export-a" / "results.jsonl", published / "export-b", published / "store-s"
    result = invoke("leaderboard", "--from", a, "--from", b, "--store", store, "--out", out)
    assert result.exit_code == 0, result.output
    assert "merged 3 finished runs from 3 source(s): 1 imported, 2 computed or reproduced here; 0 conflict" in (
        result.output
    )
    table = (out / TABLE).read_text()
    # A's run is S's seed 0 (same id, same predictions): kept once, both sources listed, computed here
    assert _row(table, "hidden=16")[-2:] == ["S1, S2", "2/2"]
    assert _row(table, "hidden=8")[-2:] == ["S3", "0/1"]  # B's run: imported, not reproduced here
    assert f"- S3 export `{b}`: 1 run(s), 0 computed or reproduced here; code " in table
    assert "hardware: " in table.split("## Provenance")[1]
    assert "1 imported run(s) came without predictions: their cells are their recorded metrics" in table
    index = (out / "README.md").read_text()
    assert f"- S1 store `{store}`: 2 finished run(s), 2 computed or reproduced here" in index
    assert "## Conflicts" not in index
    exported = {r["run_id"]: r for r in _records(out / "results.jsonl")}
    assert len(exported) == 3
    b_run = _records(b / "results.jsonl")[0]
    assert exported[b_run["run_id"]]["provenance"] == {
        "sources": [{"id": "S3", "kind": "export", "path": str(b)}],
        "imported": True,
        "reproduced_here": False,
    }
    assert exported[b_run["run_id"]]["tasks"]["count"]["metric"] == "mae"  # what others need to render it
    a_run = _records(a)[0]
    assert [s["id"] for s in exported[a_run["run_id"]]["provenance"]["sources"]] == ["S1", "S2"]
    # B ships its predictions beside its export: they are used once their checksum holds
    shipped = invoke("results", "--store", published / "store-b", "--predictions", tmp_path / "b" / "predictions")
    assert shipped.exit_code == 0, shipped.output
    shutil.copy(b / "results.jsonl", tmp_path / "b" / "results.jsonl")
    again = invoke("leaderboard", "--from", a, "--from", tmp_path / "b", "--store", store, "--out", out)
    assert again.exit_code == 0, again.output
    assert "came without predictions" not in (out / TABLE).read_text()
    # the same sources with the predictions taken away: regenerated, not "up to date"
    shutil.rmtree(tmp_path / "b" / "predictions")
    again = invoke("leaderboard", "--from", a, "--from", tmp_path / "b", "--store", store, "--out", out)
    assert again.exit_code == 0, again.output
    assert "1 imported run(s) came without predictions" in (out / TABLE).read_text()
    # the plain store case is unchanged: no provenance columns or fields
    plain = invoke("leaderboard", "--store", store, "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    assert "## Provenance" not in (tmp_path / "plain" / TABLE).read_text()
    assert all("provenance" not in r for r in _records(tmp_path / "plain" / "results.jsonl"))


@pytest.mark.slow
def test_conflicting_records_of_one_run_are_reported_never_overwritten(synthetic_env, published, tmp_path, monkeypatch):
    a = published / "export-a" / "results.jsonl"
    record = _records(a)[0]
    doctored = tmp_path / "doctored.jsonl"
    doctored.write_text(json.dumps({**record, "metrics": {"count": {**record["metrics"]["count"], "test_mae": 9.5}}}))
    store = published / "store-s"
    out = tmp_path / "with-store"
    result = invoke("leaderboard", "--from", doctored, "--store", store, "--out", out)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("conflict: ")]
    assert len(lines) == 1, result.output  # one line per conflict, naming the run and both sources
    assert lines[0].startswith(
        f"conflict: run {record['run_id']} (synthetic/chains / iid / tiny / none / none / seed 0)"
    )
    assert f"S1 store `{store}`" in lines[0] and f"S2 export `{doctored}`" in lines[0]
    first = record["metrics"]["count"]["test_mae"]
    assert lines[0].endswith(f"(first: count/test_mae {first!r} vs 9.5); S1's record is used (the local store)")
    index = (out / "README.md").read_text()
    assert "## Conflicts" in index and f"- run {record['run_id']} (" in index
    kept = {r["run_id"]: r for r in _records(out / "results.jsonl")}[record["run_id"]]
    assert kept["metrics"] == record["metrics"]  # the local store's record, not the doctored one
    assert "9.5" not in (out / TABLE).read_text()
    # two exports that disagree, no local store (none in the working directory): the run is left out
    monkeypatch.chdir(tmp_path)
    alone = invoke("leaderboard", "--from", doctored, "--from", a, "--out", tmp_path / "alone")
    assert alone.exit_code == 0, alone.output
    assert "the run is left out" in alone.output and "0 finished runs from 2 source(s)" in alone.output
    assert not (tmp_path / "alone" / TABLE).exists()
    assert record["run_id"] in (tmp_path / "alone" / "README.md").read_text().split("## Conflicts")[1]


def _record(**spec_changes) -> dict:
    spec = {kind: {"name": "x", "params": {}} for kind in RUN_KINDS} | {"seed": 0, "train": {}}
    return {"run_id": content_hash(spec), "status": "finished", "spec": {**spec, **spec_changes}, "metrics": {}}


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "bad.jsonl:2 is not a JSON line"),
        ('{"run_id": 3, "status": "finished"}', "bad.jsonl:2: its run_id 3 is not a run id (16 hex digits)"),
        (json.dumps(_record(seed=1)), "bad.jsonl:2: its run_id {} is not the hash of its spec"),
        (json.dumps({**_record(), "metrics": {"t": {"mae": "low"}}}), "bad.jsonl:2: its metrics of task 't' are not"),
        (json.dumps({**_record(), "status": "failed", "metrics": [1]}), "bad.jsonl:2: its metrics are not an object"),
        (json.dumps({**_record(), "seconds": "x"}), "bad.jsonl:2: its seconds is not a number"),
        (json.dumps(_record(train=None)), "bad.jsonl:2: its spec has no train object"),
    ],
)
def test_a_malformed_export_ends_with_one_line_naming_file_and_line(tmp_path, monkeypatch, line, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.jsonl").write_text(json.dumps(_record()) + "\n" + line + "\n")
    says = says.format(_record()["run_id"])
    for command in (["leaderboard", "--from", "bad.jsonl", "--out", "lb"], ["reproduce", "--from", "bad.jsonl"]):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [result.output.strip()] and says in result.output
    assert not (tmp_path / "lb").exists()


@pytest.mark.slow
def test_reproduce_verifies_an_imported_run_into_the_local_store(synthetic_env, published, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(published / "store-s", store)
    b = published / "export-b"
    b_run = _records(b / "results.jsonl")[0]
    checked = invoke("reproduce", "--from", b, "--store", store, b_run["run_id"])
    assert checked.exit_code == 0, checked.output
    assert f"{b_run['run_id']} synthetic/chains | iid | tiny | none | none | seed 0: identical" in checked.output
    out = tmp_path / "merged"
    result = invoke("leaderboard", "--from", b, "--store", store, "--out", out)
    assert result.exit_code == 0, result.output
    assert _row((out / TABLE).read_text(), "hidden=8")[-2:] == ["S1, S2", "1/1"]
    merged = {r["run_id"]: r for r in _records(out / "results.jsonl")}[b_run["run_id"]]
    assert merged["provenance"]["reproduced_here"] and not merged["provenance"]["imported"]


def test_an_empty_export_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    result = invoke("leaderboard", "--from", "empty.jsonl", "--out", "lb")
    assert result.exit_code == 2 and "holds no run records" in result.output, result.output
    assert not (tmp_path / "lb").exists()
