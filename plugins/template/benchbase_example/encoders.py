"""An encoder: a torch module from a batch of graphs to node and graph embeddings."""

from __future__ import annotations

from benchbase import Embeddings, Encoder, FeatureSpec, GraphBatch, Param
from torch import nn
from torch_geometric.utils import scatter


class DeepSets(Encoder):
    """Embeds each node on its own and sums over the graph (Zaheer et al. 2017, "Deep Sets"):
    a baseline that ignores edges entirely, useful to see how much message passing adds."""

    name = "example-deepsets"
    description = "DeepSets baseline: per-node MLP and sum pooling, no message passing (benchbase-example)."
    requires = frozenset({"x_categorical"})
    # Parameters are typed: the grid checks every value against these before anything runs.
    param_spec = {
        "hidden": Param(64, "int", "embedding width", min=1),
        "layers": Param(2, "int", "per-node MLP layers", min=1),
    }

    def __init__(self, features: FeatureSpec, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        # One extra row per column: benchbase's mask token for masking pretext tasks.
        self.embeddings = nn.ModuleList(nn.Embedding(size + 1, hidden) for size in features.node_vocab)
        blocks = []
        for _ in range(layers):
            blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
        self.mlp = nn.Sequential(*blocks)
        self.out_dim = hidden

    def forward(self, batch: GraphBatch) -> Embeddings:
        h = sum(embed(batch.x[:, j]) for j, embed in enumerate(self.embeddings))
        h = self.mlp(h)
        graph = scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="sum")
        return Embeddings(node=h, graph=graph)
