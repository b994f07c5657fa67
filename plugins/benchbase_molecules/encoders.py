"""Graph encoders for molecules (and any dataset with categorical or float node/edge features).

Every encoder embeds its inputs with `InputEmbedding`: one table per categorical column, summed (the
OGB ``AtomEncoder``/``BondEncoder`` scheme), each table with ONE EXTRA ROW at index ``vocab[j]`` for
the mask token that masking pretext tasks write; float features go through a linear layer instead.
Message passing is written with batch-level gathers and ``index_add``/``scatter`` (no Python loop
over graphs), which is what keeps small-molecule training fast on a CPU.

Pooling (``mean``, ``sum``, ``max``) turns node embeddings into graph embeddings.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.utils import scatter

from benchbase import Embeddings, Encoder, FeatureSpec, GraphBatch, Param, PluginError, spec_of, validate

POOLINGS = ("mean", "sum", "max")


def LAYERS(default: int) -> Param:  # noqa: N802 - reads as a type in declarations
    return Param(default, "int", "message-passing layers", min=1)


def HIDDEN(default: int) -> Param:  # noqa: N802
    return Param(default, "int", "embedding width", min=1)


def DROPOUT(default: float) -> Param:  # noqa: N802
    return Param(default, "number", "dropout after each layer", min=0.0, max=1.0, max_open=True)


POOLING = Param("mean", "str", "node -> graph pooling", choices=POOLINGS)
STACKED = {"layers": LAYERS(5), "hidden": HIDDEN(300), "dropout": DROPOUT(0.5), "pooling": POOLING}


class InputEmbedding(nn.Module):
    """Categorical columns -> sum of per-column embeddings (with a mask row each); floats -> Linear.

    All categorical tables live in one `nn.Embedding` with per-column offsets, so a lookup is a
    single gather. The per-row sum over columns is one `embedding_bag` call: ``table(ids).sum(1)``
    would materialise a (rows, columns, width) tensor and pay for large strided copies in backward.
    With neither categorical nor float inputs the output is one learned vector.
    """

    def __init__(self, vocab: tuple[int, ...], float_dim: int, out_dim: int) -> None:
        super().__init__()
        self.vocab = tuple(int(v) for v in vocab)
        self.float_dim = int(float_dim)
        self.out_dim = out_dim
        if self.vocab:
            sizes = torch.tensor([v + 1 for v in self.vocab])  # +1: the mask token row
            self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)
            self.register_buffer("max_value", sizes - 1, persistent=False)  # = vocab[j], the mask token
            self.table = nn.Embedding(int(sizes.sum()), out_dim)
            nn.init.xavier_uniform_(self.table.weight)
        elif self.float_dim:
            self.linear = nn.Linear(self.float_dim, out_dim)
        else:
            self.constant = nn.Parameter(torch.randn(out_dim) * 0.1)

    def forward(self, values: torch.Tensor | None, rows: int) -> torch.Tensor:
        if self.vocab:
            if values is None:
                raise PluginError("this encoder was built for categorical features but the batch carries none")
            return _ColumnEmbeddingSum.apply(values + self.offsets, self.table.weight)
        if self.float_dim:
            if values is None:
                raise PluginError("this encoder was built for float features but the batch carries none")
            return self.linear(values.float().reshape(rows, -1))
        return self.constant.expand(rows, -1)

    def row_counts(self, values: torch.Tensor, index: torch.Tensor, rows: int) -> torch.Tensor:
        """(rows, table rows) float counts: how often each row of `table` is looked up by the
        categorical value rows that `index` sends to each output row. Since a lookup is linear in
        its one-hot counts, ``row_counts(v, i, n) @ table.weight`` equals the embeddings of `v`
        summed by `index` into `n` rows, without building one embedding per value row."""
        if not self.vocab:
            raise PluginError("row counts need categorical features; this embedding was built for floats or none")
        if values.numel() and (values.min() < 0 or (values > self.max_value).any()):
            # Out-of-range values would silently land in a neighbouring column's (or row's) counts.
            raise PluginError(
                f"categorical feature values must lie in [0, vocab[j]] (vocab {self.vocab}, vocab[j] = mask token); "
                f"got values in [{int(values.min())}, {int(values.max())}]"
            )
        width = self.table.num_embeddings
        flat = (index.unsqueeze(1) * width + values + self.offsets).reshape(-1)
        return torch.bincount(flat, minlength=rows * width).reshape(rows, width).to(self.table.weight.dtype)


class _ColumnEmbeddingSum(torch.autograd.Function):
    """``sum_j table[ids[:, j]]`` per row. The forward is `F.embedding_bag`; its backward adds each
    column's rows of the incoming gradient into the table with `index_add_`. The built-in backward
    sorts every index of the batch first, which made it the costliest step of a small GIN's
    backward pass. `index_add_` on CPU adds in index order, so the result is deterministic."""

    @staticmethod
    def forward(ctx: Any, ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.table_shape = weight.shape
        return F.embedding_bag(ids, weight, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (ids,) = ctx.saved_tensors
        grad_weight = grad.new_zeros(ctx.table_shape)
        for column in ids.unbind(1):
            grad_weight.index_add_(0, column, grad)
        return None, grad_weight


def dropout(h: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, the same distribution as `F.dropout`. On CPU, the ``bernoulli_`` that
    `F.dropout` draws its mask with is about 3x slower than ``rand_like`` and a comparison (measured
    on a 2300 x 300 float tensor, 1 thread, torch 2.13), and dropout after every layer made it a
    visible share of a GIN training step. The random stream differs from `F.dropout`'s."""
    if not training or p == 0.0:
        return h
    # The scale is folded into the mask (0 or 1/(1-p), exact): one product forward and one in
    # backward instead of two each, and the same bits as ``h * keep * scale``.
    return h * (torch.rand_like(h) >= p).to(h.dtype).mul_(1.0 / (1.0 - p))


