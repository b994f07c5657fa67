"""Metrics on (label, prediction) rows. Generic: they know tasks, not domains.

Regression: MAE, RMSE, R^2, Pearson r and the rank metrics Spearman rho and Kendall tau (Takashige
et al. 2023, arXiv 2308.08129, find that pretraining helps the *ranking* beyond a label threshold
more than the absolute error, so both are reported). Classification: ROC-AUC and average precision,
computed by `ogb.graphproppred.Evaluator`'s own code when the task's metric is an OGB one
(``rocauc`` / ``ap``) so that numbers match the OGB leaderboards, by scikit-learn otherwise.
Pretext heads: per-class accuracy, macro-F1 and balanced accuracy (Wang et al. 2023, arXiv
2308.08934, on the imbalance of masked-atom prediction).
"""

from __future__ import annotations

import re

import numpy as np
from scipy import stats

from benchbase.api import Predictions, TaskInfo

#: Task metric names that OGB's graph-property Evaluator computes.
OGB_CLASSIFICATION_METRICS = ("rocauc", "ap")


def _finite(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y_true)
    return y_true[keep], y_pred[keep]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """mae, rmse, r2 (NaN for constant labels) and, with at least 3 rows and non-constant labels and
    predictions, spearman, kendall (tau-b) and pearson. Rows with a NaN label are ignored."""
    y_true, y_pred = _finite(np.asarray(y_true, float), np.asarray(y_pred, float))
    if len(y_true) == 0:
        return {}
    err = y_pred - y_true
    out = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}
    var = float(np.sum((y_true - y_true.mean()) ** 2))
    out["r2"] = float(1.0 - np.sum(err**2) / var) if var > 0 else float("nan")
    if len(y_true) > 2 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0:
        out["spearman"] = float(stats.spearmanr(y_true, y_pred).statistic)
        out["kendall"] = float(stats.kendalltau(y_true, y_pred).statistic)
        out["pearson"] = float(stats.pearsonr(y_true, y_pred).statistic)
    return out


def per_graph_pearson(pred: Predictions) -> float:
    """Pearson r computed within each graph, then averaged (the glass-dynamics convention)."""
    values = []
    for g in np.unique(pred.graph):
        rows = (pred.graph == g) & np.isfinite(pred.y_true)
        y, p = pred.y_true[rows], pred.y_pred[rows]
        if len(y) > 2 and np.ptp(y) > 0 and np.ptp(p) > 0:
            values.append(stats.pearsonr(y, p).statistic)
    return float(np.mean(values)) if values else float("nan")


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, ogb: bool = False) -> dict[str, float]:
    """Binary ROC-AUC and average precision (scores are logits or probabilities; both metrics only
    depend on their order). Empty when the rows hold a single class (both are undefined then).

    ``ogb=True`` computes them with `ogb.graphproppred.Evaluator` (one task column), the reference
    implementation of OGB's leaderboards; otherwise with scikit-learn.
    """
    y_true, y_score = _finite(np.asarray(y_true, float), np.asarray(y_score, float))
    if len(np.unique(y_true)) < 2:
        return {}
    if ogb:
        return {metric: _ogb_evaluate(metric, y_true, y_score) for metric in OGB_CLASSIFICATION_METRICS}
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "rocauc": float(roc_auc_score(y_true, y_score)),
        "ap": float(average_precision_score(y_true, y_score)),
    }


def _ogb_evaluate(metric: str, y_true: np.ndarray, y_score: np.ndarray) -> float:
    """One OGB Evaluator metric on one task column.

    OGB's Evaluator is keyed by dataset name only to look up the metric and the number of task
    columns; the harness must not know dataset names, so the evaluator is built for the metric with
    one column and OGB's own evaluation code does the rest.
    """
    from ogb.graphproppred import Evaluator

    evaluator = Evaluator.__new__(Evaluator)
    evaluator.name, evaluator.eval_metric, evaluator.num_tasks = f"benchbase-{metric}", metric, 1
    result = evaluator.eval({"y_true": y_true.reshape(-1, 1), "y_pred": y_score.reshape(-1, 1)})
    return float(result[metric])


def task_metrics(task: TaskInfo, pred: Predictions) -> dict[str, float]:
    """The standard metrics of one task on one slice (keys without the slice prefix)."""
    if task.kind == "classification":
        return classification_metrics(pred.y_true, pred.y_pred, ogb=task.metric in OGB_CLASSIFICATION_METRICS)
    out = regression_metrics(pred.y_true, pred.y_pred)
    if task.level != "graph" and len(pred.y_true):
        out["pearson_per_graph"] = per_graph_pearson(pred)
    return out


def standard_metric_names(task: TaskInfo) -> list[str]:
    """The metrics `task_metrics` reports for this task, headline (`task.metric`) first."""
    if task.kind == "classification":
        names = ["rocauc", "ap"]
    else:
        names = ["mae", "rmse", "r2", "spearman", "kendall"]
        if task.level != "graph":
            names.insert(0, "pearson_per_graph")
    return [task.metric] + [n for n in names if n != task.metric]


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


def pretext_class_metrics(
    logits: np.ndarray, targets: np.ndarray, class_names: list[str] | None = None
) -> dict[str, float]:
    """How well a class-labelled pretext head predicts held-out items, class by class.

    Over the classes present in `targets` (rows whose target is outside ``[0, C)`` are ignored):
    ``pretext_acc`` (overall accuracy), ``pretext_acc_<class>`` (per-class accuracy, i.e. recall),
    ``pretext_balanced_acc`` (their mean) and ``pretext_macro_f1`` (the mean F1 over the present
    classes; a class never predicted has precision 0). Classes are named by `class_names` where
    given, else by index. This is the view of Wang et al. 2023 (arXiv 2308.08934): overall
    accuracy of masked-atom prediction hides that rare elements are never predicted.
    """
    logits = np.asarray(logits, float)
    targets = np.asarray(targets).astype(np.int64).reshape(-1)
    if logits.ndim != 2 or len(logits) != len(targets):
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} do not match (need (M, C) and (M,))")
    n_classes = logits.shape[1]
    valid = (targets >= 0) & (targets < n_classes)
    logits, targets = logits[valid], targets[valid]
    if len(targets) == 0:
        return {}
    predicted = logits.argmax(axis=1)
    out = {"pretext_acc": float(np.mean(predicted == targets)), "pretext_items": float(len(targets))}
    recalls, f1s = [], []
    for c in np.unique(targets):
        true_c, pred_c = targets == c, predicted == c
        hits = float(np.sum(true_c & pred_c))
        recall = hits / float(true_c.sum())
        precision = hits / float(pred_c.sum()) if pred_c.any() else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
        recalls.append(recall)
        name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
        out[f"pretext_acc_{metric_key(name)}"] = recall
    out["pretext_balanced_acc"] = float(np.mean(recalls))
    out["pretext_macro_f1"] = float(np.mean(f1s))
    return out
