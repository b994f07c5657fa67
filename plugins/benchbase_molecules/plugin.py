"""Entry point of the molecular plugin (group ``benchbase``, name ``molecules``)."""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register):
    pass


@hookimpl
def register_encoders(register):
    pass


@hookimpl
def register_pretext_tasks(register):
    pass
