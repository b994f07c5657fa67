"""Typed plugin parameters: one declaration, one validator, errors that name file, table and key."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from benchbase.cli import app
from benchbase.compute.settings import TRAINING
from benchbase.contract.errors import GridError
from benchbase.contract.params import Param, infer, spec_of, validate
from benchbase.contract.registry import default_registry
from benchbase.running.planning import expand_grid

runner = CliRunner()


def test_param_checks_types_bounds_choices_and_null():
    layers = Param(5, "int", min=1)
    assert layers.problem(3) is None and layers.problem(0) and layers.problem(2.5) and layers.problem(True)
    assert layers.problem(None) and "integer >= 1" in layers.allowed()
    fraction = Param(0.1, "number", min=0.0, max=1.0, max_open=True)
    assert fraction.problem(0) is None and fraction.problem(1.0) and fraction.problem(math.nan)
    assert Param("mean", "str", choices=("mean", "sum")).problem("max")
    assert Param(None, "int", min=1).problem(None) is None  # a default of None allows null
    assert Param([1.0], "list", items="number").problem([1, "a"])
    with pytest.raises(ValueError):
        Param(1, "integer")


def test_specs_from_declarations_defaults_or_signatures():
    class Old:
        defaults = {"hidden": 64, "rate": 0.5, "name": "x", "flag": True}

    with pytest.warns(
        DeprecationWarning,
        match=r"Old: `defaults = \{...\}` is deprecated and removed in contract 2.0: declare param_spec",
    ):
        spec = spec_of(Old)
    assert {k: p.type for k, p in spec.items()} == {"hidden": "int", "rate": "number", "name": "str", "flag": "bool"}

    def factory(root: str | None = None, size: int = 3, **_: object) -> None: ...

    assert spec_of(factory) is None  # takes anything: nothing to check

    def strict(root=None, size=3):
        return None

    assert set(spec_of(strict)) == {"root", "size"} and infer(3).type == "int"
    assert validate(spec_of(strict), {"size": 4}, "here") == {"root": None, "size": 4}
    with pytest.raises(GridError, match="here: unknown parameter 'sise'; known: root .*; size"):
        validate(spec_of(strict), {"sise": 4}, "here")


def test_every_builtin_plugin_declares_typed_parameters():
    registry = default_registry()
    for entry in registry.listing():
        if entry.distribution == "local" or entry.kind == "metric":
            continue
        spec = entry.param_spec
        assert spec is not None, f"{entry.kind} {entry.name} takes anything"
        untyped = [k for k, p in spec.items() if p.type == "any" and k != "bandwidth"]
        assert not untyped, f"{entry.kind} {entry.name}: untyped {untyped}"


def _dry_run(tmp_path, text):
    grid = tmp_path / "grid.toml"
    grid.write_text(text)
    return runner.invoke(app, ["run", "--grid", str(grid), "--dry-run", "--store", str(tmp_path / "store")])


STUDY = '[[study]]\ndatasets = ["qm9/homo_lumo_gap"]\nprotocols = ["extrapolation-threshold"]\nencoders = ["gin"]\n'


def test_a_misspelt_dataset_parameter_is_an_error_not_a_missing_dataset(tmp_path):
    result = _dry_run(tmp_path, f'[params.dataset."qm9/homo_lumo_gap"]\nsubsett = 1500\n{STUDY}')
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "[params.dataset.\"qm9/homo_lumo_gap\"]: unknown parameter 'subsett'" in line
    assert "known: positions" in line and "subset (an integer >= 1 and <= 130831 or null" in line


@pytest.mark.parametrize(
    "table, expected",
    [
        ('[params.dataset."qm9/homo_lumo_gap"]\nsubset = -5', "subset must be an integer >= 1"),
        ('[params.dataset."qm9/homo_lumo_gap"]\nsubset = 200000', "<= 130831"),
        ("[params.encoder.gin]\nlayers = 0", "layers must be an integer >= 1, got 0"),
        ("[params.encoder.gin]\nhidden = 32.5", "hidden must be an integer >= 1, got float"),
        ('[params.protocol."extrapolation-threshold"]\nquantile = 1.5', "quantile must be a number > 0 and < 1"),
        ('[params.protocol."extrapolation-threshold"]\nside = "middle"', "side must be one of 'upper', 'lower'"),
        ('[params.pretext."node-masking"]\nmask_rate = 0', "mask_rate must be a number > 0 and <= 1"),
        ("[params.rebalancer.focal]\ngamma = -1", "gamma must be a number >= 0"),
        ('[train]\nepochs = "many"', "[train]: epochs must be an integer >= 1, got str"),
        ("[train]\nbatch_size = 0", "batch_size must be an integer >= 1"),
        ('[train]\npretrain_pool = "test"', "pretrain_pool must be one of 'all', 'train'"),
        ("[train]\nhiden = 32", "[train]: unknown parameter 'hiden'"),
        ("seeds = [-1]", "seeds must be a non-empty list of integers in [0, 2**32)"),
    ],
)
def test_bad_values_of_every_kind_fail_the_dry_run_with_one_line(tmp_path, table, expected):
    study = STUDY + 'pretext = ["none", "node-masking"]\nrebalancers = ["none", "focal"]\n'
    result = _dry_run(tmp_path, f"{table}\n{study}")
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert str(tmp_path / "grid.toml") in result.output


def test_misspelt_tables_and_cross_parameter_rules_fail_at_planning(tmp_path):
    result = _dry_run(tmp_path, STUDY.replace("[[study]]", "[[studdy]]"))
    assert result.exit_code == 2 and "unknown top-level key(s) ['studdy']" in result.output
    result = _dry_run(tmp_path, STUDY + "[study.params.encoder.gatv2]\nhidden = 30\n".replace("gatv2", "gin") + "")
    assert result.exit_code == 0, result.output
    gat = STUDY.replace('"gin"', '"gatv2"') + "[study.params.encoder.gatv2]\nhidden = 30\nheads = 4\n"
    result = _dry_run(tmp_path, gat)
    assert result.exit_code == 2 and "hidden (30) must be a multiple of heads (4)" in result.output


VALUES = st.one_of(st.integers(-3, 400), st.floats(-2, 2), st.just(float("nan")), st.text(max_size=4), st.booleans())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    layers=VALUES,
    quantile=VALUES,
    epochs=VALUES,
    pool=VALUES,
    extra=st.sampled_from(["", "hiden = 3", "subsett = 3"]),
)
def test_generated_grids_expand_or_fail_with_a_grid_error(synthetic_env, layers, quantile, epochs, pool, extra):
    raw = {
        "seeds": [0],
        "train": {"epochs": epochs, "pretrain_pool": pool},
        "params": {
            "encoder": {"tiny": {"hidden": layers}},
            "protocol": {"extrapolation-threshold": {"quantile": quantile}},
        },
        "study": [
            {
                "datasets": ["synthetic/chains"],
                "protocols": ["extrapolation-threshold"],
                "encoders": ["tiny"],
                "pretext": ["none", "tiny-masking"],
            }
        ],
    }
    if extra:
        key, _, value = extra.partition(" = ")
        raw["params"]["encoder"]["tiny"][key] = int(value)
    try:
        grid = expand_grid(default_registry(), raw, "generated.toml")
    except GridError as exc:
        assert str(exc).startswith("generated.toml") and "\n" not in str(exc)
        return
    assert grid.runs and all(run.spec["train"]["epochs"] == epochs for run in grid.runs)
    assert TRAINING["epochs"].problem(epochs) is None and TRAINING["pretrain_pool"].problem(pool) is None
