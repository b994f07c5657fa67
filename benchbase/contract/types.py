"""The plain types that the harness and plugins exchange: containers, task descriptions, the
capability names, no behaviour. The interfaces that plugins implement are in `benchbase.contract.api`, which
re-exports these.

Shapes use G graphs, N nodes and E directed edges in total.

**Capabilities** (`Dataset.provides`, and what encoders and pretext tasks ``require``):

=================== ===========================================================================
``x_categorical``   node features are categorical columns (`FeatureSpec.node_vocab`)
``edge_attr``       edges carry features (`FeatureSpec.edge_vocab` or ``edge_dim``)
``pos``             nodes carry 3-D coordinates (`GraphBatch.pos`)
``smiles``          the dataset has ``smiles()``: one SMILES string per graph
=================== ===========================================================================

**Graph properties** (`Dataset.graph_property`, what protocols ``require``; a dataset lists the ones
it has in `provides` too): ``size`` (G,) int, the number of nodes that count; ``group`` (G,) str, a
grouping such as a Bemis-Murcko scaffold; ``node_class_counts`` (G, C) int, nodes of each class
(named by `Dataset.node_class_names`); ``official_split`` (G,) str, "train" / "valid" / "test" / "".
Plugins may add their own names (the glass plugin adds ``glass``, ``box``, ``temperature``,
``time_index``) and document them.

**The mask token**: a categorical column j holds values in ``[0, vocab[j])`` in the data; the value
``vocab[j]`` itself (`FeatureSpec.mask_token`) is the mask token that masking pretext tasks write.
Every encoder that embeds categorical columns keeps one extra row per column for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

X_CATEGORICAL = "x_categorical"
EDGE_ATTR = "edge_attr"
POS = "pos"
SMILES = "smiles"
SIZE = "size"
GROUP = "group"
NODE_CLASS_COUNTS = "node_class_counts"
OFFICIAL_SPLIT = "official_split"
#: The capabilities and graph properties the core documents (plugins may add their own).
CAPABILITIES = (X_CATEGORICAL, EDGE_ATTR, POS, SMILES, SIZE, GROUP, NODE_CLASS_COUNTS, OFFICIAL_SPLIT)

Level = Literal["graph", "node", "edge"]
Kind = Literal["regression", "classification"]


@dataclass(frozen=True)
class TaskInfo:
    """One prediction target of a dataset.

    `metric` names the headline metric of leaderboards (see `benchbase.compute.metrics`);
    `higher_is_better` orders them.

    `rope` is the task's region of practical equivalence for errors, in the task's `unit`: a
    difference of MAE or RMSE between two methods smaller than it is too small to matter (for a
    QM9 energy, chemical accuracy). Paired comparisons use it where the grid's ``[analysis]``
    declares no ROPE of its own (`benchbase.running.analysis.rope_for`); metrics in other units (rank
    correlations, accuracies, ratios) never take it. `rope_reason` says where the value comes from.
    None: the dataset declares none.
    """

    name: str
    level: Level = "graph"
    kind: Kind = "regression"
    unit: str = ""
    metric: str = "mae"
    higher_is_better: bool = False
    description: str = ""
    rope: float | None = None
    rope_reason: str = ""


@dataclass(frozen=True)
class FeatureSpec:
    """What an encoder can expect in a batch of this dataset.

    Categorical columns are given by their vocabulary sizes (`x[:, j]` lies in `[0, node_vocab[j])`
    in the data; the value ``node_vocab[j]`` is the mask token, see the module docstring); float
    inputs by their width. Exactly one of each pair is used by a dataset.
    """

    node_vocab: tuple[int, ...] = ()
    node_dim: int = 0
    edge_vocab: tuple[int, ...] = ()
    edge_dim: int = 0
    has_pos: bool = False

    def mask_token(self, which: str = "node") -> tuple[int, ...]:
        """The value a masking pretext task writes into each categorical column: ``vocab[j]``."""
        return tuple(int(v) for v in (self.node_vocab if which == "node" else self.edge_vocab))


@dataclass
class GraphArrays:
    """Many graphs stored as contiguous arrays (no Python object per graph).

    Graph i owns node rows `node_ptr[i]:node_ptr[i+1]` and edge columns `edge_ptr[i]:edge_ptr[i+1]`;
    `edge_index` holds node indices local to each graph. `targets` maps a task name to its labels,
    shaped by the task's level: (G,), (N,) or (E,); NaN marks a missing label. `target_masks`
    optionally restricts, per task, which rows are trained on and evaluated. `graph_attr` carries
    per-graph arrays (G, ...) that encoders may need (a simulation box, for instance).
    """

    node_ptr: np.ndarray
    edge_ptr: np.ndarray
    edge_index: np.ndarray
    x: np.ndarray
    edge_attr: np.ndarray | None = None
    pos: np.ndarray | None = None
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    target_masks: dict[str, np.ndarray] = field(default_factory=dict)
    graph_attr: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_graphs(self) -> int:
        return len(self.node_ptr) - 1


@dataclass
class GraphBatch:
    """A mini-batch as torch tensors; `edge_index` is global within the batch.

    `graph_index` holds the dataset positions of the batch's graphs, so that a pretext task can
    look up labels it computed per graph in `PretextTask.prepare`.
    """

    x: torch.Tensor
    edge_index: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    num_graphs: int
    graph_index: torch.Tensor
    edge_attr: torch.Tensor | None = None
    pos: torch.Tensor | None = None
    edge_batch: torch.Tensor | None = None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)
    target_masks: dict[str, torch.Tensor] = field(default_factory=dict)
    graph_attr: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> GraphBatch:
        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device)
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            return value

        return GraphBatch(**{k: move(v) for k, v in self.__dict__.items()})

    def replace(self, **changes: Any) -> GraphBatch:
        """A shallow copy with some fields replaced (pretext tasks corrupt inputs this way)."""
        return GraphBatch(**{**self.__dict__, **changes})


@dataclass
class Embeddings:
    """What an encoder returns. `edge` may be None: edge heads then use the endpoints' nodes."""

    node: torch.Tensor
    graph: torch.Tensor
    edge: torch.Tensor | None = None


