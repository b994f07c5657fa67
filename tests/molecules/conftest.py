"""Fixtures of the molecular encoder and pretext tests: real molecules featurised the OGB way."""

from __future__ import annotations

import numpy as np
import pytest
from toy_molecules import SMILES, ToyMolecules

from benchbase.compute.batching import TensorGraphs


@pytest.fixture(scope="module")
def toy() -> ToyMolecules:
    return ToyMolecules()


@pytest.fixture(scope="module")
def batch(toy):
    return TensorGraphs(toy.arrays()).batch(np.arange(len(SMILES)))


@pytest.fixture
def module_cache(tmp_path_factory, monkeypatch):
    """One cache for the test session, not the user's: label matrices and fingerprints are
    computed once and reused, as in real runs."""
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