def has_edge_features(features: FeatureSpec) -> bool:
    return bool(features.edge_vocab) or features.edge_dim > 0


def edge_embedding(features: FeatureSpec, dim: int) -> InputEmbedding | None:
    """An embedding of the bond (edge) features, or None when the dataset has none."""
    return InputEmbedding(features.edge_vocab, features.edge_dim, dim) if has_edge_features(features) else None


def pool(node: torch.Tensor, batch: GraphBatch, how: str) -> torch.Tensor:
    """Node embeddings -> graph embeddings by `how` in `POOLINGS`."""
    return scatter(node, batch.batch, dim=0, dim_size=batch.num_graphs, reduce=how)


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm over rows that normalises a lone row with its running statistics. Batch statistics
    of one row are undefined (torch raises), yet a training batch holding one single-atom molecule
    (methane in FreeSolv, the remainder of 513 graphs in batches of 32) is data, not an error. Any
    batch of two rows or more is normalised exactly as by `nn.BatchNorm1d`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def mlp(sizes: list[int], batchnorm: bool = True, last_activation: bool = False) -> nn.Sequential:
    """Linear layers with BatchNorm and ReLU between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            if batchnorm:
                layers.append(BatchNorm(b))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _check_divides(name: str, params: dict[str, Any], key: str) -> None:
    """`hidden` is split into `params[key]` equal parts (attention heads, PNA towers)."""
    parts, hidden = params[key], params["hidden"]
    if not isinstance(parts, int) or parts < 1 or not isinstance(hidden, int) or hidden % parts:
        raise PluginError(f"encoder {name!r}: hidden ({hidden!r}) must be a multiple of {key} ({parts!r})")


class BaseEncoder(Encoder):
    """Parameter checking shared by the encoders: ``layers``, ``hidden``, ``dropout``, ``pooling``."""

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        super().__init__()
        self.features = features
        self.hparams = validate(spec_of(type(self)), params, f"encoder {self.name!r}")
        missing = {"pos"} & set(self.requires) if not features.has_pos else set()
        if missing:
            raise PluginError(f"encoder {self.name!r} needs 3D coordinates (pos) but the dataset has none")


# --------------------------------------------------------------------------------------------- GIN


class HuGINLayer(nn.Module):
    """One GIN layer of Hu et al. 2020 ("Strategies for Pre-training Graph Neural Networks"):
    messages ``h_j + e_ij`` summed over neighbours *and a self-loop* (whose bond embedding is its
    own learned vector), then an MLP ``hidden -> 2 hidden -> hidden``. Each layer has its own bond
    embedding, as in their code.

    The bond part of the sum, ``sum_j e_ij``, is linear in the embedding lookup, so with categorical
    bond features it is computed as ``bond_counts @ table`` from per-node counts of each bond-feature
    value (`InputEmbedding.row_counts`, computed once per batch by `GIN`) instead of gathering one
    embedding per edge: the same sum up to float rounding, with far less memory traffic."""

    def __init__(self, hidden: int, features: FeatureSpec) -> None:
        super().__init__()
        self.edge = edge_embedding(features, hidden)
        self.self_loop = nn.Parameter(torch.randn(hidden) * 0.1)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, batch: GraphBatch, bond_counts: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = batch.edge_index
        # In place on the fresh sum: neither backward needs the tensor it overwrites, and an
        # out-of-place index_add would copy (nodes x hidden) first.
        agg = (h + self.self_loop).index_add_(0, dst, h.index_select(0, src))  # self-loop message + neighbours' h_j
        if self.edge is None:
            return self.mlp(agg)
        if bond_counts is not None:  # categorical bonds: sum_j e_ij = counts @ table
            return self.mlp(agg.add_(bond_counts @ self.edge.table.weight))
        bonds = self.edge(batch.edge_attr, src.numel())  # float bond features: one embedding per edge
        return self.mlp(agg.index_add_(0, dst, bonds))


class GIN(BaseEncoder):
    """GIN with node and bond embeddings, after Hu et al. 2020: `layers` HuGINLayers, each followed by
    BatchNorm, ReLU (not after the last layer) and dropout; the last layer's node embeddings are
    pooled. Defaults: 5 layers x 300, dropout 0.5 and mean pooling (their fine-tuning settings)."""

    name = "gin"
    description = "GIN with atom and bond embeddings (Hu et al. 2020), 5 x 300, batchnorm, mean pooling."
    param_spec = STACKED

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        super().__init__(features, **params)
        hidden, layers = self.hparams["hidden"], self.hparams["layers"]
        self.out_dim = hidden
        self.node_embedding = InputEmbedding(features.node_vocab, features.node_dim, hidden)
        self.convs = nn.ModuleList(HuGINLayer(hidden, features) for _ in range(layers))
        self.norms = nn.ModuleList(BatchNorm(hidden) for _ in range(layers))

    def forward(self, batch: GraphBatch) -> Embeddings:
        h = self.node_embedding(batch.x, batch.x.shape[0])
        bond_counts = None
        edge = self.convs[0].edge
        if edge is not None and edge.vocab:  # the same columns in every layer: count once per batch
            if batch.edge_attr is None:
                raise PluginError("this encoder was built for categorical bond features but the batch carries none")
            bond_counts = edge.row_counts(batch.edge_attr, batch.edge_index[1], h.shape[0])
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h, batch, bond_counts))
            if i < last:
                h = F.relu(h, inplace=True)  # BatchNorm's backward needs its input, not its output
            h = dropout(h, self.hparams["dropout"], self.training)
        return Embeddings(node=h, graph=pool(h, batch, self.hparams["pooling"]))


# ------------------------------------------------------------------------ stacked message passing


class StackedEncoder(BaseEncoder):
    """Node embedding, then `layers` convolutions each followed by BatchNorm, ReLU (not after the
    last, as in OGB's molecule examples) and dropout; the last layer's nodes are pooled. Subclasses
    provide `make_conv(i)` returning a module ``conv(h, batch) -> h``."""

    param_spec = STACKED

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        super().__init__(features, **params)
        hidden, layers = self.hparams["hidden"], self.hparams["layers"]
        self.out_dim = hidden
        self.node_embedding = InputEmbedding(features.node_vocab, features.node_dim, hidden)
        self.convs = nn.ModuleList(self.make_conv(i) for i in range(layers))
        self.norms = nn.ModuleList(BatchNorm(hidden) for _ in range(layers))

    def make_conv(self, index: int) -> nn.Module:  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, batch: GraphBatch) -> Embeddings:
        h = self.node_embedding(batch.x, batch.x.shape[0])
        last = len(self.convs) - 1
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            h = norm(conv(h, batch))
            if i < last:
                h = F.relu(h, inplace=True)  # BatchNorm's backward needs its input, not its output
            h = dropout(h, self.hparams["dropout"], self.training)
        return Embeddings(node=h, graph=pool(h, batch, self.hparams["pooling"]))


def _edge_term(edge: InputEmbedding | None, batch: GraphBatch, rows: int) -> torch.Tensor | float:
    return 0.0 if edge is None else edge(batch.edge_attr, rows)


class OGBGINConv(nn.Module):
    """GIN-E as in OGB's molecule example: ``MLP((1 + eps) h_i + sum_j ReLU(h_j + e_ij))`` with a
    learnable eps and a per-layer BondEncoder (Xu et al. 2019; Hu et al. 2020's edge extension)."""

    def __init__(self, hidden: int, features: FeatureSpec) -> None:
        super().__init__()
        self.edge = edge_embedding(features, hidden)
        self.eps = nn.Parameter(torch.zeros(1))
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden), BatchNorm(2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, hidden)
        )

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        src, dst = batch.edge_index
        msg = F.relu(h.index_select(0, src) + _edge_term(self.edge, batch, src.numel()))
        return self.mlp((1 + self.eps) * h + torch.zeros_like(h).index_add_(0, dst, msg))


