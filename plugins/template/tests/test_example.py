"""The plugin's own test: its encoder builds and runs on a small batch of graphs."""

import numpy as np
import torch

from benchbase.api import FeatureSpec, GraphArrays
from benchbase.batching import TensorGraphs
from benchbase_example.plugin import DeepSets


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
