"""Standard splits. Protocols read labels and generic graph properties, never chemistry."""

from __future__ import annotations

import numpy as np

from benchbase.api import Dataset, PluginError, Protocol, Split, TaskInfo


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


class IID(Protocol):
    name = "iid"
    description = "Random split (80/10/10), or the dataset's official split when it has one."
    defaults = {"valid_fraction": 0.1, "test_fraction": 0.1, "use_official": True, "pretrain_pool": "all"}

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


class ExtrapolationThreshold(Protocol):
    name = "extrapolation-threshold"
    description = (
        "Train and validate at or below a label threshold, test beyond it (Takashige et al. 2023). "
        "A random in-distribution slice (test_id) is held out to measure the extrapolation gap."
    )
    defaults = {
        "quantile": 0.8,
        "threshold": None,
        "side": "upper",
        "valid_fraction": 0.1,
        "id_test_fraction": 0.1,
        "pretrain_pool": "all",
    }

    def threshold_of(self, labels: np.ndarray) -> float:
        if self.params["threshold"] is not None:
            return float(self.params["threshold"])
        q = self.params["quantile"] if self.params["side"] == "upper" else 1 - self.params["quantile"]
        return float(np.quantile(labels, q))

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        if task.level != "graph" or task.kind != "regression":
            raise PluginError(f"protocol {self.name!r} needs a graph-level regression task; {task.name!r} is not")
        usable = usable_graphs(dataset, task)
        labels = dataset.labels(task.name)[usable]
        cut = self.threshold_of(labels)
        beyond = labels > cut if self.params["side"] == "upper" else labels < cut
        inside = usable[~beyond]
        f_valid, f_id = self.params["valid_fraction"], self.params["id_test_fraction"]
        train, valid, test_id = random_partition(inside, (1 - f_valid - f_id, f_valid, f_id), seed)
        return {"train": train, "valid": valid, "test": np.sort(usable[beyond]), "test_id": test_id}

    def report(self, task, predictions, dataset, split):
        out = super().report(task, predictions, dataset, split)
        if "test_mae" in out and out.get("test_id_mae"):
            out["mae_ratio"] = out["test_mae"] / out["test_id_mae"]
        return out

    def leaderboard_metrics(self, task):
        return ["test_mae", "test_spearman", "test_kendall", "mae_ratio", "test_id_mae"]
