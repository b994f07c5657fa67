"""Standard splits and the metrics each one reports. Protocols read labels and generic graph
properties (`Dataset.labels`, `Dataset.graph_property`, `Dataset.node_class_names`), never chemistry.

| protocol | test slice | needs |
| --- | --- | --- |
| ``iid`` | random 10% (or the dataset's official split) | labels |
| ``extrapolation-threshold`` | labels beyond a quantile / absolute threshold (Takashige et al. 2023) | labels |
| ``extrapolation-tails`` | the lowest-density 10% of labels under a Gaussian KDE (BOOM, arXiv 2505.01912) | labels |
| ``size`` | graphs with more than k nodes | ``size`` |
| ``scaffold`` | the smallest groups, OGB's scaffold rule | ``group`` |
| ``imbalance`` | random 10% (or stratified); rare-class errors, pretext scores and counts | ``node_class_counts`` |

Every split is a pure function of (dataset, parameters, seed): random parts use
``numpy.random.default_rng(seed)`` (PCG64, identical on every platform), and every slice is sorted.
The held-out-region protocols (threshold, tails, size) carve train / valid / ``test_id`` at random
from the in-distribution graphs; ``test_id`` measures the in-distribution error that the
extrapolation error is compared with (``mae_ratio``). Whether self-supervised pretraining may see
the unlabeled graphs outside train + valid is the training setting ``pretrain_pool``
(`Protocol.pretrain_pool`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from benchbase.compute.metrics import binned_errors, metric_key, pretext_class_metrics, standard_metric_names
from benchbase.contract.api import Column, Dataset, PluginError, Predictions, Protocol, Split, TaskInfo
from benchbase.contract.params import Param


def FRACTION(default: float, help: str) -> Param:  # noqa: N802 - reads as a type in declarations
    """A share of graphs in [0, 1)."""
    return Param(default, "number", help, min=0.0, max=1.0, max_open=True)


#: Equal-count bins of the distance beyond the threshold (quartiles): ``test_mae_bin1`` is nearest.
DISTANCE_BINS = 4


def usable_graphs(dataset: Dataset, task: TaskInfo) -> np.ndarray:
    """Graph positions with a label for `task` (graph-level); every graph for node/edge tasks."""
    if task.level != "graph":
        return np.arange(dataset.arrays().num_graphs)
    return np.flatnonzero(np.isfinite(dataset.labels(task.name)))


def random_partition(indices: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Shuffle `indices` with `seed` and cut into consecutive parts of the given fractions (the
    last part takes the remainder). Each part is returned sorted."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.asarray(indices))
    bounds = np.round(np.cumsum(fractions)[:-1] * len(order)).astype(int)
    return [np.sort(part) for part in np.split(order, bounds)]


def _property(dataset: Dataset, key: str, protocol: str) -> np.ndarray:
    value = dataset.graph_property(key)
    if value is None:
        raise PluginError(f"protocol {protocol!r} needs the graph property {key!r}, which {dataset.name!r} lacks")
    return np.asarray(value)


class _Checked(Protocol):
    """Validates parameters on construction, so a bad grid entry fails before any training."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.validate()

    def validate(self) -> None:
        """Check parameter values (subclasses extend it)."""

    def _fractions(self, *keys: str) -> None:
        """Fractions (each in [0, 1) by declaration) together below 1, so that training is not empty."""
        values = [float(self.params[key]) for key in keys]
        if sum(values) >= 1:
            raise PluginError(f"protocol {self.name!r}: {' + '.join(keys)} = {sum(values):g} leaves no training graphs")

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        return [Column("test", name) for name in standard_metric_names(task)[:4]]


