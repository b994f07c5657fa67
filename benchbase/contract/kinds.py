"""The kinds of plugin, in one list, and the names that mean 'no plugin of this kind'."""

from __future__ import annotations

PLUGIN_KINDS = ("dataset", "protocol", "encoder", "pretext", "rebalancer")


NO_PRETEXT = "none"


NO_REBALANCER = "none"