class GINE(StackedEncoder):
    """GINE with OGB's AtomEncoder/BondEncoder embeddings, as OGB's ogbg-mol* GIN baseline:
    5 layers x 300, dropout 0.5, mean pooling."""

    name = "gine"
    description = "GIN-E with OGB atom/bond encoders (OGB molecule baseline), 5 x 300."

    def make_conv(self, index: int) -> nn.Module:
        return OGBGINConv(self.hparams["hidden"], self.features)


class OGBGCNConv(nn.Module):
    """GCN with bond features, as OGB's molecule example: ``sum_j norm_ij ReLU(W h_j + e_ij) +
    ReLU(W h_i + r) / d_i`` with ``norm_ij = 1 / sqrt(d_i d_j)``, d = degree + 1 (Kipf & Welling 2017)."""

    def __init__(self, hidden: int, features: FeatureSpec) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        self.root = nn.Parameter(torch.zeros(hidden))
        self.edge = edge_embedding(features, hidden)

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        src, dst = batch.edge_index
        h = self.linear(h)
        deg = torch.ones(h.shape[0], device=h.device).index_add_(0, src, torch.ones(src.numel(), device=h.device))
        inv_sqrt = deg.pow(-0.5)
        norm = (inv_sqrt[src] * inv_sqrt[dst]).unsqueeze(1)
        msg = norm * F.relu(h.index_select(0, src) + _edge_term(self.edge, batch, src.numel()))
        return torch.zeros_like(h).index_add_(0, dst, msg) + F.relu(h + self.root) / deg.unsqueeze(1)