@dataclass
class PretextOutput:
    """One pretext step. Class-labelled tasks return logits and integer targets (multiclass) or 0/1
    targets (multilabel) and the harness applies the rebalancer's loss; other tasks (contrastive)
    return `loss` themselves."""

    logits: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    multilabel: bool = False
    loss: torch.Tensor | None = None
    #: The batch-local graph of each row of `logits` (``batch.batch[masked]`` for masked nodes), so
    #: that held-out evaluation can resample whole graphs; None makes each row its own unit.
    item_graph: torch.Tensor | None = None


@dataclass
class PretextContext:
    """Handed to every pretext step. `selection_weights` (per class, or None) is the rebalancer's
    data-side answer: how much likelier an item of each class should be picked for corruption.
    `center_per_graph` is the run's training setting of that name: a regression pretext task should
    then compute its loss on targets and predictions each centred per graph
    (`benchbase.compute.batching.center_per_graph`). `selection`, set only in held-out evaluation, is one
    round of the task's own `PretextTask.evaluation_rounds`: a bool mask over its items (in the
    task's numbering) to corrupt and predict instead of drawing them at random."""

    generator: torch.Generator
    selection_weights: torch.Tensor | None = None
    training: bool = True
    center_per_graph: bool = False
    selection: torch.Tensor | None = None


Split = dict[str, np.ndarray]


@dataclass
class Predictions:
    """Labelled rows of one slice and one task: labels, predictions and the graph position each row
    belongs to (for per-graph metrics such as a per-configuration Pearson r)."""

    y_true: np.ndarray
    y_pred: np.ndarray
    graph: np.ndarray


@dataclass(frozen=True)
class Column:
    """A leaderboard column: `metric` on the rows of prediction slice `slice`; with `per`, the ratio
    of that value to the same metric on slice `per` (an extrapolation gap, say). Leaderboards
    recompute every column, with its confidence interval, from the stored predictions. `params` are
    keyword arguments of the metric (``get_metric(metric, **dict(params))``), such as the least
    number of items a class needs to enter a balanced accuracy; they do not change the name."""

    slice: str
    metric: str
    per: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.metric}_ratio" if self.per else f"{self.slice}_{self.metric}"
