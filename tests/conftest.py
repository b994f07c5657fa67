"""Shared fixtures. The synthetic plugin (tests/synthetic_plugin.py) is loaded through
BENCHBASE_EXTRA_PLUGINS so that harness mechanics are tested fast and through the real CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Before any test module imports torch: importing benchbase pins the portable CPU numerics, which
# only take effect if it comes first (as in a grid run); otherwise results depend on test order.
import benchbase  # noqa: F401, E402  # isort: skip

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
BOTAN_SMALL = ROOT.parent / "shared" / "data" / "botan_small"

sys.path.insert(0, str(TESTS))

# The same code gets the same verdict: property tests draw the same examples on every run (a seed
# derived from each test's name), so CI cannot fail on an example no earlier run tried.
# `BENCHBASE_HYPOTHESIS=explore python -m pytest` draws fresh examples to look for new failures.
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("BENCHBASE_HYPOTHESIS", "deterministic"))


@pytest.fixture(autouse=True)
def _fresh_fingerprints():
    """Code fingerprints are computed once per process (`benchbase.contract.identity`), as a CLI run needs;
    a test that redirects module lookups, the working directory or the import path must not leave
    its fingerprints to the next test, which may compare them with those of a fresh subprocess."""
    from benchbase.contract.identity import clear_fingerprint_caches

    clear_fingerprint_caches()
    yield


def _leaderboard_files() -> dict[str, bytes]:
    folder = ROOT / "leaderboards"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True, scope="session")
def committed_leaderboards_untouched():
    """A test that runs a grid without its own leaderboard folder would overwrite the committed
    leaderboards (the CLI's default folder is ./leaderboards); fail the session if one does."""
    before = _leaderboard_files()
    yield
    after = _leaderboard_files()
    changed = sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
    assert not changed, f"a test wrote the committed leaderboards: {changed[:5]}"


@pytest.fixture
def synthetic_env(monkeypatch, tmp_path):
    """The synthetic plugin registered, a private cache, a fresh registry; yields the env dict for
    subprocesses."""
    from benchbase.contract.registry import reset_default_registry

    pythonpath = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    monkeypatch.setenv("BENCHBASE_EXTRA_PLUGINS", "synthetic_plugin")
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path / "cache"))
    reset_default_registry()
    yield dict(os.environ)
    reset_default_registry()


SYNTHETIC_GRID = """
name = "synthetic"
profile = "quick"
seeds = [0, 1]
[train]
epochs = 4
pretrain_epochs = 2
batch_size = 32
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid", "extrapolation-threshold"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
rebalancers = ["none", "inverse-frequency"]
"""


@pytest.fixture
def synthetic_grid(tmp_path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(SYNTHETIC_GRID)
    return path


# --- running the suite on several workers (pytest-xdist, `-n`; pyproject's addopts) --------------

#: Modules whose tests start Ray: one worker runs them all, since a test that joins a running
#: instance (``address=auto``) must not find another worker's.
_RAY_MODULES = ("test_executors", "test_conformance")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``--dist loadgroup``, each module's tests go to one worker as one unit (a module's
    fixtures - featurised data, a Slurm cluster - are then built once), the Ray modules to one
    worker together; the longest units are handed out first so that no worker is left with one at
    the end."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        module = _module_of(item)
        item.add_marker(pytest.mark.xdist_group("ray" if module in _RAY_MODULES else module))
    first = {name: rank for rank, name in enumerate(_LONGEST)}
    items.sort(key=lambda item: first.get(_module_of(item), len(first)))


def _module_of(item) -> str:
    """The test module's own name (``test_cost``), or the node id of an item outside a module."""
    return item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) is not None else item.nodeid


#: The modules that take longest (measured with ``--durations``), longest first.
_LONGEST = ("test_executors", "test_conformance", "test_resume")


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core, at most 4 (each runs training subprocesses of its own)."""
    return max(1, min(os.cpu_count() or 1, 4))
