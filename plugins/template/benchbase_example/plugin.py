"""The module the entry point names: its hooks register this plugin's contributions.

Each hook receives `register` and calls it once per class. Imports happen inside the hooks so that
listing plugins stays fast. See `benchbase.contract.hookspecs` for every hook and `benchbase` (the public API,
all a plugin imports) for the interfaces.
"""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register) -> None:
    from benchbase_example.datasets import Rings

    register(Rings)


@hookimpl
def register_encoders(register) -> None:
    from benchbase_example.encoders import DeepSets

    register(DeepSets)


@hookimpl
def register_pretext_tasks(register) -> None:
    from benchbase_example.pretext import Masking

    register(Masking)


@hookimpl
def register_rebalancers(register) -> None:
    from benchbase_example.rebalancers import PowerWeights

    register(PowerWeights)


@hookimpl
def register_protocols(register) -> None:
    from benchbase_example.protocols import Ordered

    register(Ordered)


@hookimpl
def register_metrics(register) -> None:
    from benchbase_example.metrics import MaxError

    register(MaxError)
