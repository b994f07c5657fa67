"""The public API: what `benchbase` exports (loaded on first use), its contract version, the layer
lists of the import contracts (``[tool.importlinter]``, checked by ``lint-imports`` in CI), and the
public entry for research scripts (`benchbase.fine_tunings`, `FineTuner.fit`'s ``on_epoch``)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import benchbase
from benchbase.contract import identity
from benchbase.contract.identity import HARNESS_COMPUTING, HARNESS_INFRASTRUCTURE

ROOT = Path(__file__).resolve().parents[2]

#: Modules in no layer of the contracts: the core's plugin registration, the plugin scaffold, the
#: conformance kit (public, for plugin tests).
NEITHER = {"benchbase.builtin", "benchbase.scaffold", "benchbase.testing"}
LAYERS = ["benchbase.cli", "benchbase.reporting", "benchbase.running", "benchbase.compute", "benchbase.contract"]


def _type_checking_names() -> set[str]:
    """The names that ``if TYPE_CHECKING:`` in benchbase/__init__.py binds."""
    tree = ast.parse(Path(benchbase.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    return {alias.asname or alias.name for node in block.body for alias in node.names}


def test_all_the_export_map_and_the_type_checking_block_agree():
    exports = set(benchbase._EXPORTS)
    assert len(benchbase.__all__) == len(set(benchbase.__all__))
    assert set(benchbase.__all__) == exports | {"CONTRACT_VERSION", "__version__", "hookimpl"}
    assert _type_checking_names() == exports
    for name, (module, attribute) in benchbase._EXPORTS.items():
        # Computing code, or the one export that plans a grid in this process.
        assert module in identity.harness_modules() + HARNESS_INFRASTRUCTURE + ("benchbase.running.fine_tunings",)
        assert getattr(benchbase, name) is getattr(importlib.import_module(module), attribute)
    assert set(benchbase.__all__) <= set(dir(benchbase))
    with pytest.raises(AttributeError, match="no attribute 'not_an_export'"):
        benchbase.not_an_export  # noqa: B018


def test_the_contract_version_is_major_minor():
    assert re.fullmatch(r"[1-9][0-9]*\.[0-9]+", benchbase.CONTRACT_VERSION)
    assert "MAJOR goes up" in benchbase.__doc__ and "MINOR goes up" in benchbase.__doc__


def test_a_deprecated_name_warns_on_every_use(monkeypatch):
    monkeypatch.setitem(benchbase._EXPORTS, "OldParam", ("benchbase.contract.params", "Param"))
    monkeypatch.setitem(benchbase._DEPRECATED, "OldParam", ("benchbase.Param", "2.0"))
    for _ in range(2):
        with pytest.warns(DeprecationWarning, match="OldParam is deprecated .* 2.0: use benchbase.Param"):
            assert benchbase.OldParam is benchbase.Param
    assert "OldParam" not in vars(benchbase)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        benchbase.Param  # noqa: B018  # others do not warn


@pytest.mark.slow
def test_importing_benchbase_is_light_and_pins_the_numerics_first():
    code = (
        "import os, sys; import benchbase; assert 'torch' not in sys.modules, 'torch'; "
        "assert 'benchbase.contract.api' not in sys.modules; "
        "from benchbase import Dataset; assert 'torch' in sys.modules; "
        "print(os.environ.get('MKL_CBWR'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "BENCHBASE_NUMERICS")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "COMPATIBLE"


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_every_module_of_benchbase_is_in_a_layer_or_named_as_in_none():
    """A new module must be placed knowingly: in a layer of the layers contract, or in `NEITHER`."""
    assert _contracts()["layers"]["layers"] == LAYERS
    modules = {f"benchbase.{m.name}" for m in pkgutil.iter_modules(benchbase.__path__)}
    assert modules - set(LAYERS) == NEITHER, "place these modules in a layer (benchbase/<layer>/) or in NEITHER"


def test_the_fingerprint_covers_the_computing_layer_and_the_contract_it_imports():
    """`HARNESS_COMPUTING` is the package and every module of `benchbase.compute`, the modules that
    the computing-layer contract keeps away from running, reporting and the CLI."""
    contract = _contracts()["computing-layer"]
    assert contract["source_modules"] == ["benchbase", "benchbase.compute", "benchbase.contract"]
    assert contract["forbidden_modules"] == ["benchbase.running", "benchbase.reporting", "benchbase.cli"]
    compute = {
        f"benchbase.compute.{m.name}"
        for m in pkgutil.iter_modules(importlib.import_module("benchbase.compute").__path__)
    }
    assert set(HARNESS_COMPUTING) == {"benchbase", "benchbase.compute"} | compute
    covered = set(identity.harness_modules())
    assert {"benchbase.contract.api", "benchbase.contract.params", "benchbase.contract.types"} <= covered
    assert not covered & set(HARNESS_INFRASTRUCTURE)
    assert all(m.startswith(("benchbase.compute", "benchbase.contract")) for m in covered - {"benchbase"})


def test_bundled_plugins_are_forbidden_every_harness_module_but_the_public_ones():
    contract = _contracts()["public-api"]
    assert contract["forbidden_modules"] == ["benchbase.*"]
    assert {rule.split(" -> ")[1] for rule in contract["ignore_imports"]} == {"benchbase.testing"}


# --- fine-tuning outside the runner --------------------------------------------------------------

GRID = {
    "seeds": [0],
    "train": {"epochs": 4, "patience": 4, "pretrain_epochs": 1, "batch_size": 32},
    "study": [
        {"datasets": ["synthetic/chains"], "protocols": ["iid"], "encoders": ["tiny"], "pretext": ["tiny-masking"]}
    ],
}


def test_fine_tunings_are_the_runs_the_runner_makes_and_report_every_epoch(synthetic_env, tmp_path):
    from benchbase.compute.pretraining import pretrain
    from benchbase.compute.run import run_finetune
    from benchbase.contract.registry import default_registry

    runs = list(benchbase.fine_tunings(GRID))
    assert len(runs) == 1
    prepared = runs[0]
    seen: list[benchbase.EpochEnd] = []
    info = prepared.tuner.fit(prepared.split, on_epoch=seen.append)
    assert [end.epoch for end in seen] == list(range(info["epochs_run"]))
    assert seen[info["best_epoch"]].valid_loss == info["best_valid_loss"]
    assert all(end.tuner is prepared.tuner for end in seen)
    # The same run through the harness's own path (pretraining stage, then fine-tuning): same numbers.
    registry = default_registry()
    checkpoint = tmp_path / "stage.pt"
    pretrain(registry, prepared.run.stage_spec(), checkpoint)
    outcome = run_finetune(registry, prepared.run, checkpoint)
    ours = prepared.tuner.predict(prepared.split["test"])
    for task, pred in outcome.predictions["test"].items():
        np.testing.assert_array_equal(ours[task].y_pred, pred.y_pred)
    assert outcome.details["fit"] == info


def test_fine_tunings_of_a_grid_file_say_why_there_is_no_run(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'seeds = [0]\n[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
    )
    prepared = next(benchbase.fine_tunings(grid))
    assert "tuner" not in vars(prepared)  # built on first use only
    assert prepared.split_task.name == prepared.dataset.tasks[0].name
    skipped = {**GRID, "study": [{**GRID["study"][0], "protocols": ["scaffold"]}]}  # chains have no groups
    with pytest.raises(benchbase.PluginError, match="no run to fine-tune: .*scaffold"):
        next(benchbase.fine_tunings(skipped))


# --- module paths of 0.1 ------------------------------------------------------------------------


@pytest.mark.slow
def test_an_old_module_path_still_imports_with_a_warning_naming_the_new_home():
    code = (
        "import warnings; warnings.simplefilter('always'); import benchbase; "
        "from benchbase.train import FineTuner; from benchbase.api import Dataset; import benchbase.grid as grid; "
        "from benchbase.running.planning import load_grid; from benchbase.compute.finetuning import FineTuner as F; "
        "from benchbase.contract.api import Dataset as D; "
        "assert FineTuner is F and Dataset is D and grid.load_grid is load_grid; "
        "import benchbase.stats"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "benchbase.train is deprecated and removed in contract 2.0: it moved to benchbase.compute" in result.stderr
    assert "benchbase.api is deprecated" in result.stderr and "benchbase.contract.api" in result.stderr
    assert "benchbase.stats is deprecated" in result.stderr and "benchbase.reporting.stats" in result.stderr


def test_every_old_module_path_leads_to_modules_that_exist():
    from benchbase.contract.moved import MOVED

    for old, homes in MOVED.items():
        assert importlib.util.find_spec(old) is not None
        for home in homes:
            assert importlib.import_module(home).__name__ == home
        assert not (ROOT / (old.replace(".", "/") + ".py")).exists(), f"{old} exists again: drop it from MOVED"