class IID(_Checked):
    name = "iid"
    description = "Random split (80/10/10), or the dataset's official split when it has one."
    param_spec = {
        "valid_fraction": FRACTION(0.1, "share of usable graphs in valid"),
        "test_fraction": FRACTION(0.1, "share of usable graphs in test"),
        "use_official": Param(True, "bool", "use the dataset's official split when it has one"),
    }

    def validate(self) -> None:
        super().validate()
        self._fractions("valid_fraction", "test_fraction")

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        usable = usable_graphs(dataset, task)
        official = dataset.graph_property("official_split") if self.params["use_official"] else None
        if official is not None:
            parts = {
                name: np.intersect1d(usable, np.flatnonzero(official == name)) for name in ("train", "valid", "test")
            }
            if all(len(p) for p in parts.values()):
                return parts
        f_valid, f_test = self.params["valid_fraction"], self.params["test_fraction"]
        train, valid, test = random_partition(usable, (1 - f_valid - f_test, f_valid, f_test), seed)
        return {"train": train, "valid": valid, "test": test}


# --- held-out regions -------------------------------------------------------------------------


class _HeldOutRegion(_Checked):
    """A test region defined by a rule on each graph (label beyond a threshold, low label density,
    size above k); the rest is split at random into train / valid / test_id.

    Subclasses implement `region`; `report` adds the extrapolation gap (``mae_ratio`` =
    test MAE / test_id MAE, likewise ``rmse_ratio``) and the test MAE in equal-count bins of the
    distance beyond the region's boundary (`DISTANCE_BINS` quartiles: ``test_mae_bin1`` nearest,
    ``test_mae_bin4`` farthest, with each bin's upper distance edge as ``test_bin<k>_distance``, in
    the unit of the label - or of the size for `size`).
    """

    #: What the rule needs of the split task: a graph-level regression task, or any task.
    needs_graph_regression = True

    def validate(self) -> None:
        super().validate()
        self._fractions("valid_fraction", "id_test_fraction")

    def incompatibility(self, dataset: Dataset) -> str | None:
        task = self.task_of(dataset)
        if self.needs_graph_regression and (task.level != "graph" or task.kind != "regression"):
            return f"protocol {self.name!r} needs a graph-level regression task; {task.name!r} is not"
        return None

    def region(self, dataset: Dataset, task: TaskInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(usable graph positions, bool mask over them: in the test region, distance of each usable
        graph beyond the boundary - meaningful inside the test region)."""
        raise NotImplementedError

    def _region(self, dataset: Dataset, task: TaskInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cached = getattr(self, "_region_cache", None)
        if cached is None or cached[0] is not dataset or cached[1] != task.name:
            if self.needs_graph_regression and (task.level != "graph" or task.kind != "regression"):
                raise PluginError(f"protocol {self.name!r} needs a graph-level regression task; {task.name!r} is not")
            self._region_cache = (dataset, task.name, self.region(dataset, task))
        return self._region_cache[2]

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        usable, beyond, _ = self._region(dataset, task)
        inside = usable[~beyond]
        if not beyond.any() or len(inside) == 0:
            raise PluginError(
                f"protocol {self.name!r} with {self.params} puts {int(beyond.sum())} of {len(usable)} usable graphs "
                f"of {dataset.name!r} in the test region; both sides must be non-empty"
            )
        f_valid, f_id = self.params["valid_fraction"], self.params["id_test_fraction"]
        train, valid, test_id = random_partition(inside, (1 - f_valid - f_id, f_valid, f_id), seed)
        return {"train": train, "valid": valid, "test": np.sort(usable[beyond]), "test_id": test_id}

    def report(
        self,
        task: TaskInfo,
        predictions: dict[str, Predictions],
        dataset: Dataset,
        split: Split,
        pretrain_pool: np.ndarray | None = None,
    ) -> dict[str, float]:
        out = super().report(task, predictions, dataset, split, pretrain_pool)
        for metric in ("mae", "rmse"):
            if f"test_{metric}" in out and out.get(f"test_id_{metric}"):
                out[f"{metric}_ratio"] = out[f"test_{metric}"] / out[f"test_id_{metric}"]
        if task.kind == "regression" and "test" in predictions:
            usable, _, distance = self._region(dataset, self.task_of(dataset))
            per_graph = np.full(dataset.arrays().num_graphs, np.nan)
            per_graph[usable] = distance
            out.update(binned_errors(predictions["test"], per_graph, "test", DISTANCE_BINS))
        return out

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        m = task.metric
        if task.kind != "regression":
            return [Column("test", m), Column("test_id", m)] + [
                Column("test", n) for n in standard_metric_names(task)[1:]
            ]
        ratio = [Column("test", m, per="test_id")] if m in ("mae", "rmse") else []
        columns = [Column("test", m), Column("test", "spearman"), *ratio, Column("test_id", m)]
        return list(dict.fromkeys(columns))


class ExtrapolationThreshold(_HeldOutRegion):
    name = "extrapolation-threshold"
    description = (
        "Train and validate at or below a label threshold, test beyond it (Takashige et al. 2023). "
        "A random in-distribution slice (test_id) is held out to measure the extrapolation gap."
    )
    param_spec = {
        "quantile": Param(
            0.8, "number", "label quantile of the boundary", min=0.0, max=1.0, min_open=True, max_open=True
        ),
        "threshold": Param(None, "number", "absolute label threshold (overrides quantile)"),
        "side": Param("upper", "str", "test above (upper) or below (lower) the threshold", choices=("upper", "lower")),
        "valid_fraction": FRACTION(0.1, "share of in-region graphs in valid"),
        "id_test_fraction": FRACTION(0.1, "share of in-region graphs in test_id"),
    }

    def threshold_of(self, labels: np.ndarray) -> float:
        """The absolute `threshold` if given, else the `quantile` of the labels (for ``side =
        "lower"``, the 1 - quantile: the lowest 20% are tested by default)."""
        if self.params["threshold"] is not None:
            return float(self.params["threshold"])
        q = self.params["quantile"] if self.params["side"] == "upper" else 1 - self.params["quantile"]
        return float(np.quantile(labels, q))

    def region(self, dataset: Dataset, task: TaskInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        usable = usable_graphs(dataset, task)
        labels = dataset.labels(task.name)[usable]
        cut = self.threshold_of(labels)
        beyond = labels > cut if self.params["side"] == "upper" else labels < cut
        return usable, beyond, np.abs(labels - cut)


class ExtrapolationTails(_HeldOutRegion):
    name = "extrapolation-tails"
    description = (
        "Test on the labels of lowest density (both tails) under a Gaussian kernel density fitted to all "
        "labels, as BOOM does (arXiv 2505.01912); a random in-distribution test_id slice is kept too."
    )
    param_spec = {
        "test_fraction": Param(
            0.1, "number", "share of lowest-density labels tested", min=0.0, max=1.0, min_open=True, max_open=True
        ),
        "bandwidth": Param("scott", "any", "KDE bandwidth: 'scott', 'silverman' or a factor > 0"),
        "valid_fraction": FRACTION(0.1, "share of in-region graphs in valid"),
        "id_test_fraction": FRACTION(0.1, "share of in-region graphs in test_id"),
    }
    #: Up to this many labels the density is evaluated exactly at each label; above it (exact
    #: evaluation is quadratic in the count) by linear binning on an even grid of `GRID_POINTS`,
    #: convolution with the same Gaussian kernel, and linear interpolation.
    EXACT_BELOW = 5000
    GRID_POINTS = 8192

    def validate(self) -> None:
        super().validate()
        bw = self.params["bandwidth"]
        if bw not in ("scott", "silverman") and not (isinstance(bw, int | float) and bw > 0):
            raise PluginError(f"protocol {self.name!r}: bandwidth must be 'scott', 'silverman' or > 0, got {bw!r}")

    def density(self, labels: np.ndarray) -> np.ndarray:
        """Gaussian KDE of the labels (scipy's `gaussian_kde` with `bandwidth` as its ``bw_method``:
        a number is a factor of the labels' standard deviation), at each label, normalised to a
        maximum of 1 and rounded to 9 decimals so that the ranking does not depend on the last bits
        of floating point arithmetic (ties are broken by position)."""
        labels = np.asarray(labels, float)
        if len(labels) < 2 or np.ptp(labels) == 0:
            raise PluginError(f"protocol {self.name!r} needs at least two distinct labels to fit a density")
        kde = stats.gaussian_kde(labels, bw_method=self.params["bandwidth"])
        if len(labels) <= self.EXACT_BELOW:
            dens = kde(labels)
        else:
            dens = _binned_kde(labels, float(np.sqrt(kde.covariance[0, 0])), self.GRID_POINTS)
        return np.round(dens / dens.max(), 9)

    def region(self, dataset: Dataset, task: TaskInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        usable = usable_graphs(dataset, task)
        labels = dataset.labels(task.name)[usable]
        dens = self.density(labels)
        n_test = int(round(self.params["test_fraction"] * len(usable)))
        order = np.lexsort((usable, dens))  # lowest density first, ties by position
        beyond = np.zeros(len(usable), bool)
        beyond[order[:n_test]] = True
        # Distance beyond the in-distribution label range (zero for a low-density point inside it).
        inside = labels[~beyond]
        lo, hi = (inside.min(), inside.max()) if len(inside) else (np.nan, np.nan)
        distance = np.maximum(np.maximum(lo - labels, labels - hi), 0.0)
        return usable, beyond, distance


def _binned_kde(values: np.ndarray, bandwidth: float, points: int) -> np.ndarray:
    """A Gaussian KDE at each value in O(n + points log points): linear binning of the values onto an
    even grid, FFT convolution with the kernel, linear interpolation back (the standard fast KDE)."""
    from scipy.signal import fftconvolve

    lo, hi = values.min(), values.max()
    grid = np.linspace(lo, hi, points)
    step = grid[1] - grid[0]
    pos = (values - lo) / step
    left = np.clip(np.floor(pos).astype(np.int64), 0, points - 2)
    frac = pos - left
    mass = np.bincount(left, 1 - frac, minlength=points) + np.bincount(left + 1, frac, minlength=points)
    reach = min(int(np.ceil(8 * bandwidth / step)), 4 * points)
    offsets = np.arange(-reach, reach + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2) / (np.sqrt(2 * np.pi) * bandwidth * len(values))
    on_grid = fftconvolve(mass, kernel, mode="full")[reach : reach + points]
    return np.interp(values, grid, np.maximum(on_grid, 0.0))


class Size(_HeldOutRegion):
    name = "size"
    description = (
        "Train on graphs with at most k nodes (graph property 'size', heavy atoms for molecules), test on "
        "larger ones. Without max_size, k is the size whose share of graphs at or below it is closest to "
        "`quantile` (0.8) with both sides non-empty."
    )
    requires = frozenset({"size"})
    needs_graph_regression = False
    param_spec = {
        "max_size": Param(None, "int", "largest size trained on (default: from quantile)", min=0),
        "quantile": Param(
            0.8,
            "number",
            "share of graphs at or below the size boundary",
            min=0.0,
            max=1.0,
            min_open=True,
            max_open=True,
        ),
        "valid_fraction": FRACTION(0.1, "share of in-region graphs in valid"),
        "id_test_fraction": FRACTION(0.1, "share of in-region graphs in test_id"),
    }

    def max_size_of(self, sizes: np.ndarray) -> int:
        """k: `max_size` if given; else, among the sizes present but the largest, the one whose share
        of graphs of at most that size is closest to `quantile` (the smaller on a tie). Sizes are
        integers, so the share is rarely exactly 80%: on QM9, where most molecules have nine heavy
        atoms, it is far from it."""
        if self.params["max_size"] is not None:
            return int(self.params["max_size"])
        values = np.unique(sizes)
        if len(values) < 2:
            raise PluginError(
                f"protocol {self.name!r}: every usable graph has the same size, nothing to extrapolate to"
            )
        share = np.searchsorted(np.sort(sizes), values[:-1], side="right") / len(sizes)
        return int(values[:-1][np.argmin(np.abs(share - self.params["quantile"]))])

    def region(self, dataset: Dataset, task: TaskInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        usable = usable_graphs(dataset, task)
        sizes = _property(dataset, "size", self.name)[usable].astype(np.int64)
        k = self.max_size_of(sizes)
        return usable, sizes > k, (sizes - k).astype(float)


# --- groups -----------------------------------------------------------------------------------


class Scaffold(_Checked):
    name = "scaffold"
    description = (
        "Group split (Bemis-Murcko scaffolds for molecules, graph property 'group'): groups by size, "
        "largest first, fill train to 80%, then valid to 10%, the rest is test (OGB's rule; no randomness)."
    )
    requires = frozenset({"group"})
    param_spec = {
        "train_fraction": Param(
            0.8, "number", "share of graphs in train", min=0.0, max=1.0, min_open=True, max_open=True
        ),
        "valid_fraction": FRACTION(0.1, "share of graphs in valid"),
    }

    def validate(self) -> None:
        super().validate()
        self._fractions("train_fraction", "valid_fraction")

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        """Deterministic: the seed is not used. Groups are ordered by size, largest first, ties by the
        position of their first graph, latest first (the order of OGB's and DeepChem's scaffold
        split). A group goes to train if train stays within ``train_fraction`` of the usable graphs,
        else to valid if train + valid stay within ``train_fraction + valid_fraction``, else to test."""
        usable = usable_graphs(dataset, task)
        groups = np.array([str(g) for g in _property(dataset, "group", self.name)[usable]], dtype=object)
        _, first, inverse, counts = np.unique(groups, return_index=True, return_inverse=True, return_counts=True)
        order = np.lexsort((-first, -counts))  # size descending, then first position descending
        n = len(usable)
        train_cut = self.params["train_fraction"] * n
        valid_cut = (self.params["train_fraction"] + self.params["valid_fraction"]) * n
        destination = np.empty(len(counts), dtype=np.int64)
        n_train = n_valid = 0
        for g in order:
            size = int(counts[g])
            if n_train + size <= train_cut:
                destination[g], n_train = 0, n_train + size
            elif n_train + n_valid + size <= valid_cut:
                destination[g], n_valid = 1, n_valid + size
            else:
                destination[g] = 2
        where = destination[inverse.reshape(-1)]
        return {name: np.sort(usable[where == i]) for i, name in enumerate(("train", "valid", "test"))}

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        names = standard_metric_names(task)
        return [Column("test", names[0]), Column("valid", names[0])] + [Column("test", n) for n in names[1:4]]


# --- imbalance --------------------------------------------------------------------------------


class Imbalance(_Checked):
    """Wang et al. 2023's question: does re-weighting a class-imbalanced pretext task help its rare
    classes, and the downstream error on graphs holding them?

    The pretext head is scored on the test graphs, which pretraining on the train split never saw.
    A task with `PretextTask.evaluation_rounds` (node masking) has every item of every test graph
    scored exactly once, so a class's count is fixed by the test fold: the same for every method
    of a seed. Per class the report gives the accuracy beside the count (``pretext_acc_<class>``,
    ``pretext_n_<class>``); balanced accuracy and macro-F1 average only the classes with at least
    `min_class_items` items, and a class below it is named (``pretext_excluded_<class>``) instead of
    entering the means as a coin flip. The leaderboard's ``pretext_rarest_acc`` and
    ``pretext_rarest_n`` are the accuracy and the count of the rarest class.

    Sizing the rare slice: with every atom scored, a rare element's count in the test fold is about
    test_fraction x its count in the data set (QM9's fluorine: 130 atoms in 5,000 molecules, so 12
    to 29 in a 10% test fold). `rare_test_share` stratifies the split on "holds a rare class" and
    may enrich the test fold with such graphs; a larger `subset` of the data set scales every count.
    """

    name = "imbalance"
    description = (
        "Random split; reports the node-class (element) counts of the pretraining pool, the error on "
        "graphs with a rare class beside the rest, and a class-labelled pretext head's per-class "
        "accuracy and item count, macro-F1 and balanced accuracy on the test graphs (Wang et al. 2023). "
        "A node-masking head scores every test atom once; classes with fewer than min_class_items "
        "scored items are left out of macro-F1 and balanced accuracy and named (pretext_excluded_<class>). "
        "rare_test_share stratifies the split by rare-class presence and can enrich the test fold."
    )
    requires = frozenset({"node_class_counts"})
    param_spec = {
        "valid_fraction": FRACTION(0.1, "share of graphs in valid"),
        "test_fraction": FRACTION(0.1, "share of graphs in test (of those without a rare class, with rare_test_share)"),
        "rare_share": Param(
            0.05, "number", "a class is rare below this share of graphs", min=0.0, max=1.0, min_open=True
        ),
        "min_class_items": Param(
            30,
            "int",
            "a class with fewer scored pretext items is too rare to score: its accuracy and count are reported "
            "but it is left out of balanced accuracy and macro-F1 and named as excluded. An accuracy p on n items "
            "has binomial standard error sqrt(p(1-p)/n), up to 0.5/sqrt(n): 0.09 at n = 30 (a 95% interval of "
            "+-0.18, which a mean over C classes inherits as +-0.18/C), 0.16 at 10, 0.29 at 3 (where one item "
            "moves it by 0.33); below about 30 the normal approximation behind such an interval fails too. 30 is a "
            "floor, not a precision target: comparing methods on a rare class wants 100 or more (error <= 0.05)",
            min=1,
        ),
        "rare_test_share": Param(
            None,
            "number",
            "share of the graphs holding a rare class that go to test, the others taking test_fraction (a "
            "stratified split; equal to test_fraction it only steadies the rare count across seeds, above it "
            "enriches the test fold, which then over-represents rare-class graphs in test_mae and leaves "
            "fewer of them to training and pretraining, as pool_nodes_<class> shows). Unset: one random split",
            min=0.0,
            max=1.0,
            max_open=True,
        ),
    }
    evaluates_pretext = True

    def validate(self) -> None:
        super().validate()
        self._fractions("valid_fraction", "test_fraction")
        if self.params["rare_test_share"] is not None:
            self._fractions("valid_fraction", "rare_test_share")

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        usable = usable_graphs(dataset, task)
        f_valid, f_test = self.params["valid_fraction"], self.params["test_fraction"]
        f_rare = self.params["rare_test_share"]
        if f_rare is None:
            train, valid, test = random_partition(usable, (1 - f_valid - f_test, f_valid, f_test), seed)
            return {"train": train, "valid": valid, "test": test}
        # Stratified: one shuffle, then graphs with and without a rare class are cut separately.
        counts = self._counts(dataset)
        order = np.random.default_rng(seed).permutation(usable)
        has_rare = (counts[order][:, self.rare_classes(counts, usable)] > 0).any(axis=1)
        parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
        for stratum, f in ((order[~has_rare], f_test), (order[has_rare], f_rare)):
            bounds = np.round(np.cumsum([1 - f_valid - f, f_valid]) * len(stratum)).astype(int)
            for name, part in zip(parts, np.split(stratum, bounds), strict=True):
                parts[name].append(part)
        return {name: np.sort(np.concatenate(p)) for name, p in parts.items()}

    def class_names(self, dataset: Dataset, n_classes: int) -> list[str]:
        names = dataset.node_class_names()
        if names is None or len(names) != n_classes:
            names = [str(c) for c in range(n_classes)]
        return [metric_key(n) for n in names]

    def rare_classes(self, counts: np.ndarray, graphs: np.ndarray) -> np.ndarray:
        """Bool per class: present in some, but less than `rare_share`, of `graphs`. Shares are taken
        over all graphs of the split, so that what is rare does not depend on `pretrain_pool`."""
        share = (counts[graphs] > 0).mean(axis=0) if len(graphs) else np.zeros(counts.shape[1])
        return (share > 0) & (share < self.params["rare_share"])

    def _counts(self, dataset: Dataset) -> np.ndarray:
        counts = _property(dataset, "node_class_counts", self.name)
        if counts.ndim != 2:
            raise PluginError(f"{dataset.name!r}: node_class_counts must be (graphs, classes), got {counts.shape}")
        return counts

    def _has_rare(self, dataset: Dataset, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """(rare classes, per graph: whether it holds a node of a rare class)."""
        counts = self._counts(dataset)
        everything = np.unique(np.concatenate([np.asarray(v) for v in split.values()]))
        rare = self.rare_classes(counts, everything)
        return rare, (counts[:, rare] > 0).any(axis=1)

    def derived_slices(self, dataset: Dataset, split: Split) -> dict[str, tuple[str, np.ndarray]]:
        """``rare``: the test graphs holding a node of a rare class; ``common``: the others."""
        _, has_rare = self._has_rare(dataset, split)
        test = np.asarray(split["test"])
        return {"rare": ("test", test[has_rare[test]]), "common": ("test", test[~has_rare[test]])}

    def report(
        self,
        task: TaskInfo,
        predictions: dict[str, Predictions],
        dataset: Dataset,
        split: Split,
        pretrain_pool: np.ndarray | None = None,
    ) -> dict[str, float]:
        """Adds ``rare_classes`` (how many are rare), ``rare_test_graphs`` and, with pretraining,
        ``pool_nodes_<class>`` (nodes of the class in the pretraining pool) and ``pool_graphs_<class>``
        (pool graphs containing it); the rare and common slices report the task's metrics as
        ``rare_<metric>`` and ``common_<metric>``."""
        out = super().report(task, predictions, dataset, split, pretrain_pool)
        counts = self._counts(dataset)
        if pretrain_pool is not None:
            names = self.class_names(dataset, counts.shape[1])
            in_pool = counts[np.asarray(pretrain_pool)]
            for name, nodes, graphs in zip(names, in_pool.sum(axis=0), (in_pool > 0).sum(axis=0), strict=True):
                out[f"pool_nodes_{name}"] = float(nodes)
                out[f"pool_graphs_{name}"] = float(graphs)
        rare, has_rare = self._has_rare(dataset, split)
        out["rare_classes"] = float(rare.sum())
        out["rare_test_graphs"] = float(has_rare[np.asarray(split["test"])].sum())
        return out

    def report_pretext(self, labels: Predictions, class_names: list[str] | None) -> dict[str, float]:
        """`benchbase.compute.metrics.pretext_class_metrics` with ``min_items = min_class_items``: per class
        ``pretext_acc_<class>`` and ``pretext_n_<class>``, the means over the classes with enough
        items, ``pretext_excluded_<class>`` for those without, ``pretext_excluded_classes``."""
        return pretext_class_metrics(labels, class_names, int(self.params["min_class_items"]))

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        """The task's error on all, rare and common test graphs; the pretext head's macro-F1 and
        balanced accuracy (over classes with `min_class_items` items: the metric's ``min_items``),
        accuracy, and the accuracy and item count of its rarest class."""
        m = task.metric
        enough = (("min_items", int(self.params["min_class_items"])),)
        columns = [Column("test", m), Column("rare", m), Column("common", m)]
        columns += [Column("pretext", name, params=enough) for name in ("macro_f1", "balanced_acc")]
        return columns + [Column("pretext", name) for name in ("acc", "rarest_acc", "rarest_n")]


ALL = [IID, ExtrapolationThreshold, ExtrapolationTails, Size, Scaffold, Imbalance]
