"""The template plugin, pip-installed as a separate distribution, is discovered and runs in a grid
with no change to benchbase."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = ROOT / "plugins" / "template"


@pytest.fixture(scope="module")
def installed_template(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "template"  # setuptools builds in the source tree: keep the checkout clean
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    # --target keeps the test environment untouched while installing a real distribution
    # (dist-info with its entry points) that importlib.metadata discovers on sys.path.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(build)},
    )
    assert result.returncode == 0, result.stderr
    return target


def _env(site, synthetic_env):
    pythonpath = os.pathsep.join([str(site), synthetic_env["PYTHONPATH"]])
    return {**synthetic_env, "PYTHONPATH": pythonpath}


@pytest.mark.slow
def test_template_is_listed_and_runs_in_a_grid(installed_template, synthetic_env, tmp_path):
    env = _env(installed_template, synthetic_env)
    listing = subprocess.run(
        [sys.executable, "-m", "benchbase.cli", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(listing.stdout)}
    entry = rows[("encoder", "example-deepsets")]
    assert entry["distribution"] == "benchbase-example" and entry["version"] == "0.1.0"
    every_kind = {("dataset", "example/rings"), ("pretext", "example-masking"), ("rebalancer", "example-power"),
                  ("protocol", "example-ordered"), ("metric", "example_max_error")}  # fmt: skip
    assert every_kind <= set(rows) and all(rows[key]["distribution"] == "benchbase-example" for key in every_kind)
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[train]\nepochs = 3\npretrain_epochs = 1\n[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\n'
        'encoders = ["example-deepsets", "tiny"]\n'
        # every kind of the template together: its dataset, protocol, encoder, pretext task and rebalancer
        '[[study]]\ndatasets = ["example/rings"]\nprotocols = ["example-ordered"]\nencoders = ["example-deepsets"]\n'
        'pretext = ["example-masking"]\nrebalancers = ["example-power"]\n'
        '[study.params.dataset."example/rings"]\ngraphs = 60\n'
    )
    store = tmp_path / "store"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchbase.cli",
            "run",
            "--grid",
            str(grid),
            "--store",
            str(store),
            "--leaderboard-out",
            str(tmp_path / "lb"),
            "--jobs",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    exported = subprocess.run(
        [sys.executable, "-m", "benchbase.cli", "results", "--store", str(store)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    example = [r for r in rows if r["spec"]["encoder"]["name"] == "example-deepsets"]
    assert len(example) == 2 and all(r["status"] == "finished" for r in example)
    example.sort(key=lambda r: r["spec"]["dataset"]["name"] != "synthetic/chains")
    assert example[0]["spec"]["code"]["encoder"].startswith("benchbase-example 0.1.0")
    versions = example[0]["versions"]
    assert versions["components"]["encoder"] == example[0]["spec"]["code"]["encoder"]
    assert versions["components"]["pretext"] is None  # no pretraining: no plugin, no version
    assert "torch" in versions["environment"]
    assert "example-deepsets" in (tmp_path / "lb" / "synthetic-chains__count__iid.md").read_text()
    assert "example-masking" in (tmp_path / "lb" / "example-rings__mixed_bonds__example-ordered.md").read_text()
