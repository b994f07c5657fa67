"""The dataset: benchbase's conformance kit checks the contract; a test of its own checks the data."""

import numpy as np
from benchbase.testing import check_dataset

from benchbase_example.datasets import Rings


def test_rings_conform_to_the_dataset_contract():
    check_dataset(Rings(graphs=40))


def test_rings_are_the_same_for_a_seed_and_labels_count_bonds():
    first, again = Rings(graphs=40).arrays(), Rings(graphs=40).arrays()
    assert np.array_equal(first.x, again.x) and np.array_equal(first.edge_index, again.edge_index)
    labels = first.targets["mixed_bonds"]
    bonds = np.diff(first.edge_ptr) / 2
    assert np.all(labels == np.round(labels)) and np.all((labels >= 0) & (labels <= bonds))
