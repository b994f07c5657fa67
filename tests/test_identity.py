"""A run's identity covers the code and the numerics: fingerprints change with code, not with
comments; run and stage ids change with threads and settings that matter, not with --jobs; an
edited plugin's runs are recomputed under new ids while the others are kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchbase.grid import PROFILES, RunSpec, make_spec, respec
from benchbase.identity import numerics, source_hash
from benchbase.registry import default_registry

ROOT = Path(__file__).resolve().parents[1]


def test_fingerprint_ignores_comments_docstrings_and_layout_but_not_code(tmp_path):
    module = tmp_path / "pkg" / "mod.py"
    module.parent.mkdir()
    module.write_text('"""Doc."""\n\ndef f(x):\n    """Say what."""\n    return x + 1\n')
    before = source_hash([module.parent])
    module.write_text('"""Other doc."""\n# a comment\ndef f(x):\n\n    return (x +\n            1)  # why\n')
    assert source_hash([module.parent]) == before
    module.write_text('"""Doc."""\n\ndef f(x):\n    return x + 2\n')
    assert source_hash([module.parent]) != before
    (module.parent / "new.py").write_text("y = 1\n")
    assert source_hash([module.parent]) != before


def _spec(pretext="node-masking", threads=1, **train):
    registry = default_registry()
    chosen = {
        "dataset": "qm9/homo_lumo_gap",
        "protocol": "extrapolation-threshold",
        "encoder": "gin",
        "pretext": pretext,
        "rebalancer": "none",
    }
    settings = {**PROFILES["quick"], "threads": threads, **train}
    return make_spec(registry, chosen, {}, settings, 0, "quick")


def test_identity_holds_code_and_numerics():
    spec = _spec()
    assert spec["code"]["harness"].startswith("benchbase ") and "+src." in spec["code"]["harness"]
    assert set(spec["code"]) == {"harness", "dataset", "protocol", "encoder", "pretext", "rebalancer"}
    assert spec["numerics"] == numerics("cpu", 1)
    assert spec["numerics"]["cpu"] == "avx2+mkl-compatible"  # the portable CPU paths are pinned
    assert "threads" not in spec["train"] and "device" not in spec["train"]
    assert RunSpec(_spec(threads=2)).run_id != RunSpec(spec).run_id
    assert RunSpec(_spec(threads=2)).stage_id != RunSpec(spec).stage_id


def test_settings_enter_only_the_identities_they_change():
    none, masked = _spec(pretext="none"), _spec()
    assert "pretext" not in none["code"] and not {"pretrain_epochs", "pretrain_pool"} & set(none["train"])
    more_pretraining = _spec(pretrain_epochs=9)
    assert RunSpec(_spec(pretext="none", pretrain_epochs=9)).run_id == RunSpec(none).run_id
    assert RunSpec(more_pretraining).run_id != RunSpec(masked).run_id
    assert RunSpec(more_pretraining).stage_id != RunSpec(masked).stage_id
    # The pool "all" is the whole dataset: the stage does not depend on the protocol; "train" does.
    other_protocol = dict(masked, protocol={"name": "iid", "params": {}})
    assert RunSpec(other_protocol).stage_id == RunSpec(masked).stage_id
    pooled = _spec(pretrain_pool="train")
    assert RunSpec(dict(pooled, protocol={"name": "iid", "params": {}})).stage_id != RunSpec(pooled).stage_id
    assert RunSpec(_spec(epochs=3)).stage_id == RunSpec(masked).stage_id  # fine-tuning only


def test_respec_reproduces_the_identity_of_the_same_code_and_data():
    spec = _spec(pretrain_pool="train", epochs=7)
    fresh = respec(default_registry(), json.loads(json.dumps(spec)))
    assert {k: v for k, v in fresh.items() if k != "data"} == spec
    assert len(fresh["data"]) >= 16  # QM9's content key: its source files and the featuriser
    assert respec(default_registry(), fresh) == fresh


GRID = """
name = "edit"
seeds = [0]
[train]
epochs = 2
pretrain_epochs = 1
batch_size = 32
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny", "example-deepsets"]
pretext = ["none", "tiny-masking"]
"""


def _run(site: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    # The template is installed editable into a private prefix: add it as a site directory so that
    # its .pth (the editable finder) is processed, then run the real CLI.
    code = (
        f"import site, sys; site.addsitedir({str(site)!r}); sys.argv = ['benchbase', *sys.argv[1:]]; "
        "from benchbase.cli import main; main()"
    )
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_editing_an_editable_plugin_recomputes_its_runs_under_new_ids(synthetic_env, tmp_path):
    source = tmp_path / "example"
    shutil.copytree(ROOT / "plugins" / "template", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    prefix = tmp_path / "prefix"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--prefix", str(prefix),
         "-e", str(source)],
        capture_output=True, text=True, timeout=300, env={**synthetic_env, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    site = next(prefix.rglob("site-packages"))
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(GRID)
    args = ("run", "--grid", str(grid), "--store", str(store), "--jobs", "1", "--no-leaderboard")
    first = _run(site, synthetic_env, *args)
    assert first.returncode == 0, first.stderr
    assert "4 finished, 0 failed, 0 were already finished; pretraining stages computed 2" in first.stderr

    plugin = source / "benchbase_example" / "encoders.py"  # the example-deepsets encoder
    plugin.write_text(plugin.read_text() + "\n# a comment changes nothing\n")
    unchanged = _run(site, synthetic_env, *args)
    assert "0 finished, 0 failed, 4 were already finished" in unchanged.stderr, unchanged.stderr

    plugin.write_text(plugin.read_text().replace('reduce="sum"', 'reduce="mean"'))
    second = _run(site, synthetic_env, *args)
    assert second.returncode == 0, second.stderr
    # the two runs with the edited encoder (and its stage) again, the two of `tiny` kept
    assert "2 finished, 0 failed, 2 were already finished; pretraining stages computed 1, reused 0" in second.stderr
    rows = [
        json.loads(line) for line in _run(site, synthetic_env, "results", "--store", str(store)).stdout.splitlines()
    ]
    deepsets = [r for r in rows if r["spec"]["encoder"]["name"] == "example-deepsets"]
    assert len(deepsets) == 4 and sum(r["stale"] for r in deepsets) == 2  # old records stay, marked stale
    assert not any(r["stale"] for r in rows if r["spec"]["encoder"]["name"] == "tiny")
