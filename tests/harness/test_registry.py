"""Plugin discovery: listing, isolation of broken plugins, duplicate names, restriction."""

from __future__ import annotations

import json
import types

import pytest
from typer.testing import CliRunner

from benchbase import hookimpl
from benchbase.contract.api import PluginError
from benchbase.contract.registry import load_registry


def _module(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        setattr(module, hook_name, hookimpl(fn))
    return module


def test_builtins_register_through_entry_points():
    registry = load_registry()
    assert not registry.failures
    kinds = {(e.kind, e.name): e for e in registry.listing()}
    assert kinds[("protocol", "iid")].distribution == "benchbase"
    assert kinds[("rebalancer", "inverse-frequency")].plugin == "core"
    assert ("encoder", "gin") in kinds and ("pretext", "node-masking") in kinds


def test_plugins_json_lists_kind_name_distribution_version():
    from benchbase.cli import app

    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {"kind", "name", "distribution", "version"} <= set(rows[0])
    assert {r["kind"] for r in rows} >= {"encoder", "pretext", "rebalancer", "protocol"}


def test_a_broken_plugin_is_reported_and_others_keep_working():
    def register_encoders(register):
        raise RuntimeError("boom")

    broken = _module("broken_plugin", register_encoders=register_encoders)
    registry = load_registry(extra_modules=[broken])
    assert [f.plugin for f in registry.failures] == ["broken_plugin"]
    assert "RuntimeError: boom" in registry.failures[0].error
    assert registry.names("protocol")  # the others are intact


def test_duplicate_names_name_both_distributions():
    from benchbase.compute.protocols import IID

    def register_protocols(register):
        register(IID)

    registry = load_registry(extra_modules=[_module("copycat", register_protocols=register_protocols)])
    with pytest.raises(PluginError, match="duplicate protocol name 'iid'.*benchbase.*local"):
        registry.get("protocol", "iid")
    assert "iid" not in registry.names("protocol") and registry.get("protocol", "scaffold")


def test_restricting_plugins_by_name(monkeypatch):
    monkeypatch.setenv("BENCHBASE_PLUGINS", "core")
    registry = load_registry()
    assert {e.plugin for e in registry.listing()} == {"core"}


def test_unknown_name_lists_what_exists():
    with pytest.raises(PluginError, match="registered encoders: .*gin"):
        load_registry().get("encoder", "nope")


@pytest.fixture
def clash_env(synthetic_env, monkeypatch):
    from benchbase.contract.registry import reset_default_registry

    monkeypatch.setenv("BENCHBASE_EXTRA_PLUGINS", "synthetic_plugin,clash_plugin")
    reset_default_registry()
    yield
    reset_default_registry()


def _dry_run(tmp_path, encoder: str):
    from benchbase.cli import app

    grid = tmp_path / "grid.toml"
    grid.write_text(f'[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\nencoders = ["{encoder}"]\n')
    return CliRunner().invoke(app, ["run", "--grid", str(grid), "--store", str(tmp_path / "s"), "--dry-run"])


def test_a_name_registered_twice_is_listed_and_stops_only_what_uses_it(clash_env, tmp_path):
    from benchbase.cli import app

    listing = CliRunner().invoke(app, ["plugins"])
    assert listing.exit_code == 0, listing.output
    both = (
        "duplicate encoder name 'gin': provided by benchbase (plugin 'molecules') and by local (plugin 'clash_plugin')"
    )
    assert both in listing.output and "CONFLICT: registered by benchbase" in listing.output
    rows = json.loads(CliRunner().invoke(app, ["plugins", "--json"]).stdout)
    assert [r["conflict"] for r in rows if r["name"] == "gin"] == [
        ["benchbase (plugin 'molecules')", "local (plugin 'clash_plugin')"]
    ]
    assert CliRunner().invoke(app, ["--help"]).exit_code == 0
    used = _dry_run(tmp_path, "gin")
    errors = [line for line in used.output.splitlines() if line.startswith("error:")]
    assert used.exit_code == 2 and len(errors) == 1 and both in errors[0], used.output
    assert "Traceback" not in used.output
    assert _dry_run(tmp_path, "tiny").exit_code == 0  # every other name keeps working


def test_a_function_named_like_a_hook_but_not_one_is_reported(clash_env):
    from benchbase.cli import app
    from benchbase.contract.registry import default_registry

    assert [m.function for m in default_registry().misnamed] == ["register_encoder"]
    listing = CliRunner().invoke(app, ["plugins"])
    expected = (
        "plugin 'clash_plugin' (local) defines register_encoder, which is not a hook; did you mean register_encoders?"
    )
    assert listing.exit_code == 0 and expected in listing.output, listing.output


def test_the_bundled_plugins_define_no_misnamed_hook():
    assert load_registry().misnamed == []
