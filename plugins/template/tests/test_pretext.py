"""The pretext task: benchbase's conformance kit checks the contract; a test of its own checks its
class counts."""

import numpy as np
from benchbase.testing import SyntheticGraphs, check_pretext

from benchbase_example.pretext import Masking


def test_masking_conforms_to_the_pretext_contract():
    check_pretext(Masking)


def test_masking_counts_the_classes_of_the_pool():
    dataset = SyntheticGraphs()
    task = Masking()
    task.prepare(dataset, np.array([0, 1]))
    nodes = dataset.arrays().node_ptr[2]
    assert task.class_counts().sum() == nodes and len(task.class_counts()) == dataset.features.node_vocab[0]
