"""Metrics on (label, prediction) rows. Generic: they know tasks, not domains."""

from __future__ import annotations

import numpy as np
from scipy import stats

from benchbase.api import Predictions, TaskInfo


def _finite(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(y_true)
    return y_true[keep], y_pred[keep]


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
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


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """Binary ROC-AUC and average precision (scores are logits or probabilities)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, y_score = _finite(np.asarray(y_true, float), np.asarray(y_score, float))
    if len(np.unique(y_true)) < 2:
        return {}
    return {
        "rocauc": float(roc_auc_score(y_true, y_score)),
        "ap": float(average_precision_score(y_true, y_score)),
    }


def task_metrics(task: TaskInfo, pred: Predictions) -> dict[str, float]:
    if task.kind == "classification":
        return classification_metrics(pred.y_true, pred.y_pred)
    out = regression_metrics(pred.y_true, pred.y_pred)
    if task.level != "graph" and len(pred.y_true):
        out["pearson_per_graph"] = per_graph_pearson(pred)
    return out
