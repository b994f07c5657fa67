"""Every metric against a direct computation with scipy / scikit-learn / OGB."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from benchbase.api import Predictions, TaskInfo
from benchbase.metrics import (
    binned_errors,
    classification_metrics,
    distance_bins,
    per_graph_pearson,
    pretext_class_metrics,
    regression_metrics,
    standard_metric_names,
    subset,
    task_metrics,
)


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    p = y + rng.normal(scale=0.5, size=200)
    return y, p


def test_regression_metrics_against_scipy_and_sklearn(rows):
    y, p = rows
    out = regression_metrics(y, p)
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert out["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert out["r2"] == pytest.approx(skm.r2_score(y, p))
    assert out["spearman"] == pytest.approx(stats.spearmanr(y, p)[0])
    assert out["kendall"] == pytest.approx(stats.kendalltau(y, p)[0])
    assert out["pearson"] == pytest.approx(stats.pearsonr(y, p)[0])


def test_regression_metrics_ignore_nan_labels_and_degenerate_cases(rows):
    y, p = rows
    y_nan = y.copy()
    y_nan[::7] = np.nan
    keep = np.isfinite(y_nan)
    assert regression_metrics(y_nan, p) == pytest.approx(regression_metrics(y[keep], p[keep]))
    assert regression_metrics(np.array([np.nan]), np.array([1.0])) == {}
    const = regression_metrics(np.ones(5), np.arange(5.0))
    assert np.isnan(const["r2"]) and "spearman" not in const


def test_classification_metrics_sklearn_and_ogb_agree():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(float)
    score = y + rng.normal(size=300)
    y[::11] = np.nan
    keep = np.isfinite(y)
    expected = {
        "rocauc": skm.roc_auc_score(y[keep], score[keep]),
        "ap": skm.average_precision_score(y[keep], score[keep]),
    }
    assert classification_metrics(y, score) == pytest.approx(expected)
    assert classification_metrics(y, score, ogb=True) == pytest.approx(expected)
    assert classification_metrics(np.zeros(5), np.arange(5.0)) == {}


def test_ogb_metric_matches_ogbs_evaluator_for_a_real_dataset_name():
    from ogb.graphproppred import Evaluator

    rng = np.random.default_rng(2)
    y = (rng.random(100) < 0.3).astype(float)
    score = rng.normal(size=100) + y
    reference = Evaluator("ogbg-molhiv").eval({"y_true": y[:, None], "y_pred": score[:, None]})["rocauc"]
    task = TaskInfo("hiv", kind="classification", metric="rocauc", higher_is_better=True)
    assert task_metrics(task, Predictions(y, score, np.arange(100)))["rocauc"] == pytest.approx(reference)


def test_task_metrics_adds_per_graph_pearson_for_node_tasks():
    rng = np.random.default_rng(3)
    graph = np.repeat(np.arange(4), 25)
    y = rng.normal(size=100)
    p = y + rng.normal(size=100)
    pred = Predictions(y, p, graph)
    expected = np.mean([stats.pearsonr(y[graph == g], p[graph == g])[0] for g in range(4)])
    assert per_graph_pearson(pred) == pytest.approx(expected)
    out = task_metrics(TaskInfo("prop", level="node", metric="pearson_per_graph"), pred)
    assert out["pearson_per_graph"] == pytest.approx(expected)
    assert standard_metric_names(TaskInfo("prop", level="node", metric="pearson_per_graph"))[0] == "pearson_per_graph"
    assert standard_metric_names(TaskInfo("g", metric="rmse"))[:3] == ["rmse", "mae", "r2"]


def test_distance_bins_are_quartiles():
    d = np.arange(1.0, 9.0)  # quartile edges 2.75, 4.5, 6.25, 8
    index, upper = distance_bins(d)
    np.testing.assert_array_equal(index, [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_allclose(upper, np.quantile(d, [0.25, 0.5, 0.75, 1.0]))


def test_binned_errors_by_distance():
    graph = np.array([5, 6, 7, 8, 9, 10, 11, 12])
    distance = np.full(20, np.nan)
    distance[graph] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    y = np.zeros(8)
    p = np.array([1, 1, 2, 2, 3, 3, 4, 4.0])
    out = binned_errors(Predictions(y, p, graph), distance)
    assert [out[f"test_mae_bin{k}"] for k in range(1, 5)] == pytest.approx([1, 2, 3, 4])
    assert out["test_bin4_distance"] == pytest.approx(0.8)
    # Node-level rows: several rows per graph, binned by their graph's distance.
    rows = Predictions(np.zeros(4), np.array([1.0, 3.0, 5.0, 7.0]), np.array([5, 5, 12, 12]))
    out = binned_errors(rows, distance, bins=2)
    assert out["test_mae_bin1"] == pytest.approx(2.0) and out["test_mae_bin2"] == pytest.approx(6.0)


def test_subset_selects_rows_by_graph():
    pred = Predictions(np.arange(4.0), np.arange(4.0), np.array([0, 0, 2, 3]))
    part = subset(pred, np.array([True, False, False, True]))
    np.testing.assert_array_equal(part.graph, [0, 0, 3])


def test_pretext_class_metrics_against_sklearn():
    rng = np.random.default_rng(4)
    n_classes = 6
    targets = rng.choice(5, size=400, p=[0.7, 0.15, 0.1, 0.04, 0.01])  # class 5 never occurs
    logits = rng.normal(size=(400, n_classes))
    logits[np.arange(400), targets] += rng.normal(1.0, 1.0, size=400)
    names = ["C", "N", "O", "F", "S", "Cl"]
    out = pretext_class_metrics(logits, targets, names)
    predicted = logits.argmax(1)
    present = np.unique(targets)
    assert out["pretext_acc"] == pytest.approx(skm.accuracy_score(targets, predicted))
    assert out["pretext_balanced_acc"] == pytest.approx(skm.balanced_accuracy_score(targets, predicted))
    f1 = skm.f1_score(targets, predicted, labels=present, average="macro", zero_division=0)
    assert out["pretext_macro_f1"] == pytest.approx(f1)
    recall = skm.recall_score(targets, predicted, labels=present, average=None, zero_division=0)
    for c, r in zip(present, recall, strict=True):
        assert out[f"pretext_acc_{names[c]}"] == pytest.approx(r)
    assert "pretext_acc_Cl" not in out
    # Out-of-range targets (an ignore index) are dropped; unnamed classes are named by index.
    more = pretext_class_metrics(np.vstack([logits, logits[:1]]), np.append(targets, -100), None)
    assert more["pretext_acc_0"] == out["pretext_acc_C"] and more["pretext_items"] == 400
    with pytest.raises(ValueError, match="do not match"):
        pretext_class_metrics(logits[:3], targets, names)
