"""Entry point of the molecular plugin (group ``benchbase``, name ``molecules``)."""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register):
    pass


@hookimpl
def register_encoders(register):
    from benchbase_molecules.encoders import ENCODERS

    for cls in ENCODERS:
        register(cls)


@hookimpl
def register_pretext_tasks(register):
    from benchbase_molecules.pretext import PRETEXT_TASKS

    for cls in PRETEXT_TASKS:
        register(cls)
