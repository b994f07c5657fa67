"""The benchbase plugin contract.

A plugin is a module named by an entry point in the group ``benchbase``::

    [project.entry-points.benchbase]
    my_plugin = "my_package.plugin"

The module implements any of the hooks below, each marked with ``@benchbase.hookimpl``. Every
hook receives a ``register`` callable and calls it once per thing it provides. The built-in
plugins (``benchbase.builtin``, ``benchbase_molecules``, ``benchbase_glass``) use this same group,
so the contract is exercised by every run.

What may be registered, and how it is built:

=============== ============================================== ==================================
kind            register(...)                                   built as
=============== ============================================== ==================================
dataset         ``register(DatasetSubclass)``                    ``cls(**params)``
dataset         ``register(name, factory, description="",       ``factory(**params) -> Dataset``
                param_spec={...})``
encoder         ``register(EncoderSubclass)``                    ``cls(features, **params)``
pretext         ``register(PretextTaskSubclass)``                ``cls(**params)``
rebalancer      ``register(RebalancerSubclass)``                 ``cls(**params)``
protocol        ``register(ProtocolSubclass)``                   ``cls(**params)``
metric          ``register(MetricSubclass)``                     ``cls()``
executor        ``register(ExecutorSubclass)``                   ``cls(jobs=N, **options)``
=============== ============================================== ==================================

Classes carry ``name``, ``description`` and ``param_spec`` (typed parameters, `benchbase.Param`;
a plain ``defaults`` dict is the older form, its types inferred from the values);
encoders and pretext tasks also ``requires`` (capabilities a dataset must provide, see
`benchbase.contract.api.Dataset.provides`). The interfaces are documented in `benchbase.contract.api`; a plugin
imports them, and all else it uses, from `benchbase` itself (the public API).
Names are global: two plugins registering the same name of the same kind make that name unusable
(``benchbase plugins`` lists the conflict, naming both distributions; a command that uses the name
stops with one line naming both). The contract's version is ``benchbase.CONTRACT_VERSION``; forms
it deprecates keep working, with a `DeprecationWarning` naming the new form and the contract
version that removes them (see the README's compatibility policy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("benchbase")
hookimpl = pluggy.HookimplMarker("benchbase")


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Register datasets: ``register(MyDataset)`` (name, description and parameters on the class), or
    ``register("qm9/homo_lumo_gap", factory, description="...", param_spec={...})`` for a factory.

    ``factory(**params)`` returns a `benchbase.contract.api.Dataset`; params come from the grid file.
    Construction must be cheap: load data lazily in ``Dataset.arrays()``.
    """


@hookspec
def register_encoders(register: Callable[[type], None]) -> None:
    """Register `benchbase.contract.api.Encoder` subclasses: ``register(GIN)``."""


@hookspec
def register_pretext_tasks(register: Callable[[type], None]) -> None:
    """Register `benchbase.contract.api.PretextTask` subclasses: ``register(NodeMasking)``."""


@hookspec
def register_rebalancers(register: Callable[[type], None]) -> None:
    """Register `benchbase.contract.api.Rebalancer` subclasses: ``register(Focal)``."""


@hookspec
def register_protocols(register: Callable[[type], None]) -> None:
    """Register `benchbase.contract.api.Protocol` subclasses: ``register(TimeProtocol)``."""


@hookspec
def register_metrics(register: Callable[[type], None]) -> None:
    """Register `benchbase.Metric` subclasses: ``register(PearsonPerGraph)``. A task names its
    headline metric (`benchbase.contract.api.TaskInfo.metric`); leaderboards look metrics up by name.

    The interface: class attributes ``name`` (global among metrics), ``description``,
    ``higher_is_better`` and ``kinds`` (the task kinds it applies to: "regression",
    "classification", "labels"), and ``compute(self, pred: Predictions) -> float`` on one slice's
    (label, prediction) pairs with finite labels, NaN where undefined. Optional, for speed on
    resamples: ``graph_sums``/``finish`` (metrics of per-graph sums) or ``on_rows``. Keyword
    parameters of ``__init__`` come from a leaderboard column's ``params``. A grid adds a metric to
    every table of its runs with ``[analysis] metrics = ["name", ...]``, a study to the tables of
    its runs with its own ``metrics`` key (test slice, tasks of the kinds the metric applies to)."""


@hookspec
def register_executors(register: Callable[[type], None]) -> None:
    """Register `benchbase.running.executors.Executor` subclasses: ``register(RayExecutor)``. ``benchbase run
    --executor NAME`` builds one as ``cls(jobs=N, **options)``, its options (its ``param_spec``) from
    the grid's ``[executor.NAME]`` table."""


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``benchbase`` CLI: ``app.add_typer(my_typer_app, name="glass")``."""
