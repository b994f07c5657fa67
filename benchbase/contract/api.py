"""The interfaces that plugins implement and the harness consumes: `Dataset`, `Encoder`,
`PretextTask`, `Rebalancer`, `Protocol` (metrics: `benchbase.compute.metrics.Metric`; executors:
`benchbase.running.executors.Executor`). The plain types they exchange live in `benchbase.contract.types` and are
re-exported here.

The harness knows graphs, tasks, labels and class counts - never atoms or particles. Everything
domain-specific (what a node feature means, how a pretext label is made) lives in plugins.
"""

from __future__ import annotations

import inspect
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from benchbase.compute.metrics import get_metric, task_metrics
from benchbase.contract.errors import PluginError
from benchbase.contract.params import Param, declare, spec_of, validate
from benchbase.contract.types import (
    CAPABILITIES,
    EDGE_ATTR,
    GROUP,
    NODE_CLASS_COUNTS,
    OFFICIAL_SPLIT,
    POS,
    SIZE,
    SMILES,
    X_CATEGORICAL,
    Column,
    Embeddings,
    FeatureSpec,
    GraphArrays,
    GraphBatch,
    Kind,
    Level,
    Predictions,
    PretextContext,
    PretextOutput,
    Split,
    TaskInfo,
)

__all__ = [
    "CAPABILITIES",
    "EDGE_ATTR",
    "GROUP",
    "NODE_CLASS_COUNTS",
    "OFFICIAL_SPLIT",
    "POS",
    "SIZE",
    "SMILES",
    "X_CATEGORICAL",
    "Column",
    "Dataset",
    "Embeddings",
    "Encoder",
    "FeatureSpec",
    "GraphArrays",
    "GraphBatch",
    "Kind",
    "Level",
    "Param",
    "PluginError",
    "Predictions",
    "PretextContext",
    "PretextOutput",
    "PretextTask",
    "Protocol",
    "Rebalancer",
    "Split",
    "TaskInfo",
]


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

    def content_key(self) -> str | None:
        """A key of the data's content (a hash of its source files, the featuriser's version), or
        None when the dataset's parameters say it all. It enters every run's identity, so that
        changed data - a CSV edited in place - is never mistaken for the old. Cheap: no loading."""
        return None

    @property
    def skipped(self) -> list[tuple[Any, str]]:
        """Inputs the plugin could not use (an unparsable record, say): ``(native id, why)`` each.
        Counted and listed in every run record, so that nothing is dropped silently."""
        return []

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

    def augment(self, batch: GraphBatch, generator: torch.Generator) -> GraphBatch:
        """A randomly transformed view of a training batch (a symmetry of the data, say), drawn from
        `generator`, the run's seeded generator, so that a seed gives the same numbers. The harness
        calls it on every fine-tuning and pretraining batch and never on evaluation batches. Return
        a new batch (`batch.replace(...)`) rather than changing tensors in place. Default: the batch
        unchanged."""
        return batch

    def describe(self) -> dict[str, Any]:
        """Metadata for `benchbase datasets`: override to report size and local availability."""
        return {}

    def prepare(self, progress: bool = True) -> None:
        """Make the data ready offline (featurise, cache). Default: load it."""
        self.arrays()


class Encoder(nn.Module):
    """batch -> Embeddings. Subclasses are registered as classes and built as
    ``cls(features: FeatureSpec, **params)``; `out_dim` is the embedding width."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare(cls)

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    #: Typed parameters (see `benchbase.contract.params`); `defaults` follows from them.
    param_spec: ClassVar[dict[str, Param]] = {}
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


class PretextTask(ABC):
    """Self-supervised labels from unlabeled graphs, a head, and one step of prediction.

    Built as ``cls(**params)``. Set `class_labelled = False` when the loss has no class labels for a
    rebalancer to act on (contrastive tasks).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare(cls)

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    param_spec: ClassVar[dict[str, Param]] = {}
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
        """Corrupt or view the batch, encode it, predict the self-supervised labels. When
        ``ctx.selection`` is set (held-out evaluation, see `evaluation_rounds`), corrupt and predict
        exactly the items it selects, one row of logits per item, in item order."""

    def evaluation_rounds(self, batch: GraphBatch, generator: torch.Generator) -> list[torch.Tensor] | None:
        """How held-out evaluation scores every item of `batch` exactly once: bool masks over the
        task's items (the things `step` corrupts and predicts, in the task's own numbering), one per
        round, each item in exactly one round and each round corrupting about the share a training
        step corrupts. The harness runs `step` once per round with the mask as
        ``PretextContext.selection`` and checks that the rounds cover every item once and that each
        round predicts as many items as it selects. Draw randomness (the order in which a graph's
        items are taken) only from `generator`, which the harness seeds.

        None (the default): evaluation is one ordinary `step` with its own random corruption, so that
        only a sample of the items is scored (fine for tasks whose items are whole graphs or pairs)."""
        return None


