"""Self-supervised pretext tasks for molecular graphs.

Conventions (shared with the datasets and encoders of this plugin): ``x`` holds the 9 OGB atom
features, ``edge_attr`` the 3 OGB bond features, both directions of every bond. Masking tasks write
the mask token ``vocab[j]`` into every column of a masked atom (or bond); every encoder's embedding
tables have that extra row. All randomness comes from ``ctx.generator`` so a run is reproducible
per seed, in training and in evaluation.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchbase import (
    Dataset,
    Encoder,
    GraphBatch,
    Param,
    PluginError,
    PretextContext,
    PretextOutput,
    PretextTask,
    spec_of,
    validate,
)

NUM_OGB_ELEMENTS = 119  # OGB's atomic-number vocabulary: index i is atomic number i + 1, index 118 "misc"


def element_symbols() -> list[str]:
    """Class names of OGB's atom-type column: element symbols by atomic number, then "misc"."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    return [table.GetElementSymbol(z) for z in range(1, NUM_OGB_ELEMENTS)] + ["misc"]


def pool_rows(ptr: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Row indices (nodes or edges) owned by the graphs in `pool`, given CSR pointers `ptr`."""
    ptr = np.asarray(ptr, dtype=np.int64)
    pool = np.asarray(pool, dtype=np.int64)
    starts, lengths = ptr[pool], ptr[pool + 1] - ptr[pool]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def items_per_graph(sizes: torch.Tensor, rate: float, minimum: int = 1, keep: int = 0) -> torch.Tensor:
    """How many items of each group one corruption picks: ``max(minimum, round(rate * n_g))``, at
    most ``n_g - keep``."""
    k = torch.clamp(torch.round(sizes.float() * rate).long(), min=minimum)
    return torch.minimum(k, (sizes - keep).clamp_min(0))


def rank_within_groups(group: torch.Tensor, sizes: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Each item's position (0, 1, ...) among the items of its group, in ascending `key` order (ties
    by item order). `group` (M,) need not be sorted; `sizes` (G,) counts the items per group."""
    m = group.numel()
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    start = torch.cumsum(sizes, 0) - sizes
    rank = torch.empty(m, dtype=torch.long)
    rank[order] = torch.arange(m) - start[group[order]]
    return rank


def sample_per_graph(
    group: torch.Tensor,
    sizes: torch.Tensor,
    rate: float,
    generator: torch.Generator,
    weight: torch.Tensor | None = None,
    minimum: int = 1,
    keep: int = 0,
) -> torch.Tensor:
    """Pick ``max(minimum, round(rate * n_g))`` (at most ``n_g - keep``) items of each group g without
    replacement; returns a bool mask.

    `group` (M,) gives each item's group (sorted or not), `sizes` (G,) the items per group. With
    `weight` (M,), item i is drawn with probability proportional to ``weight[i]`` (successive
    sampling without replacement, by the exponential-race keys of Efraimidis & Spirakis 2006:
    key ``-log(u) / w``, smallest keys win); zero weights are drawn only when a group has too few
    positive-weight items. Vectorised over the whole batch.
    """
    m = group.numel()
    if m == 0:
        return torch.zeros(0, dtype=torch.bool)
    k = items_per_graph(sizes, rate, minimum, keep)
    u = torch.rand(m, generator=generator).clamp_min(1e-12)
    key = -torch.log(u)
    if weight is not None:
        key = key / weight.float().clamp_min(1e-12)
    return rank_within_groups(group, sizes, key) < k[group]


def rounds_per_graph(
    group: torch.Tensor, sizes: torch.Tensor, rate: float, generator: torch.Generator, minimum: int = 1
) -> list[torch.Tensor]:
    """Every item in exactly one round: bool masks (M,), one per round. Each group's items are put in
    a random order (a permutation per group, from `generator`) and cut into consecutive runs of
    ``k_g = max(minimum, round(rate * n_g))`` items, the count `sample_per_graph` picks in training;
    round r takes run r of every group that has one, so a group of n_g items is in ``ceil(n_g / k_g)``
    rounds and sits out the rest. A round corrupts k_g items of a group, as a training step does
    (the last run of a group may be shorter)."""
    m = group.numel()
    if m == 0:
        return []
    k = items_per_graph(sizes, rate, minimum).clamp_min(1)
    position = rank_within_groups(group, sizes, torch.rand(m, generator=generator))
    round_of = torch.div(position, k[group], rounding_mode="floor")
    return [round_of == r for r in range(int(round_of.max()) + 1)]


class MolecularPretext(PretextTask):
    """Parameter checking shared by this plugin's pretext tasks."""

    def __init__(self, **params: Any) -> None:
        self.params = validate(spec_of(type(self)), params, f"pretext task {self.name!r}")

    def _vocab(self, dataset: Dataset, which: str) -> tuple[int, ...]:
        vocab = getattr(dataset.features, which)
        if not vocab:
            kind = "node" if which == "node_vocab" else "edge"
            raise PluginError(
                f"pretext task {self.name!r} needs categorical {kind} features; dataset {dataset.name!r} has none"
            )
        return tuple(int(v) for v in vocab)


class NodeMasking(MolecularPretext):
    """Attribute masking of Hu et al. 2020: mask ``mask_rate`` of the atoms of each graph (at least one)
    by writing the mask token into all their feature columns, and predict each masked atom's class
    ``x[:, 0]`` (the element, 119 classes for OGB features) with a linear head on its node embedding.

    Data-side rebalancing: when ``ctx.selection_weights`` (one weight per class) is given, atoms are
    chosen with probability proportional to the weight of their class (``masked-resampling``), so a
    rare element is masked - and learned - more often. `class_counts` are the element counts over
    all atoms of the pool.

    Held-out evaluation (`evaluation_rounds`) masks every atom of the held-out graphs exactly once,
    in rounds of the training count per graph, so that each element is scored on all its atoms (a
    single random mask would score about 15% of them: two to four of the 12 to 29 fluorines of a
    500-molecule QM9 test fold).
    """

    name = "node-masking"
    description = "Mask 15% of atoms (at least one per graph), predict their element (Hu et al. 2020)."
    requires = frozenset({"x_categorical"})
    param_spec = {
        "mask_rate": Param(
            0.15, "number", "share of items masked per graph (at least one)", min=0.0, max=1.0, min_open=True
        )
    }
    uses_selection_weights: ClassVar[bool] = True

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        self.vocab = self._vocab(dataset, "node_vocab")
        self.num_classes = self.vocab[0]
        arrays = dataset.arrays()
        classes = np.asarray(arrays.x)[pool_rows(arrays.node_ptr, pool), 0]
        self._counts = np.bincount(classes, minlength=self.num_classes).astype(np.int64)
        if self.num_classes == NUM_OGB_ELEMENTS:
            self._names = element_symbols()
        else:
            names = dataset.node_class_names()
            fallback = [str(i) for i in range(self.num_classes)]
            self._names = names if names and len(names) == self.num_classes else fallback
        self.mask_token = torch.tensor(self.vocab, dtype=torch.long)

    def class_counts(self) -> np.ndarray:
        return self._counts

    def class_names(self) -> list[str]:
        return self._names

    def build_head(self, encoder: Encoder) -> nn.Module:
        return nn.Linear(encoder.out_dim, self.num_classes)

    def evaluation_rounds(self, batch: GraphBatch, generator: torch.Generator) -> list[torch.Tensor]:
        """Every atom masked once (`rounds_per_graph`): per round, ``max(1, round(mask_rate * n))``
        atoms of each graph of n atoms, as in training; about ``1 / mask_rate`` rounds."""
        sizes = (batch.ptr[1:] - batch.ptr[:-1]).cpu()
        return rounds_per_graph(batch.batch.cpu(), sizes, float(self.params["mask_rate"]), generator)

    def choose(self, batch: GraphBatch, ctx: PretextContext) -> torch.Tensor:
        """Bool mask over the batch's atoms: which ones to mask (``ctx.selection`` when given)."""
        if ctx.selection is not None:
            return _checked_selection(ctx.selection, batch.x.shape[0], self.name, "atoms")
        sizes = batch.ptr[1:] - batch.ptr[:-1]
        weight = None
        if ctx.selection_weights is not None:
            sw = torch.as_tensor(ctx.selection_weights, dtype=torch.float32)
            if sw.numel() != self.num_classes:
                raise PluginError(
                    f"{self.name}: {sw.numel()} selection weights for {self.num_classes} classes (x[:, 0] vocabulary)"
                )
            weight = sw[batch.x[:, 0].cpu()]
        return sample_per_graph(batch.batch.cpu(), sizes.cpu(), float(self.params["mask_rate"]), ctx.generator, weight)

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        masked = self.choose(batch, ctx).to(batch.x.device)
        x = batch.x.clone()
        x[masked] = self.mask_token.to(x.device)
        emb = encoder(batch.replace(x=x))
        return PretextOutput(logits=head(emb.node[masked]), targets=batch.x[masked, 0], item_graph=batch.batch[masked])


def _checked_selection(selection: torch.Tensor, count: int, task: str, what: str) -> torch.Tensor:
    """``ctx.selection`` as a CPU bool mask over `count` items."""
    selection = torch.as_tensor(selection).cpu()
    if selection.dtype != torch.bool or tuple(selection.shape) != (count,):
        raise PluginError(f"{task}: the selection must be a bool mask over the batch's {count} {what}")
    return selection


def induced_subbatch(batch: GraphBatch, keep_nodes: torch.Tensor, keep_edges: torch.Tensor | None = None) -> GraphBatch:
    """The batch restricted to `keep_nodes` (bool, N) and the edges between them (and in `keep_edges`).

    Graphs keep their positions (a graph may end up empty); targets are dropped since their rows no
    longer line up. Used for context subgraphs, node dropping and edge dropping.
    """
    edge_ok = keep_nodes[batch.edge_index[0]] & keep_nodes[batch.edge_index[1]]
    if keep_edges is not None:
        edge_ok = edge_ok & keep_edges
    new_id = torch.cumsum(keep_nodes.long(), 0) - 1
    node_batch = batch.batch[keep_nodes]
    counts = torch.bincount(node_batch, minlength=batch.num_graphs)
    ptr = torch.zeros(batch.num_graphs + 1, dtype=torch.long, device=counts.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return batch.replace(
        x=batch.x[keep_nodes],
        edge_index=new_id[batch.edge_index[:, edge_ok]],
        batch=node_batch,
        ptr=ptr,
        edge_attr=None if batch.edge_attr is None else batch.edge_attr[edge_ok],
        pos=None if batch.pos is None else batch.pos[keep_nodes],
        edge_batch=None if batch.edge_batch is None else batch.edge_batch[edge_ok],
        targets={},
        target_masks={},
    )


def undirected_bonds(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(bond id per directed edge, one representative edge per bond): both directions of a bond
    share an id. Works whatever the order the two directions are stored in."""
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    keys = lo * max(num_nodes, 1) + hi
    unique, bond_of_edge = torch.unique(keys, return_inverse=True)
    first = torch.full((len(unique),), len(keys), dtype=torch.long)
    first = first.scatter_reduce(0, bond_of_edge, torch.arange(len(keys)), reduce="amin")
    return bond_of_edge, first


def hop_distance(batch: GraphBatch, sources: torch.Tensor, max_hops: int) -> torch.Tensor:
    """Shortest-path hop count from each graph's source node (one per graph) to every node of the
    batch, capped: nodes farther than `max_hops` get ``max_hops + 1``. A vectorised BFS."""
    n = batch.x.shape[0]
    far = max_hops + 1
    dist = torch.full((n,), far, dtype=torch.long)
    dist[sources] = 0
    reached = dist == 0
    src, dst = batch.edge_index
    for hop in range(1, max_hops + 1):
        step = torch.zeros(n, dtype=torch.bool)
        step[dst[reached[src]]] = True
        new = step & ~reached
        if not new.any():
            break
        dist[new] = hop
        reached |= new
    return dist


class GraphLabelTask(MolecularPretext):
    """Graph-level multi-label prediction of labels computed from SMILES once per dataset: a linear
    head on the pooled graph embedding, binary cross-entropy per label (through the rebalancer).
    `class_counts` are the positives per label over the pool; the harness passes the pool size as
    the number of samples. Selection weights do not apply (nothing is chosen by class)."""

    requires = frozenset({"smiles"})

    def labels_for(self, dataset: Dataset, pool: np.ndarray) -> tuple[np.ndarray, list[str]]:  # pragma: no cover
        """(G, L) 0/1 labels for every graph of the dataset and the L label names."""
        raise NotImplementedError

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        if not hasattr(dataset, "smiles"):
            raise PluginError(f"pretext task {self.name!r} needs SMILES; dataset {dataset.name!r} has no smiles()")
        self.labels, self._names = self.labels_for(dataset, np.asarray(pool, dtype=np.int64))
        self._counts = self.labels[np.asarray(pool, dtype=np.int64)].sum(0).astype(np.int64)
        self._table = torch.from_numpy(self.labels.astype(np.float32))

    def class_counts(self) -> np.ndarray:
        return self._counts

    def class_names(self) -> list[str]:
        return self._names

    def is_multilabel(self) -> bool:
        return True

    def build_head(self, encoder: Encoder) -> nn.Module:
        return nn.Linear(encoder.out_dim, len(self._names))

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        emb = encoder(batch)
        targets = self._table[batch.graph_index.cpu()].to(emb.graph.device)
        return PretextOutput(logits=head(emb.graph), targets=targets, multilabel=True)


class GraphPattern(GraphLabelTask):
    """Predict which element-agnostic structural patterns a molecule contains (Takashige et al. 2023's
    graph-pattern task): the fixed vocabulary `benchbase_molecules.motifs.GRAPH_PATTERNS` (ring sizes
    3-8 and larger, fused/spiro rings, ring systems, aromatic rings, branching atoms, chains, bond
    types and two-bond paths), read from topology and bond orders only."""

    name = "graph-pattern"
    description = "Multi-label: element-agnostic ring/branching/bond-path patterns of each molecule (31 labels)."

    def labels_for(self, dataset: Dataset, pool: np.ndarray) -> tuple[np.ndarray, list[str]]:
        from benchbase_molecules import motifs

        return motifs.label_matrix("graph-pattern", list(dataset.smiles())), list(motifs.GRAPH_PATTERNS)


class Motif(GraphLabelTask):
    """Predict the functional-group motifs of a molecule, multi-label: RDKit's 85 ``fr_*`` fragment
    descriptors, as GROVER (Rong et al. 2020) does, and optionally (``brics`` > 0) the ``brics`` most
    frequent BRICS fragments (Degen et al. 2008) of the pretraining pool that occur in at least
    ``brics_min_count`` pool molecules. Rare motifs make the labels strongly imbalanced."""

    name = "motif"
    description = "Multi-label: RDKit's 85 fr_* functional groups (GROVER), optionally a BRICS vocabulary."
    param_spec = {
        "functional_groups": Param(True, "bool", "RDKit's 85 fr_* functional groups as labels"),
        "brics": Param(0, "int", "most frequent BRICS fragments of the pool added as labels", min=0),
        "brics_min_count": Param(2, "int", "pool molecules a BRICS fragment must occur in", min=1),
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not self.params["functional_groups"] and not int(self.params["brics"]):
            raise PluginError("pretext task 'motif': enable functional_groups or set brics > 0 (no labels otherwise)")

    def labels_for(self, dataset: Dataset, pool: np.ndarray) -> tuple[np.ndarray, list[str]]:
        from benchbase_molecules import motifs

        smiles = list(dataset.smiles())
        blocks, names = [], []
        if self.params["functional_groups"]:
            blocks.append(motifs.label_matrix("functional-group", smiles))
            names += list(motifs.FUNCTIONAL_GROUPS)
        if int(self.params["brics"]):
            fragments = motifs.brics_fragment_lists(smiles)
            size, min_count = int(self.params["brics"]), int(self.params["brics_min_count"])
            vocab = motifs.brics_vocabulary(fragments, pool, size, min_count)
            blocks.append(motifs.brics_labels(fragments, vocab))
            names += [f"brics:{f}" for f in vocab]
        return np.concatenate(blocks, axis=1), names


class EdgeMasking(MolecularPretext):
    """Mask ``mask_rate`` of the bonds of each graph (at least one when it has bonds): the mask token
    goes into every bond-feature column of *both* directions, and the bond type ``edge_attr[:, 0]``
    (5 classes for OGB features) is predicted by a linear head on ``h_u + h_v`` (symmetric in the two
    atoms, as Hu et al. 2020's edge prediction). With selection weights, bonds are chosen with
    probability proportional to the weight of their type. Counts: bond types over the pool's bonds.
    Held-out evaluation (`evaluation_rounds`) masks every bond once, in rounds of the training count."""

    name = "edge-masking"
    description = "Mask 15% of bonds (both directions), predict their bond type."
    requires = frozenset({"edge_attr"})
    param_spec = {
        "mask_rate": Param(
            0.15, "number", "share of items masked per graph (at least one)", min=0.0, max=1.0, min_open=True
        )
    }
    uses_selection_weights: ClassVar[bool] = True

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        self.vocab = self._vocab(dataset, "edge_vocab")
        self.num_classes = self.vocab[0]
        arrays = dataset.arrays()
        rows = pool_rows(arrays.edge_ptr, pool)
        ei = np.asarray(arrays.edge_index)[:, rows]
        forward = ei[0] < ei[1]  # one direction per bond
        classes = np.asarray(arrays.edge_attr)[rows[forward], 0]
        self._counts = np.bincount(classes, minlength=self.num_classes).astype(np.int64)
        if self.num_classes == 5:
            self._names = ["single", "double", "triple", "aromatic", "misc"]
        else:
            self._names = [str(i) for i in range(self.num_classes)]
        self.mask_token = torch.tensor(self.vocab, dtype=torch.long)

    def class_counts(self) -> np.ndarray:
        return self._counts

    def class_names(self) -> list[str]:
        return self._names

    def build_head(self, encoder: Encoder) -> nn.Module:
        return nn.Linear(encoder.out_dim, self.num_classes)

    @staticmethod
    def bonds(batch: GraphBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's bonds, the task's items (on the CPU): the bond of each directed edge, one
        representative edge per bond, each bond's batch-local graph, and the bonds per graph."""
        bond_of_edge, first = undirected_bonds(batch.edge_index.cpu(), batch.x.shape[0])
        bond_graph = batch.batch.cpu()[batch.edge_index[0].cpu()][first]
        return bond_of_edge, first, bond_graph, torch.bincount(bond_graph, minlength=batch.num_graphs)

    def evaluation_rounds(self, batch: GraphBatch, generator: torch.Generator) -> list[torch.Tensor]:
        """Every bond masked once (`rounds_per_graph`), ``max(1, round(mask_rate * bonds))`` bonds of
        each graph per round, as in training. Items are bonds, numbered as `bonds` gives them."""
        _, _, bond_graph, sizes = self.bonds(batch)
        return rounds_per_graph(bond_graph, sizes, float(self.params["mask_rate"]), generator)

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        if batch.edge_attr is None:
            raise PluginError("edge-masking needs bond features (edge_attr) in the batch")
        device = batch.x.device
        bond_of_edge, first, bond_graph, sizes = self.bonds(batch)
        bond_type = batch.edge_attr[first.to(device), 0].cpu()
        if ctx.selection is not None:
            chosen = _checked_selection(ctx.selection, len(first), self.name, "bonds")
        else:
            weight = None
            if ctx.selection_weights is not None:
                sw = torch.as_tensor(ctx.selection_weights, dtype=torch.float32)
                if sw.numel() != self.num_classes:
                    raise PluginError(f"{self.name}: {sw.numel()} selection weights for {self.num_classes} bond types")
                weight = sw[bond_type]
            rate = float(self.params["mask_rate"])
            chosen = sample_per_graph(bond_graph, sizes, rate, ctx.generator, weight, minimum=1)
        masked_edges = chosen[bond_of_edge].to(device)
        edge_attr = batch.edge_attr.clone()
        edge_attr[masked_edges] = self.mask_token.to(device)
        emb = encoder(batch.replace(edge_attr=edge_attr))
        reps = first[chosen].to(device)
        src, dst = batch.edge_index[:, reps]
        return PretextOutput(
            logits=head(emb.node[src] + emb.node[dst]),
            targets=bond_type[chosen].to(device),
            item_graph=bond_graph[chosen].to(device),
        )


def _fresh_copy(encoder: Encoder) -> Encoder:
    """An encoder of the same architecture with independently re-initialised weights."""
    twin = copy.deepcopy(encoder)
    for module in twin.modules():
        if module is not twin and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return twin


class ContextHead(nn.Module):
    """Context-prediction head: the context encoder (same architecture as the main one, its own
    weights, discarded after pretraining like any head)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.context_encoder = _fresh_copy(encoder)


class ContextPrediction(MolecularPretext):
    """Context prediction of Hu et al. 2020, simplified. Per graph one centre atom is drawn; its
    *substructure* is the ``k``-hop neighbourhood, encoded by the main encoder (the centre's node
    embedding); its *context* is the ring of atoms between ``r1`` and ``r2`` hops, encoded by a
    separate context encoder, whose node embeddings are averaged over the *anchor* atoms (those in
    both, ``r1 <= d <= k``). A pair scores ``<substructure, context>``; the positive pairs a centre
    with its own context, the negative with the context of the next graph in the batch (Hu et al.'s
    one negative per positive). Returned as a 2-class problem (logits ``[0, score]``, classes
    "mismatch", "match"), which is the binary cross-entropy of the paper.

    Simplifications: one centre per graph and step; the context encoder has the main encoder's
    architecture (Hu et al. use a shallower one, depth ``r2 - r1``); defaults ``k=2, r1=1, r2=4``
    are Hu et al.'s ``k=5, r1=4, r2=7`` scaled down for small molecules (QM9 has at most 9 heavy
    atoms) with the same ring width. Graphs with no anchor atom for the drawn centre sit out.
    """

    name = "context-prediction"
    description = "Does this context ring belong to this atom's neighbourhood? (Hu et al. 2020, simplified)"
    param_spec = {
        "k": Param(2, "int", "hops of the substructure", min=0),
        "r1": Param(1, "int", "inner radius of the context ring", min=0),
        "r2": Param(4, "int", "outer radius of the context ring", min=1),
    }
    class_labelled = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        k, r1, r2 = (int(self.params[key]) for key in ("k", "r1", "r2"))
        if not 0 <= r1 <= k < r2:
            raise PluginError(f"pretext task 'context-prediction' needs 0 <= r1 <= k < r2, got k={k} r1={r1} r2={r2}")

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        # Positives and negatives come one for one: the classes are balanced by construction.
        n = len(pool)
        self._counts = np.array([n, n], dtype=np.int64)

    def class_counts(self) -> np.ndarray:
        return self._counts

    def class_names(self) -> list[str]:
        return ["mismatch", "match"]

    def build_head(self, encoder: Encoder) -> nn.Module:
        return ContextHead(encoder)

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        k, r1, r2 = (int(self.params[key]) for key in ("k", "r1", "r2"))
        device = batch.x.device
        cpu_batch = batch.batch.cpu()
        sizes = (batch.ptr[1:] - batch.ptr[:-1]).cpu()
        centre_mask = sample_per_graph(cpu_batch, sizes, 0.0, ctx.generator, minimum=1)
        centres = torch.nonzero(centre_mask).squeeze(1)
        centre_graph = cpu_batch[centres]
        dist = hop_distance(batch.replace(edge_index=batch.edge_index.cpu(), x=batch.x.cpu()), centres, r2)
        sub_keep = (dist <= k).to(device)
        context_keep = ((dist >= r1) & (dist <= r2)).to(device)
        anchor = (dist >= r1) & (dist <= k)
        has_anchor = torch.bincount(cpu_batch[anchor], minlength=batch.num_graphs) > 0
        valid = has_anchor[centre_graph]
        if int(valid.sum()) < 2:
            # Too few graphs with a context to pair: no signal in this batch, a zero loss that keeps the graph.
            zero = sum(p.sum() for p in head.parameters()) * 0.0
            return PretextOutput(loss=zero + 0.0 * encoder(batch).graph.sum())
        sub = induced_subbatch(batch, sub_keep)
        sub_emb = encoder(sub).node
        new_id = torch.cumsum(sub_keep.long(), 0) - 1
        centre_emb = sub_emb[new_id[centres.to(device)]]
        context = induced_subbatch(batch, context_keep)
        ctx_node = head.context_encoder(context).node
        ctx_new = torch.cumsum(context_keep.long(), 0) - 1
        anchor_rows = anchor.to(device)
        anchor_graph = batch.batch[anchor_rows]
        context_emb = scatter_mean(ctx_node[ctx_new[anchor_rows]], anchor_graph, batch.num_graphs)
        graphs = centre_graph[valid].to(device)
        centre_vec = centre_emb[valid.to(device)]
        own = context_emb[graphs]
        other = context_emb[torch.roll(graphs, shifts=-1)]
        scores = torch.cat([(centre_vec * own).sum(1), (centre_vec * other).sum(1)])
        logits = torch.stack([torch.zeros_like(scores), scores], dim=1)
        targets = torch.cat([torch.ones(len(graphs)), torch.zeros(len(graphs))]).long().to(device)
        return PretextOutput(logits=logits, targets=targets, item_graph=torch.cat([graphs, graphs]))


def scatter_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    from torch_geometric.utils import scatter

    return scatter(values, index, dim=0, dim_size=size, reduce="mean")


class ProjectionHead(nn.Module):
    """GraphCL's projection head: Linear - ReLU - Linear on the graph embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


AUGMENTATIONS = ("node-drop", "edge-drop", "attr-mask")


class GraphCL(MolecularPretext):
    """GraphCL (You et al. 2020): two augmented views of every graph, projected graph embeddings,
    NT-Xent loss (SimCLR's normalised temperature-scaled cross-entropy over the 2B views, each
    view's positive is its twin, the other 2B - 2 views are negatives). Each view draws one
    augmentation from `augmentations` uniformly:

    - ``node-drop``: drop ``ratio`` of each graph's atoms (at least one atom stays) and their bonds;
    - ``edge-drop``: drop ``ratio`` of each graph's bonds (both directions). GraphCL's edge
      perturbation also adds random edges; we only remove, since an added bond would need an
      invented bond type;
    - ``attr-mask``: write the mask token into all feature columns of ``ratio`` of the atoms.

    No class labels: the task returns its own loss and rebalancers do not apply.
    """

    name = "graphcl"
    description = "Contrastive: two augmented views (node/edge drop, attribute mask), NT-Xent (You et al. 2020)."
    param_spec = {
        "augmentations": Param(list(AUGMENTATIONS), "list", f"views drawn from {AUGMENTATIONS}", items="str"),
        "ratio": Param(0.2, "number", "share of items dropped or masked", min=0.0, max=1.0, max_open=True),
        "temperature": Param(0.1, "number", "NT-Xent temperature", min=0.0, min_open=True),
    }
    class_labelled = False

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        augs = list(self.params["augmentations"])
        bad = [a for a in augs if a not in AUGMENTATIONS]
        if not augs or bad:
            raise PluginError(f"pretext task 'graphcl': augmentations must be a non-empty subset of {AUGMENTATIONS}")

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        self.node_vocab = tuple(int(v) for v in dataset.features.node_vocab)

    def build_head(self, encoder: Encoder) -> nn.Module:
        return ProjectionHead(encoder.out_dim)

    def augment(self, batch: GraphBatch, kind: str, generator: torch.Generator) -> GraphBatch:
        ratio = float(self.params["ratio"])
        device = batch.x.device
        cpu_batch = batch.batch.cpu()
        sizes = (batch.ptr[1:] - batch.ptr[:-1]).cpu()
        if kind == "node-drop":
            drop = sample_per_graph(cpu_batch, sizes, ratio, generator, minimum=0, keep=1)
            return induced_subbatch(batch, (~drop).to(device))
        if kind == "edge-drop":
            bond_of_edge, first = undirected_bonds(batch.edge_index.cpu(), batch.x.shape[0])
            bond_graph = cpu_batch[batch.edge_index[0, first].cpu()]
            bond_sizes = torch.bincount(bond_graph, minlength=batch.num_graphs)
            drop = sample_per_graph(bond_graph, bond_sizes, ratio, generator, minimum=0)
            keep_nodes = torch.ones(batch.x.shape[0], dtype=torch.bool, device=device)
            return induced_subbatch(batch, keep_nodes, (~drop[bond_of_edge]).to(device))
        # attr-mask
        if not self.node_vocab:
            raise PluginError("graphcl attr-mask needs categorical node features")
        masked = sample_per_graph(cpu_batch, sizes, ratio, generator, minimum=0).to(device)
        x = batch.x.clone()
        x[masked] = torch.tensor(self.node_vocab, dtype=x.dtype, device=device)
        return batch.replace(x=x)

    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        augs = list(self.params["augmentations"])
        picks = torch.randint(len(augs), (2,), generator=ctx.generator).tolist()
        views = [head(encoder(self.augment(batch, augs[p], ctx.generator)).graph) for p in picks]
        return PretextOutput(loss=nt_xent(views[0], views[1], float(self.params["temperature"])))


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over 2B views: ``-log exp(s_ii'/t) / sum_{k != i} exp(s_ik/t)`` with cosine
    similarities s, averaged over all 2B views."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.t() / temperature
    n = a.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    twin = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, twin)


PRETEXT_TASKS: list[type[PretextTask]] = [NodeMasking, EdgeMasking, GraphPattern, Motif, ContextPrediction, GraphCL]
