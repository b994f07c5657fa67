"""The plugin registers what it provides, through its hooks, as benchbase loads it."""

from benchbase.testing import registered_by

from benchbase_example import plugin


def test_the_plugin_registers_its_contributions():
    # benchbase's core plugins, then this module: no duplicate names when the plugin is also installed.
    assert registered_by(plugin) == {
        ("dataset", "example/rings"),
        ("encoder", "example-deepsets"),
        ("pretext", "example-masking"),
        ("rebalancer", "example-power"),
        ("protocol", "example-ordered"),
        ("metric", "example_max_error"),
    }