class Rebalancer(ABC):
    """Turns class counts into a class-labelled loss (weights, logit offsets, focusing) and,
    optionally, per-class selection weights for data-side resampling. Built as ``cls(**params)``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare(cls)

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    param_spec: ClassVar[dict[str, Param]] = {}
    defaults: ClassVar[dict[str, Any]] = {}
    #: True for strategies that act only through `selection_weights` (data side): they need a
    #: pretext task that `uses_selection_weights`, and do nothing for a downstream loss.
    data_side: ClassVar[bool] = False
    #: False for strategies whose `loss` cannot take ``multilabel=True``: the grid then skips, with
    #: its reason, every run that would need it (classification tasks, a multi-label pretext task).
    supports_multilabel: ClassVar[bool] = True

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


#: The contract version that removes the deprecated forms adapted below (see the README's
#: compatibility policy).
REMOVED_IN = "2.0"


def _deprecated(old: str, new: str, cls: type) -> None:
    warnings.warn(
        f"{cls.__module__}.{cls.__qualname__}: {old} is deprecated and removed in contract {REMOVED_IN}; use {new}",
        DeprecationWarning,
        stacklevel=5,  # the plugin's class statement (through __init_subclass__ and ABCMeta.__new__)
    )


def _adapt_old_protocol(cls: type) -> None:
    """Protocols written against contract 1.0's first forms keep working (with a warning): a
    ``report(task, predictions, dataset, split)`` without `pretrain_pool`, and
    ``leaderboard_metrics(task) -> ["test_mae", ...]`` in place of `leaderboard_columns`."""
    report = cls.__dict__.get("report")
    if report is not None:
        parameters = list(inspect.signature(report).parameters.values())[1:]
        takes_pool = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "pretrain_pool" for p in parameters)
        if not takes_pool and len(parameters) == 4:
            _deprecated("report(task, predictions, dataset, split)", "report(..., split, pretrain_pool=None)", cls)

            def adapted(self: Any, task: Any, predictions: Any, dataset: Any, split: Any, pretrain_pool: Any = None):
                return report(self, task, predictions, dataset, split)

            adapted.__doc__ = report.__doc__  # not functools.wraps: the signature shown must be the new one
            cls.report = adapted
    if "leaderboard_metrics" in cls.__dict__ and "leaderboard_columns" not in cls.__dict__:
        _deprecated("leaderboard_metrics(task) -> ['test_mae', ...]", "leaderboard_columns(task) -> [Column]", cls)

        def leaderboard_columns(self: Any, task: TaskInfo) -> list[Column]:
            return [_column_of(key) for key in self.leaderboard_metrics(task)]

        cls.leaderboard_columns = leaderboard_columns


def _column_of(key: str) -> Column:
    """``"<slice>_<metric>"`` as a `Column`: the metric is the longest known metric name that ends
    the key (slice names may hold underscores too), else what follows the first underscore."""
    parts = key.split("_")
    for i in range(1, len(parts)):
        try:
            get_metric("_".join(parts[i:]))
        except Exception:  # noqa: BLE001 - not a metric name: try a shorter one
            continue
        return Column("_".join(parts[:i]), "_".join(parts[i:]))
    slice_name, _, metric = key.partition("_")
    return Column(slice_name, metric or key)


class Protocol(ABC):
    """A standard split of a dataset and the metrics reported on it. Built as ``cls(**params)``.

    `requires` names the graph properties (see `Dataset.graph_property`) it needs; the grid skips
    datasets that lack them. `split` returns graph positions for "train", "valid", "test" and any
    extra named slices (an in-distribution test slice, say); slices are disjoint. `derived_slices`
    may name subsets of them (test graphs with a rare class, say): the harness predicts every slice,
    keeps the predictions, and `report` turns them into metrics.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare(cls)
        _adapt_old_protocol(cls)

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    param_spec: ClassVar[dict[str, Param]] = {}
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        self.params = validate(spec_of(type(self)), params, f"protocol {self.name!r}")

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
        out: dict[str, float] = {}
        for slice_name, pred in predictions.items():
            for key, value in task_metrics(task, pred).items():
                out[f"{slice_name}_{key}"] = value
        return out

    def report_pretext(self, labels: Predictions, class_names: list[str] | None) -> dict[str, float]:
        """Metrics of a class-labelled pretext head on held-out graphs (see `evaluates_pretext`):
        `labels` holds the true and the predicted class of each held-out item - every item once
        when the task has `PretextTask.evaluation_rounds`, else those one random corruption chose."""
        return {}

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        """The columns a leaderboard shows for this protocol, headline first."""
        return [Column("test", task.metric)]
