"""The plugin registers what it provides, through its hooks, as benchbase loads it."""

from benchbase.registry import load_registry

from benchbase_example import plugin


def test_the_plugin_registers_its_contributions(monkeypatch):
    # benchbase's core only, then this module: no duplicate names when the plugin is also installed.
    monkeypatch.setenv("BENCHBASE_PLUGINS", "core")
    monkeypatch.delenv("BENCHBASE_EXTRA_PLUGINS", raising=False)
    registry = load_registry(extra_modules=[plugin])
    assert not registry.failures
    assert {(e.kind, e.name) for e in registry.listing() if e.plugin == plugin.__name__} == {
        ("dataset", "example/rings"),
        ("encoder", "example-deepsets"),
        ("pretext", "example-masking"),
        ("rebalancer", "example-power"),
        ("protocol", "example-ordered"),
        ("metric", "example_max_error"),
    }