class GCN(StackedEncoder):
    """GCN (Kipf & Welling 2017) with OGB's bond-aware variant; OGB baseline sizes 5 x 300."""

    name = "gcn"
    description = "GCN with bond embeddings (OGB molecule baseline variant), 5 x 300."

    def make_conv(self, index: int) -> nn.Module:
        return OGBGCNConv(self.hparams["hidden"], self.features)


class SAGEConv(nn.Module):
    """GraphSAGE-mean (Hamilton et al. 2017) with bond features added to messages:
    ``W_self h_i + W_neigh mean_j ReLU(h_j + e_ij)``."""

    def __init__(self, hidden: int, features: FeatureSpec) -> None:
        super().__init__()
        self.edge = edge_embedding(features, hidden)
        self.self_linear = nn.Linear(hidden, hidden)
        self.neigh_linear = nn.Linear(hidden, hidden, bias=False)

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        src, dst = batch.edge_index
        msg = F.relu(h.index_select(0, src) + _edge_term(self.edge, batch, src.numel()))
        mean = scatter(msg, dst, dim=0, dim_size=h.shape[0], reduce="mean")
        return self.self_linear(h) + self.neigh_linear(mean)


class SAGE(StackedEncoder):
    """GraphSAGE-mean with bond features; OGB molecule sizes 5 x 300 (the paper's K = 2 layers was
    for large sampled graphs)."""

    name = "sage"
    description = "GraphSAGE-mean with bond embeddings, 5 x 300."

    def make_conv(self, index: int) -> nn.Module:
        return SAGEConv(self.hparams["hidden"], self.features)


