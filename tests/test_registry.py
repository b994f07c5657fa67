"""Plugin discovery: listing, isolation of broken plugins, duplicate names, restriction."""

from __future__ import annotations

import json
import types

import pytest
from typer.testing import CliRunner

from benchbase import hookimpl
from benchbase.api import PluginError
from benchbase.registry import load_registry


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
    from benchbase.protocols import IID

    def register_protocols(register):
        register(IID)

    with pytest.raises(PluginError, match="duplicate protocol name 'iid'.*benchbase.*local"):
        load_registry(extra_modules=[_module("copycat", register_protocols=register_protocols)])


def test_restricting_plugins_by_name(monkeypatch):
    monkeypatch.setenv("BENCHBASE_PLUGINS", "core")
    registry = load_registry()
    assert {e.plugin for e in registry.listing()} == {"core"}


def test_unknown_name_lists_what_exists():
    with pytest.raises(PluginError, match="registered encoders: .*gin"):
        load_registry().get("encoder", "nope")
