"""A run's identity covers the code and the numerics: fingerprints change with code, not with
comments; run and stage ids change with threads and settings that matter, not with --jobs; an
edited plugin's runs are recomputed under new ids while the others are kept; an edit of code that
computes nothing (reporting, the CLI, the store) keeps every id."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchbase.compute.runspec import RunSpec
from benchbase.compute.settings import PROFILES
from benchbase.contract import identity
from benchbase.contract.identity import (
    HARNESS_COMPUTING,
    HARNESS_INFRASTRUCTURE,
    module_closure,
    normalised_source,
    numerics,
    source_hash,
)
from benchbase.contract.registry import default_registry, load_registry
from benchbase.running.planning import load_grid, make_spec, respec

ROOT = Path(__file__).resolve().parents[2]


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
    assert spec["code"]["harness"].startswith("benchbase ") and "+code." in spec["code"]["harness"]
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


# --- what the code fingerprints cover ------------------------------------------------------------


@pytest.fixture
def fresh_fingerprints():
    identity.clear_fingerprint_caches()
    yield
    identity.clear_fingerprint_caches()


def test_module_closure_follows_every_import_of_the_project_and_nothing_else(tmp_path, monkeypatch):
    package = tmp_path / "closurepkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "root.py": (
            "import os\n"
            "import closurepkg.plain\n"
            "from closurepkg.sub import leaf, CONSTANT\n"  # `leaf` is a module, CONSTANT is not
            "from . import sibling\n"
            "from .helpers import helper\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from closurepkg import typing_only\n"
            "def later():\n"
            "    from closurepkg.lazy import thing\n"  # inside a function: still part of the code
            "    return thing\n"
        ),
        "plain.py": "X = 1\n",
        "sibling.py": "from .sub.leaf import VALUE\n",
        "helpers.py": "def helper():\n    return 2\n",
        "lazy.py": "thing = 3\n",
        "typing_only.py": "T = int\n",
        "unrelated.py": "import closurepkg.root\n",
        "sub/__init__.py": "CONSTANT = 4\n",
        "sub/leaf.py": "from .. import excluded\nVALUE = 5\n",
        "excluded.py": "E = 6\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    identity.clear_fingerprint_caches()
    try:
        closure = module_closure(["closurepkg.root"], ["closurepkg"])
        expected = ["", ".root", ".plain", ".sub", ".sub.leaf", ".sibling", ".helpers", ".lazy", ".excluded"]
        assert closure == tuple(sorted(f"closurepkg{m}" for m in expected))  # not unrelated, typing_only
        assert "closurepkg.excluded" not in module_closure(["closurepkg.root"], ["closurepkg"], ["closurepkg.excluded"])
        before = identity.closure_fingerprint(["closurepkg.root"], ["closurepkg"], version="1.0")
        assert before.startswith("1.0+code.")
        (package / "unrelated.py").write_text("import closurepkg.root\nY = 7\n")
        (package / "lazy.py").write_text("# a comment\nthing = (\n    3\n)\n")
        identity.clear_fingerprint_caches()
        assert identity.closure_fingerprint(["closurepkg.root"], ["closurepkg"], version="1.0") == before
        (package / "sub" / "leaf.py").write_text("from .. import excluded\nVALUE = 6\n")
        identity.clear_fingerprint_caches()
        assert identity.closure_fingerprint(["closurepkg.root"], ["closurepkg"], version="1.0") != before
    finally:
        for name in [m for m in sys.modules if m.startswith("closurepkg")]:
            del sys.modules[name]
        identity.clear_fingerprint_caches()


def test_the_harness_computing_layer_imports_no_other_harness_module(fresh_fingerprints):
    """A future import of a reporting module (or the CLI, the store...) by the training loop would
    key every run on it: the fingerprint covers the computing layer and the contract modules it
    imports, nothing of running, reporting or the CLI."""
    assert all(identity.module_file(name) is not None for name in HARNESS_COMPUTING + HARNESS_INFRASTRUCTURE)
    covered = set(identity.harness_modules())
    assert set(HARNESS_COMPUTING) <= covered
    assert all(m == "benchbase" or m.startswith(("benchbase.compute", "benchbase.contract")) for m in covered)
    imported = {m for name in covered for m in identity.imported_modules(name)}
    ours = {m for m in imported if m.split(".")[0] == "benchbase" and identity.module_file(m) is not None}
    assert ours <= covered | set(HARNESS_INFRASTRUCTURE), ours - covered
    assert set(HARNESS_INFRASTRUCTURE) <= ours  # each one is really imported, and left out on purpose
    assert default_registry().harness_fingerprint().startswith("0.1.0+code.")


def test_bundled_plugins_are_keyed_on_the_modules_that_compute_them(fresh_fingerprints):
    registry = default_registry()
    covered = {(k, n): registry.get(k, n).code_modules for k, n in [
        ("encoder", "gin"), ("pretext", "node-masking"), ("pretext", "motif"), ("dataset", "qm9/homo_lumo_gap"),
        ("protocol", "extrapolation-threshold"), ("protocol", "glass-time"),
    ]}  # fmt: skip
    assert covered["encoder", "gin"] == ("benchbase_molecules", "benchbase_molecules.encoders")
    assert covered["pretext", "node-masking"] == covered["pretext", "motif"]  # one module holds both
    assert {"benchbase_molecules.pretext", "benchbase_molecules.motifs"} <= set(covered["pretext", "motif"])
    assert "benchbase_molecules.qm9" in covered["dataset", "qm9/homo_lumo_gap"]
    assert "benchbase_molecules.encoders" not in covered["dataset", "qm9/homo_lumo_gap"]
    assert "benchbase.compute.metrics" in covered["protocol", "extrapolation-threshold"]
    assert "benchbase_glass.metrics" in covered["protocol", "glass-time"]  # read by name, from the registry
    for modules in covered.values():  # a bundled plugin never keys on harness infrastructure or reporting
        assert not {m for m in modules if m.startswith("benchbase.")} - set(identity.harness_modules())
    fingerprints = registry.code_fingerprints()["benchbase"]
    assert registry.harness_fingerprint() in fingerprints
    assert {registry.get(*key).fingerprint for key in covered} <= fingerprints


@pytest.fixture
def edit(monkeypatch, tmp_path):
    """``edit(module)``: the fingerprints see `module` edited (a function added), in a copy: the
    checkout is never written."""
    real = identity.module_file
    copies: dict[str, Path] = {}
    monkeypatch.setattr(identity, "module_file", lambda name: copies.get(name) or real(name))

    def apply(*modules: str) -> None:
        for name in modules:
            source = real(name)
            copy = tmp_path / "edited" / f"{name}.py"
            copy.parent.mkdir(exist_ok=True)
            copy.write_text(source.read_text() + "\n\ndef _edited_by_a_test():\n    return 1\n")
            assert normalised_source(copy) != normalised_source(source)
            copies[name] = copy
        identity.clear_fingerprint_caches()

    identity.clear_fingerprint_caches()
    yield apply
    identity.clear_fingerprint_caches()


def _ids() -> dict[str, str | None]:
    """Position -> (run id, stage id) of every run of the default grid."""
    runs = load_grid(default_registry(), None).runs
    return {f"{i}": (run.run_id, run.stage_id) for i, run in enumerate(runs)}


def _project_modules() -> set[str]:
    found = set()
    for top in ("benchbase", "benchbase_molecules", "benchbase_glass"):
        folder = identity.module_file(top).parent
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            found.add(".".join((top, *parts[:-1]) if parts[-1] == "__init__" else (top, *parts)))
    return found


@pytest.mark.slow
def test_editing_code_that_computes_nothing_keeps_every_run_and_stage_of_the_default_grid(edit):
    before = _ids()
    registry = default_registry()
    runs = load_grid(registry, None).runs
    computing = set(identity.harness_modules())
    for run in runs:
        for kind in ("dataset", "protocol", "encoder", "pretext", "rebalancer"):
            if run.spec[kind]["name"] != "none" or kind == "rebalancer":
                computing |= set(registry.get(kind, run.spec[kind]["name"]).code_modules)
    outside = _project_modules() - computing  # reporting, CLI, store, and plugins the grid does not use
    assert {
        "benchbase.cli", "benchbase.reporting.tables", "benchbase.reporting.findings", "benchbase.reporting.stats",
        "benchbase.running.store", "benchbase.running.driver", "benchbase.running.executors",
        "benchbase.reporting.plots", "benchbase.running.doctor", "benchbase.running.planning",
        "benchbase.contract.registry", "benchbase_glass.cli", "benchbase_glass.encoders", "benchbase_molecules.plugin",
    } <= outside  # fmt: skip
    edit(*sorted(outside))  # all of them at once
    assert _ids() == before
    edit("benchbase.compute.finetuning")  # the check sees edits: one that computes re-keys everything
    after = _ids()
    assert all(after[i][0] != before[i][0] for i in before)
    assert all(after[i][1] != before[i][1] for i in before if before[i][1] is not None)


@pytest.mark.parametrize("module", ["benchbase_molecules.pretext", "benchbase_molecules.motifs"])
def test_editing_a_pretext_module_re_keys_exactly_the_runs_that_pretrain_with_it(edit, module):
    runs = load_grid(default_registry(), None).runs
    before = _ids()
    edit(module)
    after = _ids()
    pretrained = {f"{i}" for i, run in enumerate(runs) if run.spec["pretext"]["name"] != "none"}
    assert pretrained and len(pretrained) < len(runs)
    assert {i for i in before if after[i][0] != before[i][0]} == pretrained
    assert {i for i in before if after[i][1] != before[i][1]} == pretrained
    assert all(after[i] == before[i] == (after[i][0], None) for i in set(before) - pretrained)


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """The template plugin as an installed third-party distribution (a dist-info on sys.path, found
    by importlib.metadata as pip's would be), under a name of its own; yields its package folder."""
    site = tmp_path / "site"
    package = site / "thirdparty_example"
    shutil.copytree(ROOT / "plugins" / "template" / "benchbase_example", package,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    for path in package.glob("*.py"):
        path.write_text(path.read_text().replace("benchbase_example", "thirdparty_example"))
    info = site / "thirdparty_example-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-example\nVersion: 1.2.0\n")
    (info / "entry_points.txt").write_text("[benchbase]\nthirdparty = thirdparty_example.plugin\n")
    (info / "top_level.txt").write_text("thirdparty_example\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("BENCHBASE_PLUGINS", "core,thirdparty")
    monkeypatch.delenv("BENCHBASE_EXTRA_PLUGINS", raising=False)
    identity.clear_fingerprint_caches()
    yield package
    for name in [m for m in sys.modules if m.startswith("thirdparty_example")]:
        del sys.modules[name]
    identity.clear_fingerprint_caches()


@pytest.mark.slow
def test_a_third_party_distribution_is_keyed_whole(third_party):
    chosen = {
        "dataset": "example/rings",
        "protocol": "example-ordered",
        "encoder": "example-deepsets",
        "pretext": "example-masking",
        "rebalancer": "example-power",
    }

    def specs():
        registry = load_registry()
        assert not registry.failures, registry.failures
        settings = {**PROFILES["quick"], "threads": 1}
        ours = make_spec(registry, chosen, {}, settings, 0, "quick")
        mixed = make_spec(registry, {**chosen, "protocol": "iid", "rebalancer": "none"}, {}, settings, 0, "quick")
        return RunSpec(ours), RunSpec(mixed)

    ours, mixed = specs()
    assert ours.spec["code"]["encoder"].startswith("thirdparty-example 1.2.0+src.")
    assert mixed.spec["code"]["protocol"].startswith("benchbase 0.1.0+code.")

    encoders = third_party / "encoders.py"
    encoders.write_text(encoders.read_text() + "\n# a comment changes nothing\n")
    identity.clear_fingerprint_caches()
    assert (specs()[0].run_id, specs()[0].stage_id) == (ours.run_id, ours.stage_id)

    encoders.write_text(encoders.read_text().replace('reduce="sum"', 'reduce="mean"'))
    identity.clear_fingerprint_caches()
    edited, edited_mixed = specs()
    # what a third party's code imports is not known: an edit anywhere in it re-keys all of its plugins
    for kind in chosen:
        assert edited.spec["code"][kind] != ours.spec["code"][kind]
    assert edited.spec["code"]["harness"] == ours.spec["code"]["harness"]
    assert edited.run_id != ours.run_id and edited.stage_id != ours.stage_id
    assert edited_mixed.spec["code"]["protocol"] == mixed.spec["code"]["protocol"]  # the core's own is kept
    assert edited_mixed.run_id != mixed.run_id
