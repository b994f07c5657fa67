"""Metrics on (label, prediction) rows. Generic: they know tasks, not domains.

A metric is a `Metric` subclass registered like any plugin (``register_metrics``); the core
registers the ones below. Each computes a value on a slice's `Predictions` and, for confidence
intervals, its values on resamples of the slice's graphs (`Metric.resampled`): the resampling unit
is the graph, so the rows of a node- or edge-level task stay together with their graph.

Regression: MAE, RMSE, R^2, Pearson r and the rank metrics Spearman rho and Kendall tau (Takashige
et al. 2023, arXiv 2308.08129, find that pretraining helps the *ranking* beyond a label threshold
more than the absolute error, so both are reported). Classification (binary, scores): ROC-AUC
(the Mann-Whitney statistic) and average precision, equal to scikit-learn's and to OGB's Evaluator
(tested). Class labels (a pretext head's predicted class against the true one): accuracy, balanced
accuracy and macro-F1 (Wang et al. 2023, arXiv 2308.08934: overall accuracy of masked-atom
prediction hides that rare elements are never predicted), whose ``min_items`` leaves classes with
too few items out of the mean, and the accuracy and item count of the rarest class.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from benchbase.contract.errors import PluginError
from benchbase.contract.types import Predictions, TaskInfo

#: Task kinds a metric applies to; "labels" are predicted classes of a class-labelled pretext head.
METRIC_KINDS = ("regression", "classification", "labels")


def _finite(pred: Predictions) -> Predictions:
    keep = np.isfinite(np.asarray(pred.y_true, float))
    if keep.all():
        return pred
    return Predictions(pred.y_true[keep], pred.y_pred[keep], pred.graph[keep])


class Metric:
    """A metric: `__call__` on one slice's predictions, `resampled` on resamples of its graphs.

    Metrics that are functions of per-graph sums (`graph_sums` and `finish`) are computed for all
    resamples at once; rank metrics give a vectorised `on_rows` for one row per graph; any other
    metric is recomputed on each resample (`compute`).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    kinds: ClassVar[frozenset[str]] = frozenset({"regression"})

    def __call__(self, pred: Predictions) -> float:
        pred = _finite(pred)
        if len(pred.y_true) == 0:
            return float("nan")
        _, row_unit = np.unique(pred.graph, return_inverse=True)
        sums = self.graph_sums(pred, row_unit.reshape(-1), int(row_unit.max()) + 1)
        if sums is None:
            return self.compute(pred)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(self.finish(sums.sum(axis=0, keepdims=True))[0])

    def compute(self, pred: Predictions) -> float:  # pragma: no cover - interface
        """The value on rows with finite labels (metrics without `graph_sums`)."""
        raise NotImplementedError

    def graph_sums(self, pred: Predictions, row_unit: np.ndarray, n_units: int) -> np.ndarray | None:
        """Sufficient statistics per graph (n_units, k), `row_unit` giving each row's graph, or None."""
        return None

    def finish(self, totals: np.ndarray) -> np.ndarray:
        """Metric values from summed statistics (R, k) -> (R,)."""
        raise NotImplementedError

    def on_rows(self, pred: Predictions, rows: np.ndarray) -> np.ndarray | None:
        """Optional vectorised form for one row per graph: values on row resamples (R, n)."""
        return None

    def resampled(self, pred: Predictions, weights: np.ndarray) -> np.ndarray:
        """Values on R resamples of the graphs: `weights` (R, G) is how often each graph of
        ``np.unique(pred.graph)`` is drawn (`benchbase.reporting.stats.unit_weights`)."""
        units, row_unit = np.unique(pred.graph, return_inverse=True)
        row_unit = row_unit.reshape(-1)
        keep = np.isfinite(np.asarray(pred.y_true, float))
        finite = _finite(pred)
        if len(finite.y_true) == 0:
            return np.full(len(weights), np.nan)
        sums = self.graph_sums(finite, row_unit[keep], len(units))
        if sums is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                return self.finish(weights @ sums)
        counts = weights.astype(np.int64)
        if keep.all() and len(units) == len(row_unit) and len(set(counts.sum(axis=1).tolist())) == 1:
            row_of_unit = np.empty(len(units), dtype=np.int64)
            row_of_unit[row_unit] = np.arange(len(row_unit))
            flat = np.repeat(np.tile(row_of_unit, len(counts)), counts.ravel())
            vectorised = self.on_rows(pred, flat.reshape(len(counts), -1))
            if vectorised is not None:
                return vectorised
        out = np.empty(len(counts))
        for r in range(len(counts)):
            out[r] = self(expand_resample(finite, row_unit[keep], counts[r]))
        return out