class GATv2Layer(nn.Module):
    """PyG's GATv2Conv (Brody et al. 2022) with the bond embedding as edge features, heads concatenated."""

    def __init__(self, hidden: int, heads: int, features: FeatureSpec) -> None:
        super().__init__()
        from torch_geometric.nn import GATv2Conv

        self.edge = edge_embedding(features, hidden)
        self.conv = GATv2Conv(hidden, hidden // heads, heads=heads, edge_dim=hidden if self.edge else None)

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        e = None if self.edge is None else self.edge(batch.edge_attr, batch.edge_index.shape[1])
        return self.conv(h, batch.edge_index, e)


class GATv2(StackedEncoder):
    """GATv2 (Brody et al. 2022): 5 x 300 with 4 heads of 75 (hidden must divide by heads)."""

    name = "gatv2"
    description = "GATv2 attention with bond embeddings as edge features, 5 x 300, 4 heads."
    param_spec = {**STACKED, "heads": Param(4, "int", "attention heads (hidden must divide by it)", min=1)}

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        _check_divides(self.name, {**self.defaults, **params}, "heads")
        super().__init__(features, **params)

    def make_conv(self, index: int) -> nn.Module:
        return GATv2Layer(self.hparams["hidden"], int(self.hparams["heads"]), self.features)


# Heavy-atom degree histogram typical of small organic molecules (degrees 0..4); `PNA.prepare`
# replaces it with the dataset's own.
_DEFAULT_DEGREE_HISTOGRAM = torch.tensor([1.0, 40.0, 35.0, 20.0, 5.0])


class PNALayer(nn.Module):
    """PyG's PNAConv (Corso et al. 2020): mean/min/max/std aggregators x identity/amplification/
    attenuation scalers, towers, bond embeddings as edge features."""

    def __init__(self, hidden: int, towers: int, features: FeatureSpec) -> None:
        super().__init__()
        from torch_geometric.nn import PNAConv

        self.edge = edge_embedding(features, hidden)
        self.conv = PNAConv(
            hidden,
            hidden,
            aggregators=["mean", "min", "max", "std"],
            scalers=["identity", "amplification", "attenuation"],
            deg=_DEFAULT_DEGREE_HISTOGRAM,
            edge_dim=hidden if self.edge else None,
            towers=towers,
            pre_layers=1,
            post_layers=1,
            divide_input=False,
        )

    def forward(self, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        e = None if self.edge is None else self.edge(batch.edge_attr, batch.edge_index.shape[1])
        return self.conv(h, batch.edge_index, e)


class PNA(StackedEncoder):
    """PNA (Corso et al. 2020), their ZINC setting: 4 layers x 75, 5 towers. `prepare(dataset)` sets the
    degree statistics of the scalers from the dataset's in-degree histogram (buffers, so they travel
    with the checkpoint)."""

    name = "pna"
    description = "Principal Neighbourhood Aggregation, 4 x 75, 5 towers (Corso et al. 2020)."
    param_spec = {
        "layers": LAYERS(4),
        "hidden": HIDDEN(75),
        "dropout": DROPOUT(0.0),
        "pooling": POOLING,
        "towers": Param(5, "int", "towers (hidden must divide by it)", min=1),
    }

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        _check_divides(self.name, {**self.defaults, **params}, "towers")
        super().__init__(features, **params)

    def make_conv(self, index: int) -> nn.Module:
        return PNALayer(self.hparams["hidden"], int(self.hparams["towers"]), self.features)

    def prepare(self, dataset: Any) -> None:
        arrays = dataset.arrays()
        ei = np.asarray(arrays.edge_index)
        n = int(arrays.node_ptr[-1])
        if n == 0:
            return
        graph_of_edge = np.repeat(np.arange(arrays.num_graphs), np.diff(arrays.edge_ptr))
        dst = ei[1] + np.asarray(arrays.node_ptr)[:-1][graph_of_edge]
        degree = np.bincount(dst, minlength=n)
        hist = np.bincount(degree).astype(np.float64)
        bins = np.arange(len(hist), dtype=np.float64)
        lin = float((bins * hist).sum() / hist.sum())
        log = float((np.log(bins + 1) * hist).sum() / hist.sum())
        for layer in self.convs:
            aggr = layer.conv.aggr_module
            aggr.avg_deg_lin.data.fill_(lin)
            aggr.avg_deg_log.data.fill_(log)


# ---------------------------------------------------------------------------------------- GraphGPS


class GPS(BaseEncoder):
    """GraphGPS (Rampasek et al. 2022): each layer adds a local GINE message-passing update and a
    global multi-head self-attention over the atoms of each graph (PyG's GPSConv, dense per-graph
    batching), with residuals and BatchNorm. Their ZINC setting: 10 layers x 64, 4 heads, attention
    dropout 0.5. No positional/structural encodings (their RWSE is omitted)."""

    name = "gps"
    description = "GraphGPS: local GINE + global attention per graph, 10 x 64, 4 heads (Rampasek et al. 2022)."
    param_spec = {
        "layers": LAYERS(10),
        "hidden": HIDDEN(64),
        "dropout": DROPOUT(0.0),
        "pooling": POOLING,
        "heads": Param(4, "int", "attention heads (hidden must divide by it)", min=1),
        "attn_dropout": DROPOUT(0.5),
    }

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        from torch_geometric.nn import GINEConv, GPSConv

        _check_divides(self.name, {**self.defaults, **params}, "heads")
        super().__init__(features, **params)
        hidden, layers = self.hparams["hidden"], self.hparams["layers"]
        self.out_dim = hidden
        self.node_embedding = InputEmbedding(features.node_vocab, features.node_dim, hidden)
        # GINE needs edge features: without any, every edge gets one learned vector.
        self.edge_embedding = InputEmbedding(features.edge_vocab, features.edge_dim, hidden)
        self.layers = nn.ModuleList(
            GPSConv(
                hidden,
                GINEConv(nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))),
                heads=int(self.hparams["heads"]),
                dropout=float(self.hparams["dropout"]),
                attn_kwargs={"dropout": float(self.hparams["attn_dropout"])},
            )
            for _ in range(layers)
        )

    def forward(self, batch: GraphBatch) -> Embeddings:
        h = self.node_embedding(batch.x, batch.x.shape[0])
        e = self.edge_embedding(batch.edge_attr, batch.edge_index.shape[1])
        for layer in self.layers:
            h = layer(h, batch.edge_index, batch.batch, edge_attr=e)
        return Embeddings(node=h, graph=pool(h, batch, self.hparams["pooling"]))


