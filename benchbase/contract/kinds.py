"""The kinds of plugin, in one place: every kind a plugin can register, the kinds one run is made
of, the kinds that make up the method under test, and the name that means "no plugin of this kind"."""

from __future__ import annotations

#: Every kind of plugin, in the order listings show them.
KINDS = ("dataset", "encoder", "pretext", "rebalancer", "protocol", "metric", "executor")
#: What one run is made of: the sections of its spec that name a plugin, in the order labels show them.
RUN_KINDS = ("dataset", "protocol", "encoder", "pretext", "rebalancer")
#: The method under test: what tells two rows of one table (one dataset and protocol) apart.
METHOD_KINDS = ("encoder", "pretext", "rebalancer")
#: The pretext task and rebalancer named ``none`` are the absence of one.
NO_PRETEXT = "none"
NO_REBALANCER = "none"
