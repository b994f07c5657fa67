"""Entry point of the molecular plugin (group ``benchbase``, name ``molecules``)."""

from __future__ import annotations

from benchbase import hookimpl


@hookimpl
def register_datasets(register):
    """QM9 (``qm9``, ``qm9/<task>``), OGB graph-property sets (``ogbg-mol*``), ``pcqm4mv2``, the measured
    sets ``freesolv`` (``freesolv/<task>``) and ``solubility``, and ``csv`` (your own file).
    Registration only imports light modules; data is loaded lazily."""
    from benchbase_molecules import csv_dataset, measured, ogb_sets, qm9

    qm9.register(register)
    ogb_sets.register(register)
    measured.register(register)
    csv_dataset.register(register)


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
