"""The plugin's own tests: benchbase's conformance kit checks the contract (shapes, determinism,
parameters, pickling, a training step); a test of its own checks what is special about it."""

import numpy as np
import torch

from benchbase.api import FeatureSpec, GraphArrays
from benchbase.batching import TensorGraphs
from benchbase.testing import check_encoder
from benchbase_example.plugin import DeepSets


def test_deepsets_conforms_to_the_encoder_contract():
    check_encoder(DeepSets)


def test_deepsets_embeds_every_graph():
    arrays = GraphArrays(
        node_ptr=np.array([0, 2, 5]),
        edge_ptr=np.array([0, 2, 2]),
        edge_index=np.array([[0, 1], [1, 0]]),
        x=np.array([[0], [1], [1], [0], [1]]),
    )
    batch = TensorGraphs(arrays).batch(np.array([0, 1]))
    encoder = DeepSets(FeatureSpec(node_vocab=(2,)), hidden=8)
    emb = encoder(batch)
    assert emb.node.shape == (5, 8) and emb.graph.shape == (2, 8)
    emb.graph.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    assert not torch.isnan(emb.graph).any()
