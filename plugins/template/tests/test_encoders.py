"""The encoder: benchbase's conformance kit checks the contract; a test of its own checks what is
special about it."""

import numpy as np
import torch
from benchbase import FeatureSpec, GraphArrays, TensorGraphs
from benchbase.testing import check_encoder

from benchbase_example.encoders import DeepSets


def test_deepsets_conforms_to_the_encoder_contract():
    check_encoder(DeepSets)


def _graph_embedding(edge_index: np.ndarray) -> torch.Tensor:
    """One graph of three nodes with the given edges, embedded by a freshly seeded DeepSets."""
    x = np.array([[0], [1], [1]])
    arrays = GraphArrays(np.array([0, 3]), np.array([0, edge_index.shape[1]]), edge_index, x)
    torch.manual_seed(0)
    encoder = DeepSets(FeatureSpec(node_vocab=(2,)), hidden=8)
    return encoder(TensorGraphs(arrays).batch(np.array([0]))).graph


def test_deepsets_ignores_edges():
    with_edges = _graph_embedding(np.array([[0, 1], [1, 0]]))
    assert torch.equal(with_edges, _graph_embedding(np.zeros((2, 0), dtype=np.int64)))
