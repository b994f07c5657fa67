"""`benchbase new-plugin`: a plugin distribution written in one command installs with pip, is listed
by `benchbase plugins` and passes its own tests as generated; `plugins/template/` is its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.scaffold import KINDS, plugin_files

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "plugins" / "template"
runner = CliRunner()


def _tree(folder: Path) -> dict[str, str]:
    skip = ("__pycache__", ".egg-info", ".pytest_cache", ".ruff_cache", "build")
    return {
        str(p.relative_to(folder)): p.read_text()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.endswith(skip) for part in p.relative_to(folder).parts)
    }


def test_the_template_plugin_is_the_generator_output_for_example():
    # After changing a template: benchbase new-plugin example --dest plugins/template --force
    assert _tree(TEMPLATE) == plugin_files("example", KINDS)


def test_only_the_kinds_asked_for_are_written():
    files = plugin_files("my-lab", ["encoder", "metric"])
    assert set(files) == {
        "README.md",
        "pyproject.toml",
        "benchbase_my_lab/__init__.py",
        "benchbase_my_lab/plugin.py",
        "benchbase_my_lab/encoders.py",
        "benchbase_my_lab/metrics.py",
        "tests/conftest.py",
        "tests/test_plugin.py",
        "tests/test_encoders.py",
        "tests/test_metrics.py",
    }
    plugin = files["benchbase_my_lab/plugin.py"]
    assert "register_encoders" in plugin and "register_metrics" in plugin and "register_datasets" not in plugin
    assert 'my-lab = "benchbase_my_lab.plugin"' in files["pyproject.toml"]
    assert '("metric", "my_lab_max_error")' in files["tests/test_plugin.py"]
    assert '"qm9/homo_lumo_gap"' in files["README.md"]  # its example grid uses a built-in dataset instead


def test_bad_names_kinds_and_destinations_are_one_line_errors(tmp_path):
    cases = [
        (["new-plugin", "Acme"], "plugin name 'Acme' must be lower-case"),
        (["new-plugin", "acme", "--kinds", "encoder,loss"], "unknown kind(s) ['loss']"),
        (["new-plugin", "acme", "--dest", str(ROOT)], "is not empty; choose another --dest"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def _cli(site: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    # Installed editable into a private prefix: add it as a site directory so that its .pth (the
    # editable finder) is processed, then run the real CLI.
    code = f"import site, sys; site.addsitedir({str(site)!r}); from benchbase.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_new_plugin_installs_is_listed_and_passes_its_own_tests(tmp_path, monkeypatch):
    work = tmp_path / "empty"
    work.mkdir()
    monkeypatch.chdir(work)
    result = runner.invoke(app, ["new-plugin", "acme"])
    assert result.exit_code == 0, result.output
    source = work / "benchbase-acme"
    prefix = tmp_path / "prefix"
    env = {**os.environ, "TMPDIR": str(tmp_path), "BENCHBASE_CACHE": str(tmp_path / "cache")}
    env.pop("BENCHBASE_EXTRA_PLUGINS", None)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--prefix", str(prefix),
         "-e", str(source)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    site = next(prefix.rglob("site-packages"))
    listing = _cli(site, env, "plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    mine = {(r["kind"], r["name"]) for r in json.loads(listing.stdout) if r["distribution"] == "benchbase-acme"}
    assert mine == {
        ("dataset", "acme/rings"),
        ("encoder", "acme-deepsets"),
        ("pretext", "acme-masking"),
        ("rebalancer", "acme-power"),
        ("protocol", "acme-ordered"),
        ("metric", "acme_max_error"),
    }
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=source, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "13 passed" in tests.stdout
