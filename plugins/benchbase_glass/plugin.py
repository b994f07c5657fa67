"""Entry point of the glass plugin (group ``benchbase``, name ``glass``).

Everything glass-specific (file formats, the simulator, targets, models, protocols) lives in this
package; the harness sees datasets with node and edge tasks, encoders, a pretext task, protocols
and a ``benchbase glass`` command group. Imports are deferred so that listing plugins stays fast.
"""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register):
    from benchbase_glass.datasets import DATASETS

    for name, factory, description in DATASETS:
        register(name, factory, description=description)


@hookimpl
def register_encoders(register):
    from benchbase_glass.encoders import ENCODERS

    for cls in ENCODERS:
        register(cls)


@hookimpl
def register_pretext_tasks(register):
    from benchbase_glass.pretext import PRETEXT_TASKS

    for cls in PRETEXT_TASKS:
        register(cls)


@hookimpl
def register_protocols(register):
    from benchbase_glass.protocols import PROTOCOLS

    for cls in PROTOCOLS:
        register(cls)


@hookimpl
def register_metrics(register):
    from benchbase_glass.metrics import PearsonPerGraph

    register(PearsonPerGraph)


@hookimpl
def register_commands(app):
    from benchbase_glass.cli import glass_app

    app.add_typer(glass_app, name="glass")
