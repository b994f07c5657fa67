"""Property tests of the standard protocols on small synthetic datasets (the point is the rule of
each split, not chemistry), plus their reports and the split identity/serialisation helpers."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchbase.compute import protocols as P
from benchbase.compute.metrics import pretext_labels
from benchbase.compute.run import with_derived_slices
from benchbase.compute.splits import (
    check_split,
    protocol_table,
    split_from_native,
    split_hash,
    split_lists,
    split_to_native,
)
from benchbase.contract.api import Dataset, GraphArrays, PluginError, Predictions, TaskInfo

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Table(Dataset):
    """Graphs given only by per-graph arrays: labels, sizes, groups and node-class counts."""

    name = "synthetic/table"
    tasks = [TaskInfo("y")]

    def __init__(self, labels, sizes=None, groups=None, counts=None, official=None, level="graph"):
        self.y = np.asarray(labels, float)
        n = len(self.y)
        self.sizes = np.asarray(sizes if sizes is not None else np.ones(n), dtype=np.int64)
        self.groups = None if groups is None else np.array([str(g) for g in groups], dtype=object)
        self.counts = None if counts is None else np.asarray(counts, dtype=np.int64)
        self.official = official
        self.tasks = [TaskInfo("y", level=level)]

    def arrays(self) -> GraphArrays:
        n = len(self.y)
        node_ptr = np.concatenate([[0], np.cumsum(self.sizes)])
        return GraphArrays(
            node_ptr=node_ptr,
            edge_ptr=np.zeros(n + 1, dtype=np.int64),
            edge_index=np.zeros((2, 0), dtype=np.int64),
            x=np.zeros((int(node_ptr[-1]), 1), dtype=np.int64),
            targets={"y": self.y},
        )

    def ids(self) -> np.ndarray:
        return np.arange(len(self.y)) * 10 + 7

    def graph_property(self, key):
        if key == "size":
            return self.sizes
        if key == "group":
            return self.groups
        if key == "node_class_counts":
            return self.counts
        if key == "official_split":
            return self.official
        return None

    def node_class_names(self):
        return None if self.counts is None else [f"c{i}" for i in range(self.counts.shape[1])]


@st.composite
def tables(draw, min_graphs=8, max_graphs=80):
    """Labels with ties and NaNs, sizes 1..12, groups with skewed sizes, 4 node classes."""
    n = draw(st.integers(min_graphs, max_graphs))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    labels = np.round(rng.normal(size=n), draw(st.sampled_from([0, 1, 3])))
    nan_share = draw(st.sampled_from([0.0, 0.1]))
    labels[rng.random(n) < nan_share] = np.nan
    sizes = rng.integers(1, 13, n)
    groups = rng.zipf(1.6, n) % 15
    counts = rng.poisson([3.0, 1.0, 0.2, 0.02], size=(n, 4))
    return Table(labels, sizes, groups, counts)


def usable(ds: Table) -> np.ndarray:
    return np.flatnonzero(np.isfinite(ds.y))


def assert_partition(split, expected):
    """Slices disjoint, sorted, and together exactly `expected`."""
    parts = [np.asarray(v) for v in split.values()]
    everything = np.concatenate(parts)
    assert len(everything) == len(np.unique(everything)), "slices overlap"
    np.testing.assert_array_equal(np.sort(everything), np.sort(expected))
    for part in parts:
        assert np.all(np.diff(part) > 0)


def same(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def split_or_skip(protocol, ds, seed):
    """A split; draws where the rule leaves one side empty must raise a PluginError (checked)."""
    try:
        return protocol.split(ds, ds.task(), seed)
    except PluginError:
        return None


# --- iid and imbalance --------------------------------------------------------------------------


@SETTINGS
@given(tables(), st.integers(0, 1000))
def test_iid_partitions_usable_graphs_and_is_seeded(ds, seed):
    protocol = P.IID()
    split = protocol.split(ds, ds.task(), seed)
    assert_partition(split, usable(ds))
    assert same(split, protocol.split(ds, ds.task(), seed))
    n = len(usable(ds))
    assert abs(len(split["test"]) - 0.1 * n) <= 1


def test_iid_seeds_differ_and_official_split_is_used():
    ds = Table(np.arange(200.0))
    a, b = P.IID().split(ds, ds.task(), 0), P.IID().split(ds, ds.task(), 1)
    assert not same(a, b)
    ds.official = np.array(["train"] * 150 + ["valid"] * 20 + ["test"] * 30)
    split = P.IID().split(ds, ds.task(), 5)
    np.testing.assert_array_equal(split["test"], np.arange(170, 200))
    assert not same(split, P.IID(use_official=False).split(ds, ds.task(), 5))


@SETTINGS
@given(tables(), st.integers(0, 1000))
def test_imbalance_is_a_seeded_random_split(ds, seed):
    protocol = P.Imbalance()
    split = protocol.split(ds, ds.task(), seed)
    assert_partition(split, usable(ds))
    assert same(split, protocol.split(ds, ds.task(), seed))
    other = protocol.split(ds, ds.task(), seed + 1)
    if len(usable(ds)) >= 20:
        assert not same(split, other)
    # Unset, rare_test_share leaves the plain random split of before.
    f = (0.8, 0.1, 0.1)
    expected = dict(zip(("train", "valid", "test"), P.random_partition(usable(ds), f, seed), strict=True))
    assert same(split, expected)


@SETTINGS
@given(tables(min_graphs=20, max_graphs=200), st.integers(0, 1000), st.sampled_from([0.1, 0.3, 0.5]))
def test_imbalance_stratifies_by_rare_class(ds, seed, share):
    """rare_test_share: graphs holding a rare class go to test at that share, the others at
    test_fraction; a partition, seeded."""
    protocol = P.Imbalance(rare_test_share=share)
    split = protocol.split(ds, ds.task(), seed)
    assert_partition(split, usable(ds))
    assert same(split, protocol.split(ds, ds.task(), seed))
    _, has_rare = protocol._has_rare(ds, split)
    with_rare = usable(ds)[has_rare[usable(ds)]]
    without = usable(ds)[~has_rare[usable(ds)]]

    def sizes(n, f_test):  # (train, valid, test) as random_partition cuts them
        bounds = np.round(np.cumsum([1 - 0.1 - f_test, 0.1]) * n).astype(int)
        return bounds[0], bounds[1] - bounds[0], n - bounds[1]

    for stratum, f_test in ((with_rare, share), (without, 0.1)):
        got = tuple(int(np.isin(split[name], stratum).sum()) for name in ("train", "valid", "test"))
        assert got == sizes(len(stratum), f_test)


def test_imbalance_enriched_test_fold_holds_the_rare_class():
    counts = np.zeros((400, 2), dtype=np.int64)
    counts[:, 0] = 5
    counts[::40, 1] = 1  # 10 graphs with the rare class
    ds = Table(np.arange(400.0), counts=counts)
    plain = P.Imbalance().split(ds, ds.task(), 0)
    enriched = P.Imbalance(rare_test_share=0.5).split(ds, ds.task(), 0)
    assert counts[enriched["test"], 1].sum() == 5
    assert counts[enriched["valid"], 1].sum() == 1 and counts[enriched["train"], 1].sum() == 4
    assert abs(len(enriched["test"]) - len(plain["test"])) <= 5
    with pytest.raises(PluginError, match="leaves no training"):
        P.Imbalance(rare_test_share=0.9, valid_fraction=0.1)


# --- extrapolation by threshold -------------------------------------------------------------------


@SETTINGS
@given(tables(), st.integers(0, 1000), st.sampled_from(["upper", "lower"]), st.floats(0.5, 0.95))
def test_threshold_rule(ds, seed, side, quantile):
    protocol = P.ExtrapolationThreshold(side=side, quantile=quantile)
    split = split_or_skip(protocol, ds, seed)
    labels = ds.y[usable(ds)]
    cut = protocol.threshold_of(labels)
    beyond = (labels > cut) if side == "upper" else (labels < cut)
    if split is None:
        assert not beyond.any() or beyond.all()
        return
    assert set(split) == {"train", "valid", "test", "test_id"}
    assert_partition(split, usable(ds))
    test, rest = ds.y[split["test"]], ds.y[np.concatenate([split["train"], split["valid"], split["test_id"]])]
    if side == "upper":
        assert np.all(test > cut) and np.all(rest <= cut)
    else:
        assert np.all(test < cut) and np.all(rest >= cut)
    assert same(split, protocol.split(ds, ds.task(), seed))


def test_threshold_absolute_and_seeds():
    ds = Table(np.arange(100.0))
    split = P.ExtrapolationThreshold(threshold=89.5).split(ds, ds.task(), 0)
    np.testing.assert_array_equal(split["test"], np.arange(90, 100))
    other = P.ExtrapolationThreshold(threshold=89.5).split(ds, ds.task(), 1)
    np.testing.assert_array_equal(other["test"], split["test"])  # the rule is not random
    assert not np.array_equal(other["train"], split["train"])  # the in-distribution carve is
    with pytest.raises(PluginError, match="test region"):
        P.ExtrapolationThreshold(threshold=1000).split(ds, ds.task(), 0)


def test_threshold_default_split_is_unchanged():
    """The first version's split (seeded partition of the inside, in that order) is kept exactly,
    so that stored runs and their split hashes stay valid."""
    rng = np.random.default_rng(3)
    ds = Table(rng.normal(size=300))
    split = P.ExtrapolationThreshold().split(ds, ds.task(), 4)
    labels = ds.y
    cut = np.quantile(labels, 0.8)
    inside = np.flatnonzero(labels <= cut)
    order = np.random.default_rng(4).permutation(inside)
    bounds = np.round(np.cumsum([0.8, 0.1]) * len(order)).astype(int)
    train, valid, test_id = (np.sort(p) for p in np.split(order, bounds))
    np.testing.assert_array_equal(split["train"], train)
    np.testing.assert_array_equal(split["valid"], valid)
    np.testing.assert_array_equal(split["test_id"], test_id)
    np.testing.assert_array_equal(split["test"], np.flatnonzero(labels > cut))


# --- extrapolation to both tails ------------------------------------------------------------------


@SETTINGS
@given(tables(min_graphs=12), st.integers(0, 1000), st.sampled_from([0.1, 0.2]))
def test_tails_take_the_lowest_density_labels(ds, seed, fraction):
    protocol = P.ExtrapolationTails(test_fraction=fraction)
    split = split_or_skip(protocol, ds, seed)
    labels = ds.y[usable(ds)]
    if split is None:
        assert len(np.unique(labels)) < 2 or round(fraction * len(labels)) == 0
        return
    assert_partition(split, usable(ds))
    assert len(split["test"]) == round(fraction * len(labels))
    density = protocol.density(labels)
    is_test = np.isin(usable(ds), split["test"])
    assert density[is_test].max() <= density[~is_test].min()
    assert same(split, protocol.split(ds, ds.task(), seed))


def test_tails_are_both_tails_of_a_unimodal_distribution_and_match_scipy():
    from scipy.stats import gaussian_kde

    labels = np.random.default_rng(0).normal(size=400)
    ds = Table(labels)
    protocol = P.ExtrapolationTails()
    split = protocol.split(ds, ds.task(), 0)
    test = labels[split["test"]]
    assert (test < -1).sum() >= 10 and (test > 1).sum() >= 10
    assert np.abs(test).min() >= np.quantile(np.abs(labels), 0.8)
    dens = gaussian_kde(labels)(labels)
    np.testing.assert_allclose(protocol.density(labels), dens / dens.max(), atol=1e-8)


def test_tails_large_sample_uses_an_accurate_grid():
    from scipy.stats import gaussian_kde

    labels = np.random.default_rng(1).gamma(2.0, size=P.ExtrapolationTails.EXACT_BELOW + 1000)
    exact = gaussian_kde(labels)(labels)
    approx = P.ExtrapolationTails().density(labels)
    np.testing.assert_allclose(approx, exact / exact.max(), atol=1e-4)


# --- size -----------------------------------------------------------------------------------------


@SETTINGS
@given(tables(), st.integers(0, 1000), st.one_of(st.none(), st.integers(1, 12)))
def test_size_rule(ds, seed, k):
    protocol = P.Size(max_size=k)
    split = split_or_skip(protocol, ds, seed)
    sizes = ds.sizes[usable(ds)]
    if split is None:
        assert k is not None and (sizes.max() <= k or sizes.min() > k) or len(np.unique(sizes)) < 2
        return
    assert_partition(split, usable(ds))
    k_used = protocol.max_size_of(sizes)
    if k is not None:
        assert k_used == k
    assert np.all(ds.sizes[split["test"]] > k_used)
    assert np.all(ds.sizes[np.concatenate([split["train"], split["valid"], split["test_id"]])] <= k_used)
    assert same(split, protocol.split(ds, ds.task(), seed))


def test_size_default_k_is_closest_to_80_percent():
    sizes = np.repeat([3, 5, 7, 9], [10, 60, 15, 15])  # shares at or below: 0.10, 0.70, 0.85, 1.0
    ds = Table(np.zeros(100), sizes=sizes)
    assert P.Size().max_size_of(sizes) == 7
    assert P.Size(quantile=0.5).max_size_of(sizes) == 5
    split = P.Size().split(ds, ds.task(), 0)
    assert len(split["test"]) == 15


# --- scaffold -------------------------------------------------------------------------------------


@SETTINGS
@given(tables(), st.integers(0, 1000))
def test_scaffold_keeps_groups_whole_and_follows_ogb_order(ds, seed):
    protocol = P.Scaffold()
    split = protocol.split(ds, ds.task(), seed)
    use = usable(ds)
    assert_partition({k: v for k, v in split.items() if len(v)}, use)
    group_sets = {name: set(ds.groups[idx]) for name, idx in split.items()}
    assert not group_sets["train"] & group_sets["test"]
    assert not group_sets["train"] & group_sets["valid"]
    assert not group_sets["valid"] & group_sets["test"]
    assert len(split["train"]) <= 0.8 * len(use) + 1e-9
    reference = _ogb_scaffold_reference(ds.groups, use)
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(split[name], reference[name])
    # The group OGB's order puts first goes to train whenever it fits in 80%: the largest, and of
    # equally large ones the one whose first graph comes last.
    first_graph: dict[str, int] = {}
    for i in use:
        first_graph.setdefault(ds.groups[i], int(i))
    sizes = Counter(ds.groups[use].tolist())
    leader = max(sizes, key=lambda g: (sizes[g], first_graph[g]))
    if sizes[leader] <= 0.8 * len(use):
        assert leader in group_sets["train"]
    assert same(split, protocol.split(ds, ds.task(), seed + 1))  # no randomness


def _ogb_scaffold_reference(groups, use):
    """OGB's / DeepChem's scaffold_split written the way they write it (dict of lists, sorted by
    (size, first member) descending, cut-offs on the running counts), as an independent oracle."""
    members: dict[str, list[int]] = {}
    for i in use:
        members.setdefault(groups[i], []).append(int(i))
    ordered = sorted(members.values(), key=lambda m: (len(m), m[0]), reverse=True)
    train_cut, valid_cut = 0.8 * len(use), 0.9 * len(use)
    train, valid, test = [], [], []
    for m in ordered:
        if len(train) + len(m) > train_cut:
            if len(train) + len(valid) + len(m) > valid_cut:
                test += m
            else:
                valid += m
        else:
            train += m
    return {"train": sorted(train), "valid": sorted(valid), "test": sorted(test)}


def test_scaffold_matches_a_hand_computed_split():
    # 20 graphs, cut-offs 16 (train) and 18 (train + valid). Groups: a = 0..11, b = 12..14,
    # c = 15..17, d = 18, e = 19. Order: a (12), then c before b (same size, later first graph),
    # then e before d. a -> train (12); c -> train (15); b: 18 > 16, 15 + 3 <= 18 -> valid;
    # e: 16 <= 16 -> train; d: 17 > 16 and 16 + 3 + 1 > 18 -> test.
    groups = list("a" * 12 + "bbb" + "ccc" + "de")
    ds = Table(np.arange(20.0), groups=groups)
    split = P.Scaffold().split(ds, ds.task(), 0)
    np.testing.assert_array_equal(split["train"], [*range(12), 15, 16, 17, 19])
    np.testing.assert_array_equal(split["valid"], [12, 13, 14])
    np.testing.assert_array_equal(split["test"], [18])


# --- reports --------------------------------------------------------------------------------------


def _perfect_but(ds, split, noise):
    """Predictions per slice: labels plus a per-graph error."""
    return {
        name: Predictions(ds.y[idx], ds.y[idx] + noise[idx], np.asarray(idx))
        for name, idx in split.items()
        if name != "train"
    }


def test_threshold_report_ratio_and_distance_bins():
    labels = np.arange(200.0)
    ds = Table(labels)
    protocol = P.ExtrapolationThreshold()
    split = protocol.split(ds, ds.task(), 0)
    noise = np.where(labels > 159, (labels - 159.0) / 10, 0.5)  # error grows with distance beyond
    out = protocol.report(ds.task(), _perfect_but(ds, split, noise), ds, split)
    test_err = noise[split["test"]]
    assert out["test_mae"] == pytest.approx(test_err.mean())
    assert out["mae_ratio"] == pytest.approx(test_err.mean() / 0.5)
    cut = np.quantile(labels, 0.8)
    dist = labels[split["test"]] - cut
    edges = np.quantile(dist, [0.25, 0.5, 0.75])
    for k, rows in enumerate([dist <= edges[0], (dist > edges[0]) & (dist <= edges[1])]):
        assert out[f"test_mae_bin{k + 1}"] == pytest.approx(test_err[rows].mean())
    assert out["test_mae_bin1"] < out["test_mae_bin2"] < out["test_mae_bin3"] < out["test_mae_bin4"]
    assert out["test_bin4_distance"] == pytest.approx(dist.max())
    names = [c.name for c in protocol.leaderboard_columns(ds.task())]
    assert names == ["test_mae", "test_spearman", "mae_ratio", "test_id_mae"]


def test_imbalance_report_counts_and_rare_errors():
    n = 100
    counts = np.zeros((n, 3), dtype=np.int64)
    counts[:, 0] = 4
    counts[::10, 1] = 2  # class 1 in 10% of graphs: common at rare_share 0.05
    counts[::25, 2] = 1  # class 2 in 4%: rare
    labels = np.arange(n, dtype=float)
    ds = Table(labels, counts=counts)
    protocol = P.Imbalance()
    split = protocol.split(ds, ds.task(), 0)
    noise = np.where(counts[:, 2] > 0, 3.0, 1.0)
    pool = protocol.pretrain_pool(split, "train")
    predictions = with_derived_slices(protocol, ds, split, _perfect_but(ds, split, noise))
    out = protocol.report(ds.task(), predictions, ds, split, pool)
    assert out["pool_nodes_c0"] == 4 * len(pool)
    assert out["pool_graphs_c1"] == (counts[pool, 1] > 0).sum()
    assert out["pool_nodes_c2"] == counts[pool, 2].sum()
    assert out["rare_classes"] == 1
    rare_test = (counts[split["test"], 2] > 0).sum()
    assert out["rare_test_graphs"] == rare_test
    if rare_test:
        assert out["rare_mae"] == pytest.approx(3.0)
    assert out["common_mae"] == pytest.approx(1.0)
    assert [c.name for c in protocol.leaderboard_columns(ds.task())][:3] == ["test_mae", "rare_mae", "common_mae"]
    assert P.Imbalance.evaluates_pretext
    assert "pool_nodes_c0" not in protocol.report(ds.task(), predictions, ds, split)  # no pretraining, no pool


def test_imbalance_report_pretext():
    logits = np.eye(3)[[0, 0, 1, 2, 2, 0]]
    targets = np.array([0, 0, 1, 1, 2, 2])
    labels = pretext_labels(logits, targets, np.arange(6))
    out = P.Imbalance(min_class_items=1).report_pretext(labels, ["C", "N", "O"])
    assert out["pretext_acc_C"] == 1.0 and out["pretext_acc_N"] == 0.5 and out["pretext_acc_O"] == 0.5
    assert out["pretext_n_C"] == out["pretext_n_N"] == out["pretext_n_O"] == 2
    assert out["pretext_balanced_acc"] == pytest.approx(2 / 3)
    assert out["pretext_excluded_classes"] == 0
    # At the default floor (30 items) every class here is too rare: named, no means reported.
    out = P.Imbalance().report_pretext(labels, ["C", "N", "O"])
    assert out["pretext_excluded_classes"] == 3 and out["pretext_excluded_N"] == 1.0
    assert "pretext_balanced_acc" not in out and "pretext_macro_f1" not in out
    assert out["pretext_acc"] == pytest.approx(4 / 6) and out["pretext_n_O"] == 2


def test_imbalance_too_rare_class_is_named_and_left_out_of_the_means():
    """A class under min_class_items keeps its accuracy and count, is named, and does not enter
    balanced accuracy or macro-F1 (its items still count where predicted as another class, as
    scikit-learn's labels= does); the leaderboard's columns compute the same numbers."""
    skm = pytest.importorskip("sklearn.metrics")
    from benchbase.compute.metrics import get_metric

    rng = np.random.default_rng(0)
    targets = np.repeat([0, 1, 2], [200, 40, 12])  # "F" has 12 items
    predicted = np.where(rng.random(len(targets)) < 0.7, targets, rng.integers(0, 3, len(targets)))
    logits = np.eye(3)[predicted]
    labels = pretext_labels(logits, targets, np.arange(len(targets)) // 4)
    protocol = P.Imbalance()  # min_class_items = 30
    out = protocol.report_pretext(labels, ["C", "N", "F"])
    assert out["pretext_n_C"] == 200 and out["pretext_n_N"] == 40 and out["pretext_n_F"] == 12
    assert out["pretext_excluded_F"] == 1.0 and out["pretext_excluded_classes"] == 1
    assert "pretext_excluded_N" not in out and "pretext_excluded_C" not in out
    assert out["pretext_acc_F"] == pytest.approx(np.mean(predicted[targets == 2] == 2))
    recall = skm.recall_score(targets, predicted, labels=[0, 1], average=None)
    assert out["pretext_balanced_acc"] == pytest.approx(recall.mean())
    assert out["pretext_macro_f1"] == pytest.approx(skm.f1_score(targets, predicted, labels=[0, 1], average="macro"))
    assert out["pretext_acc"] == pytest.approx(skm.accuracy_score(targets, predicted))  # every item
    assert out["pretext_rarest_n"] == 12 and out["pretext_rarest_acc"] == out["pretext_acc_F"]
    columns = {c.name: c for c in protocol.leaderboard_columns(TaskInfo("y"))}
    assert {"pretext_macro_f1", "pretext_balanced_acc", "pretext_acc", "pretext_rarest_acc", "pretext_rarest_n"} <= set(
        columns
    )
    for name, column in columns.items():
        if column.slice == "pretext":
            assert get_metric(column.metric, **dict(column.params))(labels) == pytest.approx(out[name])
    # With a floor of 10, F is scored again.
    loose = P.Imbalance(min_class_items=10).report_pretext(labels, ["C", "N", "F"])
    assert loose["pretext_excluded_classes"] == 0
    assert loose["pretext_balanced_acc"] == pytest.approx(skm.balanced_accuracy_score(targets, predicted))


def test_pretrain_pool_by_mode():
    ds = Table(np.arange(100.0))
    protocol = P.ExtrapolationThreshold()
    split = protocol.split(ds, ds.task(), 0)
    pool = protocol.pretrain_pool(split, "train")
    assert not np.isin(split["test"], pool).any() and not np.isin(split["test_id"], pool).any()
    assert len(protocol.pretrain_pool(split, "all")) == 100


@pytest.mark.parametrize(
    "cls, params, message",
    [
        (P.IID, {"test_fraction": 0.95}, "leaves no training"),
        (P.ExtrapolationThreshold, {"side": "middle"}, "side must be one of"),
        (P.ExtrapolationThreshold, {"quantile": 1.5}, "quantile"),
        (P.ExtrapolationTails, {"bandwidth": -1}, "bandwidth"),
        (P.Size, {"max_size": "big"}, "max_size"),
        (P.Imbalance, {"pretrain_pool": "train"}, "unknown parameter"),
        (P.Scaffold, {"shuffle": True}, "unknown parameter"),
    ],
)
def test_bad_parameters_are_plugin_errors(cls, params, message):
    with pytest.raises(PluginError, match=message):
        cls(**params)


def test_incompatible_tasks_and_missing_properties():
    ds = Table(np.arange(10.0), level="node")
    assert "graph-level regression" in P.ExtrapolationTails().incompatibility(ds)
    assert P.Size().incompatibility(ds) is None
    with pytest.raises(PluginError, match="'group'"):
        P.Scaffold().split(Table(np.arange(10.0)), Table(np.arange(10.0)).task(), 0)


# --- split identity and serialisation --------------------------------------------------------------


def test_split_hash_is_stable_and_content_based():
    from benchbase.contract.identity import content_hash

    split = {"train": np.array([0, 2, 5], dtype=np.int64), "test": np.array([1, 3], dtype=np.int32)}
    h = split_hash(split)
    assert h == split_hash({"test": [1, 3], "train": [0, 2, 5]})  # dtype and key order do not matter
    assert h == content_hash({k: v.tolist() for k, v in split.items()})  # the run record's old hash
    assert split_hash({"train": [0, 2, 6], "test": [1, 3]}) != h


def test_split_hash_pinned_value():
    """A fixed value guards against accidental changes of the canonical form across versions/machines."""
    assert split_hash({"train": [0, 1], "valid": [2], "test": [3]}) == _expected_pinned_hash()


def _expected_pinned_hash() -> str:
    import hashlib

    return hashlib.sha256(b'{"test":[3],"train":[0,1],"valid":[2]}').hexdigest()[:16]


def test_native_ids_round_trip():
    ds = Table(np.arange(30.0))
    split = P.ExtrapolationThreshold().split(ds, ds.task(), 1)
    native = split_to_native(split, ds.ids())
    assert json.loads(json.dumps(native)) == native
    assert native["test"] == [int(i) * 10 + 7 for i in split["test"]]
    back = split_from_native(native, ds.ids())
    assert same(back, split)
    with pytest.raises(PluginError, match="lacks"):
        split_from_native({"train": [123456]}, ds.ids())


def test_check_split():
    check_split({"train": [0, 1], "valid": [2], "test": [3]}, 4)
    with pytest.raises(PluginError, match="both"):
        check_split({"train": [0, 1], "valid": [1], "test": [3]}, 4)
    with pytest.raises(PluginError, match="outside"):
        check_split({"train": [0, 9], "valid": [1], "test": [3]}, 4)
    with pytest.raises(PluginError, match="empty"):
        check_split({"train": [0], "valid": [], "test": [3]}, 4)
    assert split_lists({"a": np.array([], dtype=float)}) == {"a": []}


def test_protocol_table_lists_every_builtin_protocol():
    from benchbase.contract.registry import load_registry

    rows = {row["name"]: row for row in protocol_table(load_registry())}
    for name in ("iid", "extrapolation-threshold", "extrapolation-tails", "size", "scaffold", "imbalance"):
        assert name in rows
    assert rows["extrapolation-tails"]["params"]["test_fraction"] == 0.1
    assert rows["size"]["requires"] == ["size"]
    json.dumps(list(rows.values()))


# --- real data: a QM9 subset ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def qm9_small(tmp_path_factory):
    """400 QM9 molecules (qm9pack, offline) in a private cache; parsed once for the module."""
    pytest.importorskip("benchbase_molecules")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENCHBASE_CACHE", str(tmp_path_factory.mktemp("cache")))
    from benchbase_molecules.qm9 import QM9

    try:
        data = QM9(tasks=["homo_lumo_gap"], subset=400)
        data.arrays()
    except PluginError as exc:  # pragma: no cover - qm9pack missing
        mp.undo()
        pytest.skip(f"QM9 not available: {exc}")
    yield data
    mp.undo()


@pytest.mark.slow
def test_every_core_protocol_on_qm9(qm9_small):
    data = qm9_small
    n = data.arrays().num_graphs
    task = data.task()
    for cls in P.ALL:
        protocol = cls()
        assert protocol.incompatibility(data) is None
        assert cls.requires <= data.provides, cls.name
        split = protocol.split(data, task, 0)
        check_split(split, n)
        assert_partition(split, np.arange(n))  # every QM9 molecule has a gap
        assert same(split, cls().split(data, task, 0))
        native = split_to_native(split, data.ids())
        assert set(native["test"]) <= set(data.ids().tolist())
    scaffolds = data.graph_property("group")
    split = P.Scaffold().split(data, task, 0)
    assert not set(scaffolds[split["train"]]) & set(scaffolds[split["test"]])
    # Imbalance on real element counts: F (and anything rarer than 5% of molecules) is rare.
    protocol = P.Imbalance()
    split = protocol.split(data, task, 0)
    gap = data.labels("homo_lumo_gap")
    preds = {k: Predictions(gap[v], gap[v] + 0.1, v) for k, v in split.items() if k != "train"}
    out = protocol.report(task, with_derived_slices(protocol, data, split, preds), data, split, np.arange(n))
    assert out["pool_nodes_C"] == data.graph_property("node_class_counts")[:, 0].sum() > 0
    names = data.node_class_names()
    counts = data.graph_property("node_class_counts")
    share = (counts > 0).mean(axis=0)
    assert out["rare_classes"] == ((share > 0) & (share < 0.05)).sum()
    assert out["common_mae"] == pytest.approx(0.1)
    assert names[:4] == ["C", "N", "O", "F"]
