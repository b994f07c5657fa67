"""Every metric against a direct computation with scipy / scikit-learn / OGB, and every metric's
vectorised bootstrap (`Metric.resampled`) against recomputing it on explicit resamples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from benchbase.compute.metrics import (
    BUILTIN_METRICS,
    binned_errors,
    distance_bins,
    get_metric,
    pretext_class_metrics,
    pretext_labels,
    standard_metric_names,
    subset,
    task_metrics,
    weighted_ranks,
)
from benchbase.contract.api import PluginError, Predictions, TaskInfo
from benchbase.reporting.stats import draw_units, unit_weights


@pytest.fixture
def rows():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    p = y + rng.normal(scale=0.5, size=200)
    return y, p


def regression(y, p):
    return task_metrics(TaskInfo("t"), Predictions(y, p, np.arange(len(y))))


def test_regression_metrics_against_scipy_and_sklearn(rows):
    y, p = rows
    out = regression(y, p)
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
    assert regression(y_nan, p) == pytest.approx(regression(y[keep], p[keep]))
    assert regression(np.array([np.nan]), np.array([1.0])) == {}
    const = regression(np.ones(5), np.arange(5.0))
    assert "r2" not in const and "spearman" not in const and const["mae"] == pytest.approx(1.4)


def test_classification_metrics_agree_with_sklearn_and_ogbs_evaluator():
    from ogb.graphproppred import Evaluator

    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(float)
    score = np.round(y + rng.normal(size=300), 1)  # rounded: ties in the scores
    y[::11] = np.nan
    keep = np.isfinite(y)
    task = TaskInfo("c", kind="classification", metric="rocauc", higher_is_better=True)
    out = task_metrics(task, Predictions(y, score, np.arange(300)))
    assert out["rocauc"] == pytest.approx(skm.roc_auc_score(y[keep], score[keep]))
    assert out["ap"] == pytest.approx(skm.average_precision_score(y[keep], score[keep]))
    reference = Evaluator("ogbg-molhiv").eval({"y_true": y[keep][:, None], "y_pred": score[keep][:, None]})
    assert out["rocauc"] == pytest.approx(reference["rocauc"])
    assert task_metrics(task, Predictions(np.zeros(5), np.arange(5.0), np.arange(5))) == {}


def test_standard_metric_names_put_the_headline_first():
    assert standard_metric_names(TaskInfo("g", metric="rmse"))[:3] == ["rmse", "mae", "r2"]
    assert standard_metric_names(TaskInfo("c", kind="classification", metric="ap")) == ["ap", "rocauc"]


def _expanded(pred: Predictions, drawn_units: np.ndarray) -> Predictions:
    """The rows of the drawn graphs, each copy of a graph drawn twice a graph of its own (what
    `resampled` must equal), built the slow way."""
    units = np.unique(pred.graph)
    parts = [np.flatnonzero(pred.graph == units[u]) for u in drawn_units]
    rows = np.concatenate(parts)
    graph = np.concatenate([np.full(len(part), copy) for copy, part in enumerate(parts)])
    return Predictions(pred.y_true[rows], pred.y_pred[rows], graph)


@pytest.mark.parametrize("cls", BUILTIN_METRICS, ids=lambda c: c.name)
@pytest.mark.parametrize("rows_per_graph", [1, 3])
def test_resampled_equals_recomputing_on_each_resample(cls, rows_per_graph):
    rng = np.random.default_rng(5)
    n = 60 * rows_per_graph
    graph = np.repeat(np.arange(10, 70), rows_per_graph)
    if "labels" in cls.kinds:
        y = rng.integers(0, 4, n).astype(float)
        p = np.where(rng.random(n) < 0.6, y, rng.integers(0, 4, n)).astype(float)
    elif "classification" in cls.kinds:
        y = (rng.random(n) < 0.4).astype(float)
        p = np.round(y + rng.normal(size=n), 1)
    else:
        y = np.round(rng.normal(size=n), 1)
        p = y + rng.normal(scale=0.7, size=n)
    pred = Predictions(y, p, graph)
    metric = cls()
    drawn = draw_units(60, rng, replicates=20)
    weights = unit_weights(np.unique(graph), drawn, np.unique(graph))
    fast = metric.resampled(pred, weights)
    slow = np.array([metric(_expanded(pred, drawn[r])) for r in range(20)])
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_unit_weights_drop_units_a_run_lacks():
    units = np.array([3, 5, 9])
    drawn = np.array([[0, 1, 2], [2, 2, 0]])
    np.testing.assert_array_equal(unit_weights(units, drawn, units), [[1, 1, 1], [1, 0, 2]])
    np.testing.assert_array_equal(unit_weights(units, drawn, np.array([5, 9])), [[1, 1], [0, 2]])


def test_weighted_ranks_equal_rankdata_of_the_expanded_sample():
    values = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    weights = np.array([[1, 2, 0, 1, 1], [0, 1, 1, 3, 0]], dtype=float)
    ranks = weighted_ranks(values, weights)
    for r in range(2):
        expanded = np.repeat(values, weights[r].astype(int))
        reference = dict(zip(expanded, stats.rankdata(expanded), strict=True))
        for g in np.flatnonzero(weights[r]):
            assert ranks[r, g] == pytest.approx(reference[values[g]])


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
    graph = np.arange(400) // 3
    out = pretext_class_metrics(pretext_labels(logits, targets, graph), names)
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
    labels = pretext_labels(np.vstack([logits, logits[:1]]), np.append(targets, -100), np.append(graph, 0))
    more = pretext_class_metrics(labels, None)
    assert more["pretext_acc_0"] == out["pretext_acc_C"] and more["pretext_items"] == 400
    for c in present:  # counts beside accuracies
        assert out[f"pretext_n_{names[c]}"] == (targets == c).sum()
    assert out["pretext_excluded_classes"] == 0 and out["pretext_rarest_n"] == (targets == 4).sum()
    with pytest.raises(ValueError, match="do not match"):
        pretext_labels(logits[:3], targets, graph)


@pytest.mark.parametrize("name", ["balanced_acc", "macro_f1"])
def test_min_items_leaves_too_rare_classes_out_of_the_mean(name):
    """min_items: the mean over the classes with at least that many true items, as scikit-learn's
    labels= computes it (the rare class's items still count as false positives of others); on each
    resample the same rule (a resample may push a class over or under the floor)."""
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2, 3], [120, 45, 30, 6]).astype(float)
    p = np.where(rng.random(len(y)) < 0.6, y, rng.integers(0, 4, len(y))).astype(float)
    graph = np.arange(len(y)) // 3
    pred = Predictions(y, p, graph)
    sk = {
        "balanced_acc": lambda labels: skm.recall_score(y, p, labels=labels, average="macro"),
        "macro_f1": lambda labels: skm.f1_score(y, p, labels=labels, average="macro"),
    }[name]
    assert get_metric(name)(pred) == pytest.approx(sk([0, 1, 2, 3]))  # default: every class present
    assert get_metric(name, min_items=30)(pred) == pytest.approx(sk([0, 1, 2]))
    assert get_metric(name, min_items=46)(pred) == pytest.approx(sk([0]))
    assert np.isnan(get_metric(name, min_items=121)(pred))
    metric = get_metric(name, min_items=32)  # class 2 (30 items) crosses it in some resamples
    units = np.unique(graph)
    drawn = draw_units(len(units), rng, replicates=30)
    fast = metric.resampled(pred, unit_weights(units, drawn, units))
    slow = np.array([metric(_expanded(pred, drawn[r])) for r in range(30)])
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    with pytest.raises(PluginError, match="min_items"):
        get_metric(name, min_items=0)


def test_rarest_class_metrics():
    y = np.repeat([0, 1, 2], [50, 7, 20]).astype(float)
    p = y.copy()
    p[50:53] = 0  # 3 of the 7 items of class 1 missed
    pred = Predictions(y, p, np.arange(len(y)))
    assert get_metric("rarest_n")(pred) == 7
    assert get_metric("rarest_acc")(pred) == pytest.approx(4 / 7)
    assert get_metric("rarest_acc")(Predictions(y[:50], p[:50], np.arange(50))) == 1.0


def test_metrics_are_registered_plugins():
    assert get_metric("mae").name == "mae"
    assert get_metric("pearson_per_graph").higher_is_better  # the glass plugin's
