"""Every built-in molecular plugin runs in a grid through the real CLI, on real data: a QM9 subset,
and a small OGB classification set written in OGB's on-disk format (the downstream rebalancer path).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.contract.registry import default_registry, reset_default_registry

runner = CliRunner()
TESTS = Path(__file__).resolve().parents[1]

SMALL = {"layers": 2, "hidden": 16}
ENCODER_PARAMS = {
    "gin": SMALL,
    "gine": SMALL,
    "gcn": SMALL,
    "sage": SMALL,
    "gatv2": {**SMALL, "heads": 2},
    "pna": {**SMALL, "towers": 2},
    "gps": {**SMALL, "heads": 2},
    "schnet": {"layers": 2, "hidden": 16, "filters": 16, "gaussians": 10, "cutoff": 5.0},
    "fingerprint-mlp": {"layers": 2, "hidden": 32, "bits": 256},
}


def _params_toml(kind: str, params: dict[str, dict]) -> str:
    out = []
    for name, values in params.items():
        out.append(f'[params.{kind}."{name}"]')
        out += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(out)


def _run_grid(tmp_path, body: str) -> list[dict]:
    grid = tmp_path / "grid.toml"
    grid.write_text(body)
    store = tmp_path / "store"
    result = runner.invoke(
        app,
        ["run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--leaderboard-out", str(tmp_path / "lb")],
    )
    rows = [json.loads(line) for line in runner.invoke(app, ["results", "--store", str(store)]).output.splitlines()]
    failed = [
        (r["spec"]["encoder"]["name"], r["spec"]["pretext"]["name"], r["error"])
        for r in rows
        if r["status"] != "finished"
    ]
    assert result.exit_code == 0 and not failed, (failed, result.output[-3000:])
    return rows


@pytest.fixture
def qm9_cache(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path_factory.getbasetemp() / "qm9-e2e-cache"))


@pytest.mark.slow
def test_every_molecular_plugin_runs_in_a_grid(qm9_cache, tmp_path):
    registry = default_registry()
    molecular_encoders = sorted(ENCODER_PARAMS)
    pretext = [n for n in registry.names("pretext") if n != "edge-pretraining"]
    body = f"""
seeds = [0]
[train]
epochs = 2
pretrain_epochs = 1
batch_size = 64
[params.dataset."qm9/homo_lumo_gap"]
subset = 150
{_params_toml("encoder", ENCODER_PARAMS)}
[[study]]
datasets = ["qm9/homo_lumo_gap"]
protocols = ["iid"]
encoders = {json.dumps(molecular_encoders)}
[[study]]
datasets = ["qm9/homo_lumo_gap"]
protocols = ["iid"]
encoders = ["gin"]
pretext = {json.dumps(pretext)}
[[study]]
datasets = ["qm9/homo_lumo_gap"]
protocols = ["extrapolation-threshold"]
encoders = ["gin"]
pretext = ["node-masking"]
rebalancers = {json.dumps(registry.names("rebalancer"))}
"""
    rows = _run_grid(tmp_path, body)
    used = {kind: {r["spec"][kind]["name"] for r in rows} for kind in ("encoder", "pretext", "rebalancer")}
    assert used["encoder"] == set(molecular_encoders)
    assert used["pretext"] == set(pretext) | {"none"}
    assert used["rebalancer"] == set(registry.names("rebalancer"))
    mae = [r["metrics"]["homo_lumo_gap"]["test_mae"] for r in rows]
    assert all(np.isfinite(mae)) and 0 < min(mae) < 5  # eV: a trained model, not garbage


def _ogb_writer():
    spec = importlib.util.spec_from_file_location("ogb_files", TESTS / "molecules" / "test_ogb_datasets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_ogb_set


@pytest.mark.slow
def test_ogb_classification_with_downstream_rebalancers(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path / "cache"))
    reset_default_registry()
    root = tmp_path / "ogb"
    labels = np.array([[0], [1], [0], [1], [0], [1], [0], [np.nan], [1], [0]])
    _ogb_writer()(root, "ogbg-molhiv", labels)
    body = f"""
seeds = [0]
[train]
epochs = 2
batch_size = 4
[params.dataset."ogbg-molhiv"]
root = "{root}"
[params.encoder.gin]
layers = 2
hidden = 16
[[study]]
datasets = ["ogbg-molhiv"]
protocols = ["iid"]
encoders = ["gin"]
rebalancers = ["none", "focal", "inverse-frequency"]
"""
    rows = _run_grid(tmp_path, body)
    assert {r["spec"]["rebalancer"]["name"] for r in rows} == {"none", "focal", "inverse-frequency"}
    for row in rows:
        assert "test_rocauc" in row["metrics"]["hiv"]  # OGB's official split and metric


@pytest.mark.slow
def test_qm9_multitask_with_a_few_label_target(qm9_cache, tmp_path):
    body = """
seeds = [0]
[train]
epochs = 2
batch_size = 64
few_label = { task = "homo_lumo_gap", k = 20 }
[params.dataset.qm9]
subset = 150
[params.encoder.gin]
layers = 2
hidden = 16
[[study]]
datasets = ["qm9"]
protocols = ["iid"]
encoders = ["gin"]
"""
    rows = _run_grid(tmp_path, body)
    metrics = rows[0]["metrics"]
    assert len(metrics) == 12 and all(np.isfinite(m["test_mae"]) for m in metrics.values())
    tables = {p.name for p in (tmp_path / "lb").glob("qm9__*.md")}
    assert "qm9__homo_lumo_gap__iid.md" in tables and len(tables) == 12