# ------------------------------------------------------------------------------------------ SchNet


def radius_edges(pos: torch.Tensor, batch: GraphBatch, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (i != j) of atoms of the same graph closer than `cutoff`, and their
    distances: a dense per-graph distance matrix (molecules are small), no torch-cluster needed."""
    from torch_geometric.utils import to_dense_batch

    dense, present = to_dense_batch(pos, batch.batch, batch_size=batch.num_graphs)
    dist = torch.cdist(dense, dense)
    n_max = dense.shape[1]
    ok = present.unsqueeze(2) & present.unsqueeze(1) & (dist < cutoff)
    ok &= ~torch.eye(n_max, dtype=torch.bool, device=pos.device).unsqueeze(0)
    g, i, j = torch.nonzero(ok, as_tuple=True)
    offset = batch.ptr[g]
    return torch.stack([offset + j, offset + i]), dist[g, i, j]  # messages flow j -> i


class SchNet(BaseEncoder):
    """SchNet (Schuett et al. 2017) on 3D coordinates: continuous-filter convolutions over all atom
    pairs within `cutoff` (Angstrom), built from PyG's SchNet `InteractionBlock` and
    `GaussianSmearing`. Atoms are embedded from all their categorical features (SchNet proper uses
    the element only). PyG's QM9 defaults: 128 hidden, 128 filters, 6 interactions (`layers`),
    50 Gaussians, cutoff 10; sum pooling, as SchNet's atom-wise sum."""

    name = "schnet"
    description = "SchNet continuous-filter convolutions on 3D coordinates, 6 x 128, cutoff 10 A."
    requires = frozenset({"pos"})
    param_spec = {
        "layers": LAYERS(6),
        "hidden": HIDDEN(128),
        "filters": Param(128, "int", "continuous filters", min=1),
        "gaussians": Param(50, "int", "Gaussians of the distance expansion", min=1),
        "cutoff": Param(10.0, "number", "interaction cutoff (Angstrom)", min=0.0, min_open=True),
        "dropout": DROPOUT(0.0),
        "pooling": Param("sum", "str", "node -> graph pooling", choices=POOLINGS),
    }

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock

        super().__init__(features, **params)
        hp = self.hparams
        self.out_dim = hp["hidden"]
        self.node_embedding = InputEmbedding(features.node_vocab, features.node_dim, hp["hidden"])
        self.smearing = GaussianSmearing(0.0, float(hp["cutoff"]), int(hp["gaussians"]))
        self.interactions = nn.ModuleList(
            InteractionBlock(hp["hidden"], int(hp["gaussians"]), int(hp["filters"]), float(hp["cutoff"]))
            for _ in range(hp["layers"])
        )

    def forward(self, batch: GraphBatch) -> Embeddings:
        if batch.pos is None:
            raise PluginError("encoder 'schnet' needs 3D coordinates (pos) in the batch")
        h = self.node_embedding(batch.x, batch.x.shape[0])
        edge_index, dist = radius_edges(batch.pos, batch, float(self.hparams["cutoff"]))
        attr = self.smearing(dist)
        for block in self.interactions:
            h = h + block(h, edge_index, dist, attr)
            h = F.dropout(h, float(self.hparams["dropout"]), self.training)
        return Embeddings(node=h, graph=pool(h, batch, self.hparams["pooling"]))


# ------------------------------------------------------------------------------- fingerprint MLP


def morgan_fingerprints(smiles: list[str], radius: int, bits: int) -> np.ndarray:
    """(G, bits) uint8 Morgan (ECFP-like) bit vectors, cached on disk by a hash of the SMILES."""
    import hashlib
    from pathlib import Path

    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    from benchbase import atomic_path, cache_dir

    digest = hashlib.sha256("\n".join(smiles).encode()).hexdigest()[:24]
    path = Path(cache_dir("fingerprints")) / f"morgan-r{radius}-b{bits}-{digest}.npy"
    if path.exists():
        return np.unpackbits(np.load(path), axis=1, count=bits)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    out = np.zeros((len(smiles), bits), dtype=np.uint8)
    for i, smi in enumerate(smiles):
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise PluginError(f"RDKit cannot parse the SMILES of graph {i}: {smi!r}")
        DataStructs.ConvertToNumpyArray(generator.GetFingerprint(mol), out[i])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.packbits(out, axis=1))
    return out


