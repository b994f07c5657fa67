"""Entry point of the molecular plugin (group ``benchbase``, name ``molecules``)."""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register):
    """QM9 (``qm9``, ``qm9/<task>``), OGB graph-property sets (``ogbg-mol*``) and ``pcqm4mv2``.
    Registration only imports light modules; data is loaded lazily by ``Dataset.arrays()``."""
    from benchbase_molecules import ogb_sets, qm9

    qm9.register(register)
    ogb_sets.register(register)


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
