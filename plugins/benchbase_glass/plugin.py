"""Entry point of the glass plugin (group ``benchbase``, name ``glass``)."""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register):
    pass