def expand_resample(pred: Predictions, row_unit: np.ndarray, counts: np.ndarray) -> Predictions:
    """The rows of one resample: each graph's rows as often as the graph was drawn, every copy a
    graph of its own (a graph drawn twice counts twice in a per-graph mean)."""
    repeats = np.asarray(counts, dtype=np.int64)[row_unit]
    rows = np.repeat(np.arange(len(row_unit)), repeats)
    starts = np.repeat(np.cumsum(repeats) - repeats, repeats)
    copy = np.arange(len(rows)) - starts  # which copy of its graph each expanded row belongs to
    graph = row_unit[rows] * (int(repeats.max(initial=0)) + 1) + copy
    return Predictions(pred.y_true[rows], pred.y_pred[rows], graph)


def _sum_by_graph(row_unit: np.ndarray, n_units: int, columns: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.bincount(row_unit, weights=c, minlength=n_units) for c in columns], axis=1)


class MAE(Metric):
    name = "mae"
    description = "mean absolute error"

    def graph_sums(self, pred, row_unit, n_units):
        err = np.abs(np.asarray(pred.y_pred, float) - np.asarray(pred.y_true, float))
        return _sum_by_graph(row_unit, n_units, [err, np.ones_like(err)])

    def finish(self, totals):
        return totals[:, 0] / totals[:, 1]


class RMSE(Metric):
    name = "rmse"
    description = "root mean squared error"

    def graph_sums(self, pred, row_unit, n_units):
        err = np.asarray(pred.y_pred, float) - np.asarray(pred.y_true, float)
        return _sum_by_graph(row_unit, n_units, [err**2, np.ones_like(err)])

    def finish(self, totals):
        return np.sqrt(totals[:, 0] / totals[:, 1])


class R2(Metric):
    name = "r2"
    description = "coefficient of determination (NaN for constant labels)"
    higher_is_better = True

    def graph_sums(self, pred, row_unit, n_units):
        y = np.asarray(pred.y_true, float)
        err = np.asarray(pred.y_pred, float) - y
        return _sum_by_graph(row_unit, n_units, [err**2, y, y**2, np.ones_like(y)])

    def finish(self, totals):
        sse, sy, syy, n = totals.T
        sst = syy - sy**2 / n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sst > 1e-12 * np.maximum(syy, 1e-300), 1.0 - sse / sst, np.nan)


