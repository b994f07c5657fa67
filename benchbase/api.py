"""The types that plugins implement and the harness consumes.

The harness knows graphs, tasks, labels and class counts - never atoms or particles. Everything
domain-specific (what a node feature means, how a pretext label is made) lives in plugins.

Shapes use G graphs, N nodes and E directed edges in total.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from benchbase.errors import PluginError

Level = Literal["graph", "node", "edge"]
Kind = Literal["regression", "classification"]


@dataclass(frozen=True)
class TaskInfo:
    """One prediction target of a dataset.

    `metric` names the headline metric of leaderboards (see `benchbase.metrics`);
    `higher_is_better` orders them.
    """

    name: str
    level: Level = "graph"
    kind: Kind = "regression"
    unit: str = ""
    metric: str = "mae"
    higher_is_better: bool = False
    description: str = ""


@dataclass(frozen=True)
class FeatureSpec:
    """What an encoder can expect in a batch of this dataset.

    Categorical columns are given by their vocabulary sizes (`x[:, j]` lies in `[0, node_vocab[j])`);
    float inputs by their width. Exactly one of each pair is used by a dataset.
    """

    node_vocab: tuple[int, ...] = ()
    node_dim: int = 0
    edge_vocab: tuple[int, ...] = ()
    edge_dim: int = 0
    has_pos: bool = False


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


class Dataset(ABC):
    """A named collection of graphs with tasks. Built by a dataset plugin from keyword parameters.

    `provides` lists capabilities that encoders and pretext tasks may require, for example
    ``{"edge_attr", "pos", "smiles"}``, and the graph properties it has (``"size"``, ``"group"``,
    ...), which protocols may require. Protocols read labels and the graph properties below.
    """

    name: str = ""
    tasks: list[TaskInfo] = []
    provides: frozenset[str] = frozenset()
    features: FeatureSpec = FeatureSpec()

    @abstractmethod
    def arrays(self) -> GraphArrays:
        """All graphs, loaded (and cached by the plugin) on first call."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """The native id of each graph (the QM9 index for QM9), shape (G,)."""

    def graph_property(self, key: str) -> np.ndarray | None:
        """A per-graph array that protocols may use, or None when this dataset has none.

        Documented keys: ``size`` (G,) int, the number of nodes that count (heavy atoms);
        ``group`` (G,) str, a grouping such as a Bemis-Murcko scaffold; ``node_class_counts``
        (G, C) int, how many nodes of each class a graph has (classes named by
        `node_class_names`); ``official_split`` (G,) str of "train" / "valid" / "test" / "".
        Plugins may add keys for their own protocols.
        """
        return None

    def node_class_names(self) -> list[str] | None:
        """Names of the node classes counted by ``node_class_counts`` (elements, particle types)."""
        return None

    def labels(self, task: str) -> np.ndarray:
        """Graph-level labels of one task, (G,), NaN where missing."""
        return self.arrays().targets[task]

    def task(self, name: str | None = None) -> TaskInfo:
        if name is None:
            return self.tasks[0]
        for info in self.tasks:
            if info.name == name:
                return info
        raise PluginError(f"dataset {self.name!r} has no task {name!r}; tasks: {[t.name for t in self.tasks]}")

    def check_available(self) -> None:
        """Raise `PluginError` saying what is missing and how to obtain it when the data is not on
        this machine and cannot be fetched; cheap (no loading). The grid skips such datasets."""

    def describe(self) -> dict[str, Any]:
        """Metadata for `benchbase datasets`: override to report size and local availability."""
        return {}

    def prepare(self, progress: bool = True) -> None:
        """Make the data ready offline (featurise, cache). Default: load it."""
        self.arrays()


class Encoder(nn.Module):
    """batch -> Embeddings. Subclasses are registered as classes and built as
    ``cls(features: FeatureSpec, **params)``; `out_dim` is the embedding width."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    defaults: ClassVar[dict[str, Any]] = {}
    #: False for encoders that never see the corrupted batch (precomputed fingerprints, say):
    #: pretraining them with a pretext task would mean nothing, so the grid skips it.
    supports_pretext: ClassVar[bool] = True
    out_dim: int

    def prepare(self, dataset: Dataset) -> None:
        """Called once before training with the dataset (an encoder that needs per-graph inputs
        beyond the batch, such as fingerprints, computes them here)."""

    def forward(self, batch: GraphBatch) -> Embeddings:  # pragma: no cover - interface
        raise NotImplementedError


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
    data-side answer: how much likelier an item of each class should be picked for corruption."""

    generator: torch.Generator
    selection_weights: torch.Tensor | None = None
    training: bool = True


class PretextTask(ABC):
    """Self-supervised labels from unlabeled graphs, a head, and one step of prediction.

    Built as ``cls(**params)``. Set `class_labelled = False` when the loss has no class labels for a
    rebalancer to act on (contrastive tasks).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    defaults: ClassVar[dict[str, Any]] = {}
    class_labelled: ClassVar[bool] = True
    #: True for tasks that choose which items to corrupt and honour `PretextContext.selection_weights`.
    uses_selection_weights: ClassVar[bool] = False
    #: True for tasks that read the dataset's labels (a supervised "pretext"): they may only pretrain
    #: on the train split (``pretrain_pool = "train"``), never on graphs whose labels are tested.
    reads_labels: ClassVar[bool] = False

    def prepare(self, dataset: Dataset, pool: np.ndarray) -> None:
        """Compute labels or vocabularies from the pretraining pool (graph positions)."""

    def class_counts(self) -> np.ndarray | None:
        """Counts of each label class on the pool (positives per label when multilabel)."""
        return None

    def class_names(self) -> list[str] | None:
        return None

    def is_multilabel(self) -> bool:
        return False

    @abstractmethod
    def build_head(self, encoder: Encoder) -> nn.Module:
        """The prediction head on top of the encoder's embeddings."""

    @abstractmethod
    def step(self, encoder: Encoder, head: nn.Module, batch: GraphBatch, ctx: PretextContext) -> PretextOutput:
        """Corrupt or view the batch, encode it, predict the self-supervised labels."""