class FingerprintMLP(BaseEncoder):
    """A non-graph baseline: Morgan fingerprints (radius 2, 2048 bits) and an MLP, like OGB's
    PCQM4M fingerprint baseline (6 layers x 1200, dropout 0.2). The fingerprints come from
    ``dataset.smiles()`` in `prepare(dataset)`, looked up per batch by ``batch.graph_index``; the
    encoder therefore ignores the batch's (possibly corrupted) atoms, so pretext tasks cannot
    train it (`supports_pretext = False`). Node embeddings are the graph embedding repeated."""

    name = "fingerprint-mlp"
    description = "Morgan fingerprint (r=2, 2048 bits) + MLP, 6 x 1200 (OGB fingerprint baseline)."
    requires = frozenset({"smiles"})
    param_spec = {
        "layers": LAYERS(6),
        "hidden": HIDDEN(1200),
        "dropout": DROPOUT(0.2),
        "radius": Param(2, "int", "Morgan radius", min=0),
        "bits": Param(2048, "int", "fingerprint length", min=1),
    }
    supports_pretext: ClassVar[bool] = False

    def __init__(self, features: FeatureSpec, **params: Any) -> None:
        super().__init__(features, **params)
        hp = self.hparams
        self.out_dim = hp["hidden"]
        sizes = [int(hp["bits"])] + [hp["hidden"]] * hp["layers"]
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            blocks += [nn.Linear(a, b), BatchNorm(b), nn.ReLU(), nn.Dropout(float(hp["dropout"]))]
        self.mlp = nn.Sequential(*blocks)
        self.fingerprints: torch.Tensor | None = None

    def prepare(self, dataset: Any) -> None:
        if not hasattr(dataset, "smiles"):
            raise PluginError(f"encoder 'fingerprint-mlp' needs SMILES; dataset {dataset.name!r} has no smiles()")
        fps = morgan_fingerprints(list(dataset.smiles()), int(self.hparams["radius"]), int(self.hparams["bits"]))
        self.fingerprints = torch.from_numpy(fps)

    def forward(self, batch: GraphBatch) -> Embeddings:
        if self.fingerprints is None:
            raise PluginError("encoder 'fingerprint-mlp' needs prepare(dataset) before use (it reads SMILES)")
        fp = self.fingerprints[batch.graph_index.cpu()].to(batch.x.device).float()
        graph = self.mlp(fp)
        return Embeddings(node=graph[batch.batch], graph=graph)


ENCODERS: list[type[Encoder]] = [GIN, GINE, GCN, SAGE, GATv2, PNA, GPS, SchNet, FingerprintMLP]