class Pearson(Metric):
    name = "pearson"
    description = "Pearson correlation of labels and predictions over all rows"
    higher_is_better = True

    def graph_sums(self, pred, row_unit, n_units):
        y, p = np.asarray(pred.y_true, float), np.asarray(pred.y_pred, float)
        return _sum_by_graph(row_unit, n_units, [y, p, y * p, y * y, p * p, np.ones_like(y)])

    def finish(self, totals):
        sy, sp, syp, syy, spp, n = totals.T
        cov = syp - sy * sp / n
        var = (syy - sy**2 / n) * (spp - sp**2 / n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(var > 0, cov / np.sqrt(np.maximum(var, 0)), np.nan)


def weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks (R, G) of G values in R resamples where value g appears ``weights[r, g]``
    times: the ranks `scipy.stats.rankdata` gives the expanded sample, without expanding it."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
    totals = np.add.reduceat(weights[:, order], starts, axis=1)
    group_rank = np.cumsum(totals, axis=1) - totals + (totals + 1) / 2
    ranks = np.empty_like(weights)
    ranks[:, order] = group_rank[:, group]
    return ranks


def weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of x and y (R, G) with multiplicities `weights` (R, G)."""
    total = weights.sum(axis=1, keepdims=True)
    mx = (weights * x).sum(axis=1, keepdims=True) / total
    my = (weights * y).sum(axis=1, keepdims=True) / total
    dx, dy = x - mx, y - my
    cov = (weights * dx * dy).sum(axis=1)
    var = (weights * dx * dx).sum(axis=1) * (weights * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.sqrt(var), np.nan)


def _correlation_ok(y: np.ndarray, p: np.ndarray) -> bool:
    return len(y) > 2 and np.ptp(y) > 0 and np.ptp(p) > 0


class Spearman(Metric):
    name = "spearman"
    description = "Spearman rank correlation"
    higher_is_better = True

    def compute(self, pred):
        y, p = np.asarray(pred.y_true, float), np.asarray(pred.y_pred, float)
        return float(stats.spearmanr(y, p).statistic) if _correlation_ok(y, p) else float("nan")

    def resampled(self, pred, weights):
        units, first = np.unique(pred.graph, return_index=True)
        y = np.asarray(pred.y_true, float)
        if len(units) != len(y) or not np.isfinite(y).all():  # several rows per graph: the generic way
            return super().resampled(pred, weights)
        y, p = y[first], np.asarray(pred.y_pred, float)[first]
        return weighted_pearson(weighted_ranks(y, weights), weighted_ranks(p, weights), weights)


class Kendall(Metric):
    name = "kendall"
    description = "Kendall rank correlation (tau-b)"
    higher_is_better = True

    def compute(self, pred):
        y, p = np.asarray(pred.y_true, float), np.asarray(pred.y_pred, float)
        return float(stats.kendalltau(y, p).statistic) if _correlation_ok(y, p) else float("nan")


def _binary(pred: Predictions) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(pred.y_true, float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise PluginError("binary classification metrics need labels 0 and 1")
    return y, np.asarray(pred.y_pred, float)


class ROCAUC(Metric):
    name = "rocauc"
    description = "area under the ROC curve (binary; NaN when one class is absent)"
    higher_is_better = True
    kinds = frozenset({"classification"})

    def compute(self, pred):
        y, score = _binary(pred)
        return float(self.on_rows(Predictions(y, score, np.arange(len(y))), np.arange(len(y))[None, :])[0])

    def on_rows(self, pred, rows):
        y = np.asarray(pred.y_true, float)[rows]
        ranks = stats.rankdata(np.asarray(pred.y_pred, float)[rows], axis=1)
        positives = y.sum(axis=1)
        negatives = y.shape[1] - positives
        u = (ranks * y).sum(axis=1) - positives * (positives + 1) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((positives > 0) & (negatives > 0), u / (positives * negatives), np.nan)


class AveragePrecision(Metric):
    name = "ap"
    description = "average precision (binary; NaN without positives), scikit-learn's definition"
    higher_is_better = True
    kinds = frozenset({"classification"})

    def compute(self, pred):
        y, score = _binary(pred)
        if y.sum() == 0 or y.sum() == len(y):
            return float("nan")
        order = np.argsort(-score, kind="stable")
        y, score = y[order], score[order]
        # One threshold per distinct score: precision and recall where the score changes.
        last = np.r_[np.flatnonzero(np.diff(score)), len(y) - 1]
        true_pos = np.cumsum(y)[last]
        precision = true_pos / (last + 1)
        recall = true_pos / y.sum()
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


class _ClassLabels(Metric):
    """Metrics of predicted classes against true classes (integers stored as floats)."""

    higher_is_better = True
    kinds = frozenset({"labels"})

    def graph_sums(self, pred, row_unit, n_units):
        y = np.asarray(pred.y_true).astype(np.int64)
        p = np.asarray(pred.y_pred).astype(np.int64)
        classes = np.unique(np.concatenate([y, p]))  # only the classes that occur: few of many
        # Per graph: per class, the true count, the predicted count and the hits.
        columns = [y == c for c in classes] + [p == c for c in classes]
        columns += [(y == c) & (p == c) for c in classes]
        return _sum_by_graph(row_unit, n_units, [c.astype(float) for c in columns])

    @staticmethod
    def _split(totals):
        classes = totals.shape[1] // 3
        return totals[:, :classes], totals[:, classes : 2 * classes], totals[:, 2 * classes :]


class Accuracy(_ClassLabels):
    name = "acc"
    description = "accuracy"

    def finish(self, totals):
        true, _, hits = self._split(totals)
        return hits.sum(axis=1) / true.sum(axis=1)


class _Averaged(_ClassLabels):
    """A mean over classes of a per-class score. `min_items` (default 1: every class present) is the
    least number of true items a class needs to enter the mean: a class with fewer is too rare to
    score (its recall is a few coin flips) and is left out of the mean, though its items still count
    where they are predicted as another class (its false positives), as scikit-learn's ``labels=``
    does. The rule is applied to each graph resample as to the slice."""

    def __init__(self, min_items: int = 1) -> None:
        if isinstance(min_items, bool) or not isinstance(min_items, int | np.integer) or min_items < 1:
            raise PluginError(f"metric {self.name!r}: min_items must be an integer >= 1, got {min_items!r}")
        self.min_items = int(min_items)

    def scores(self, true: np.ndarray, predicted: np.ndarray, hits: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def finish(self, totals):
        true, predicted, hits = self._split(totals)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where(true >= self.min_items, self.scores(true, predicted, hits), np.nan)
        scored = np.isfinite(score).any(axis=1)
        out = np.full(len(score), np.nan)
        out[scored] = np.nanmean(score[scored], axis=1)
        return out


class BalancedAccuracy(_Averaged):
    name = "balanced_acc"
    description = "mean per-class recall over the classes present (with min_items: with at least that many items)"

    def scores(self, true, predicted, hits):
        return hits / true


class MacroF1(_Averaged):
    name = "macro_f1"
    description = (
        "mean F1 over the classes present (with min_items: with at least that many items; "
        "a class never predicted has precision 0)"
    )

    def scores(self, true, predicted, hits):
        return 2 * hits / (true + predicted)


class _Rarest(_ClassLabels):
    """A statistic of the rarest class of the slice: the class with the fewest true items (ties to
    the lower class index). On a graph resample, the rarest class of that resample."""

    def finish(self, totals):
        true, _, hits = self._split(totals)
        if true.shape[1] == 0:
            return np.full(len(true), np.nan)
        rarest = np.argmin(np.where(true > 0, true, np.inf), axis=1)
        rows = np.arange(len(true))
        return self.value(true[rows, rarest], hits[rows, rarest])

    def value(self, true: np.ndarray, hits: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RarestAccuracy(_Rarest):
    name = "rarest_acc"
    description = "accuracy (recall) on the rarest class present, the one with the fewest items"

    def value(self, true, hits):
        return hits / true


class RarestCount(_Rarest):
    name = "rarest_n"
    description = "number of items of the rarest class present (a size beside rarest_acc, not a score)"

    def value(self, true, hits):
        return true.astype(float)


BUILTIN_METRICS: list[type[Metric]] = [
    MAE,
    RMSE,
    R2,
    Pearson,
    Spearman,
    Kendall,
    ROCAUC,
    AveragePrecision,
    Accuracy,
    BalancedAccuracy,
    MacroF1,
    RarestAccuracy,
    RarestCount,
]
#: The standard metrics reported for a task of each kind, besides the task's headline metric.
STANDARD = {
    "regression": ["mae", "rmse", "r2", "spearman", "kendall", "pearson"],
    "classification": ["rocauc", "ap"],
}


def get_metric(name: str, **params: Any) -> Metric:
    """A registered metric by name (core metrics and those of plugins), built with `params` (the
    `Column.params` of a leaderboard column, such as ``min_items`` of a balanced accuracy)."""
    from benchbase.contract.registry import default_registry

    return default_registry().get("metric", name).obj(**params)


def standard_metric_names(task: TaskInfo) -> list[str]:
    """The metrics `task_metrics` reports for this task, headline (`task.metric`) first."""
    return [task.metric] + [n for n in STANDARD[task.kind] if n != task.metric]


def task_metrics(task: TaskInfo, pred: Predictions) -> dict[str, float]:
    """The standard metrics of one task on one slice (keys without the slice prefix). Metrics that
    are undefined on the slice (a single class, constant labels) are left out."""
    if len(_finite(pred).y_true) == 0:
        return {}
    out = {}
    for name in standard_metric_names(task):
        value = get_metric(name)(pred)
        if np.isfinite(value):
            out[name] = float(value)
    return out


def subset(pred: Predictions, graph_mask: np.ndarray) -> Predictions:
    """The rows of `pred` whose graph is selected by `graph_mask`, a boolean array over graph positions."""
    rows = np.asarray(graph_mask, bool)[pred.graph]
    return Predictions(pred.y_true[rows], pred.y_pred[rows], pred.graph[rows])


def distance_bins(distance: np.ndarray, bins: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Equal-count bins of a distance: (bin index 0..bins-1 per value, upper edge of each bin).

    Edges are the quantiles of `distance` (``np.quantile``, linear interpolation); a value equal to
    an edge falls in the lower bin, so with ties a bin may be empty.
    """
    distance = np.asarray(distance, float)
    edges = np.quantile(distance, np.linspace(0.0, 1.0, bins + 1))
    index = np.searchsorted(edges[1:-1], distance, side="left")
    return index, edges[1:]


def binned_errors(pred: Predictions, distance: np.ndarray, prefix: str = "test", bins: int = 4) -> dict[str, float]:
    """MAE per equal-count bin of a per-graph distance (beyond a threshold, say), nearest bin first.

    `distance` is indexed by graph position; the bins are the quantiles of the distance over the
    graphs of `pred` (for quartiles, ``bins=4``). Reports ``<prefix>_mae_bin<k>`` and the bin's
    upper distance edge ``<prefix>_bin<k>_distance`` for k = 1..bins; empty bins (ties) are left out.
    """
    keep = np.isfinite(pred.y_true)
    graphs = pred.graph[keep]
    if len(graphs) == 0:
        return {}
    err = np.abs(pred.y_pred[keep] - pred.y_true[keep])
    per_graph = np.unique(graphs)
    index, upper = distance_bins(np.asarray(distance, float)[per_graph], bins)
    bin_of_graph = np.full(int(per_graph.max()) + 1, -1)
    bin_of_graph[per_graph] = index
    row_bin = bin_of_graph[graphs]
    out: dict[str, float] = {}
    for k in range(bins):
        rows = row_bin == k
        if rows.any():
            out[f"{prefix}_mae_bin{k + 1}"] = float(err[rows].mean())
            out[f"{prefix}_bin{k + 1}_distance"] = float(upper[k])
    return out


def metric_key(name: str) -> str:
    """A class name as it appears in a metric key (non-word characters become ``_``)."""
    return re.sub(r"\W", "_", str(name))


def pretext_labels(logits: np.ndarray, targets: np.ndarray, graph: np.ndarray) -> Predictions:
    """A class-labelled pretext head's held-out items as predictions: the true class, the predicted
    class (argmax) and the graph of each item; items whose target is outside ``[0, C)`` are dropped."""
    logits = np.asarray(logits, float)
    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    if logits.ndim != 2 or len(logits) != len(targets) or len(graph) != len(targets):
        raise ValueError(f"logits {logits.shape}, targets {targets.shape} and graphs {np.shape(graph)} do not match")
    valid = (targets >= 0) & (targets < logits.shape[1])
    predicted = logits[valid].argmax(axis=1) if valid.any() else np.zeros(0, np.int64)
    return Predictions(targets[valid].astype(np.float32), predicted.astype(np.float32), np.asarray(graph)[valid])


def pretext_class_metrics(
    labels: Predictions, class_names: list[str] | None = None, min_items: int = 1
) -> dict[str, float]:
    """How well a class-labelled pretext head predicts held-out items, class by class.

    ``pretext_acc`` (overall accuracy, every item), for each class present ``pretext_acc_<class>``
    (its accuracy, i.e. recall) beside ``pretext_n_<class>`` (its number of items),
    ``pretext_balanced_acc`` and ``pretext_macro_f1`` (the means over the classes with at least
    `min_items` items; absent when none has), ``pretext_rarest_acc`` and ``pretext_rarest_n`` (the class with the fewest
    items) and ``pretext_items``. A class present with fewer than `min_items` items is too rare to
    score: it keeps its accuracy and count but is left out of both means, and is named by
    ``pretext_excluded_<class>`` = 1; ``pretext_excluded_classes`` counts them (0 when none). Classes
    are named by `class_names` where given, else by index. This is the view of Wang et al. 2023
    (arXiv 2308.08934).
    """
    if len(labels.y_true) == 0:
        return {}
    out = {"pretext_acc": float(Accuracy()(labels))}
    for cls in (BalancedAccuracy, MacroF1):
        value = float(cls(min_items=min_items)(labels))
        if np.isfinite(value):  # left out when no class has `min_items` items
            out[f"pretext_{cls.name}"] = value
    for cls in (RarestAccuracy, RarestCount):
        out[f"pretext_{cls.name}"] = float(cls()(labels))
    out["pretext_items"] = float(len(labels.y_true))
    targets, predicted = labels.y_true.astype(np.int64), labels.y_pred.astype(np.int64)
    excluded = 0
    for c in np.unique(targets):
        name = metric_key(class_names[c] if class_names is not None and c < len(class_names) else str(c))
        mine = targets == c
        out[f"pretext_acc_{name}"] = float(np.mean(predicted[mine] == c))
        out[f"pretext_n_{name}"] = float(mine.sum())
        if mine.sum() < min_items:
            out[f"pretext_excluded_{name}"] = 1.0
            excluded += 1
    out["pretext_excluded_classes"] = float(excluded)
    return out