class Rebalancer(ABC):
    """Turns class counts into a class-labelled loss (weights, logit offsets, focusing) and,
    optionally, per-class selection weights for data-side resampling. Built as ``cls(**params)``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    #: True for strategies that act only through `selection_weights` (data side): they need a
    #: pretext task that `uses_selection_weights`, and do nothing for a downstream loss.
    data_side: ClassVar[bool] = False

    def fit(self, class_counts: np.ndarray, num_samples: int | None = None) -> None:
        """Remember what the loss needs from the counts. `num_samples` is the number of labelled
        items (for multilabel counts, where positives do not add up to it)."""
        self.class_counts = np.asarray(class_counts, dtype=np.float64)
        self.num_samples = num_samples

    @abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
        """Mean loss over items; multiclass targets are class indices, multilabel ones 0/1 floats
        with NaN for missing."""

    def selection_weights(self) -> np.ndarray | None:
        """Per-class relative probability of picking an item for corruption, or None (uniform)."""
        return None


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
    recompute every column, with its confidence interval, from the stored predictions."""

    slice: str
    metric: str
    per: str | None = None

    @property
    def name(self) -> str:
        return f"{self.metric}_ratio" if self.per else f"{self.slice}_{self.metric}"


class Protocol(ABC):
    """A standard split of a dataset and the metrics reported on it. Built as ``cls(**params)``.

    `requires` names the graph properties (see `Dataset.graph_property`) it needs; the grid skips
    datasets that lack them. `split` returns graph positions for "train", "valid", "test" and any
    extra named slices (an in-distribution test slice, say); slices are disjoint. `derived_slices`
    may name subsets of them (test graphs with a rare class, say): the harness predicts every slice,
    keeps the predictions, and `report` turns them into metrics.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise PluginError(
                f"protocol {self.name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}

    #: Protocols that set this get the pretrained pretext head's predictions on the test slice
    #: through `report_pretext` (per-class accuracy of a masking task, say).
    evaluates_pretext: ClassVar[bool] = False

    def incompatibility(self, dataset: Dataset) -> str | None:
        """Why this protocol cannot run on `dataset` (the grid skips it, showing the reason), or None."""
        return None

    def task_of(self, dataset: Dataset) -> TaskInfo:
        """The task whose labels define the split: the `task` parameter if given, else the first."""
        return dataset.task(self.params.get("task"))

    @abstractmethod
    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        """Deterministic for (dataset, parameters, seed)."""

    def derived_slices(self, dataset: Dataset, split: Split) -> dict[str, tuple[str, np.ndarray]]:
        """Named subsets of slices, ``name -> (slice, graph positions)``, predicted and reported like
        slices. Default: none."""
        return {}

    def pretrain_pool(self, split: Split, mode: str) -> np.ndarray:
        """Which graphs self-supervised pretraining may see under the training setting
        ``pretrain_pool``: every graph of the split (``"all"``), or only train and valid
        (``"train"``: the test region stays unseen)."""
        if mode == "train":
            return np.sort(np.concatenate([split["train"], split["valid"]]))
        return np.sort(np.concatenate(list(split.values())))

    def report(
        self,
        task: TaskInfo,
        predictions: dict[str, Predictions],
        dataset: Dataset,
        split: Split,
        pretrain_pool: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Metrics from (label, prediction) pairs per slice (derived slices included);
        `pretrain_pool` holds the graphs pretraining saw, None without pretraining. The default
        reports the task's standard metrics on every slice as ``<slice>_<metric>``."""
        from benchbase.metrics import task_metrics

        out: dict[str, float] = {}
        for slice_name, pred in predictions.items():
            for key, value in task_metrics(task, pred).items():
                out[f"{slice_name}_{key}"] = value
        return out

    def report_pretext(self, labels: Predictions, class_names: list[str] | None) -> dict[str, float]:
        """Metrics of a class-labelled pretext head on held-out graphs (see `evaluates_pretext`):
        `labels` holds the true and the predicted class of each held-out item."""
        return {}

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        """The columns a leaderboard shows for this protocol, headline first."""
        return [Column("test", task.metric)]
