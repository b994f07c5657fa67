"""Glass protocols: one time scale at one temperature, and temperature transfer.

Both select graphs (configuration, time index) by the dataset's ``temperature`` and ``time_index``
graph properties and use its official train/test directories; a validation slice is carved from
the training configurations by seed. Self-supervised pretraining that reads dynamical targets (the
`edge-pretraining` pretext task) must never see test configurations: such tasks pretrain only with
``pretrain_pool = "train"``, which here is the training slice alone (validation excluded too).
"""

from __future__ import annotations

import numpy as np

from benchbase import Column, Dataset, Param, PluginError, Protocol, Split, TaskInfo

TIME_INDEX = Param(None, "int", "time index of the targets (default: the latest)", min=0)
VALID = Param(
    0.2, "number", "share of training configurations held out for validation", min=0.0, max=1.0, max_open=True
)
TEST = Param(
    0.25,
    "number",
    "test share when the data has no official test directory",
    min=0.0,
    max=1.0,
    min_open=True,
    max_open=True,
)


def _pick(values: np.ndarray, wanted: float | int | None, what: str, dataset: Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows of `rows` whose property equals `wanted`; None means the largest value present."""
    present = np.unique(values[rows])
    if len(present) == 0:
        raise PluginError(f"{dataset.name!r} has no graphs for this selection")
    if wanted is None:
        wanted = present.max()
    keep = rows[np.isclose(values[rows].astype(float), float(wanted))]
    if len(keep) == 0:
        raise PluginError(f"{dataset.name!r} has no graphs with {what} = {wanted}; available: {present.tolist()}")
    return keep


def _train_valid(rows: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    n_valid = max(1, int(round(fraction * len(rows)))) if len(rows) > 1 else 0
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def _official(dataset: Dataset, rows: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): the official directories, or a random cut by seed when there are none."""
    official = dataset.graph_property("official_split")
    train, test = rows[official[rows] == "train"], rows[official[rows] == "test"]
    if len(test) == 0 or len(train) == 0:
        rng = np.random.default_rng(seed + 7919)
        order = rng.permutation(rows)
        n_test = max(1, int(round(test_fraction * len(rows))))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    return train, test


class _GlassProtocol(Protocol):
    requires = frozenset({"official_split", "temperature", "time_index"})

    def incompatibility(self, dataset: Dataset) -> str | None:
        if any(t.level == "graph" for t in dataset.tasks):
            return "glass protocols split node/edge-level glass datasets"
        missing = getattr(dataset, "missing_reason", None)
        return missing() if missing is not None else None

    def pretrain_pool(self, split: Split, mode: str) -> np.ndarray:
        if mode == "train":
            return np.sort(split["train"])
        return super().pretrain_pool(split, mode)

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        return [Column("test", "pearson_per_graph"), Column("test", "mae")]

    def _rows(self, dataset: Dataset, temperature, time_index) -> np.ndarray:
        all_rows = np.arange(dataset.arrays().num_graphs)
        rows = _pick(dataset.graph_property("temperature"), temperature, "temperature", dataset, all_rows)
        return _pick(dataset.graph_property("time_index"), time_index, "time_index", dataset, rows)


class GlassTime(_GlassProtocol):
    name = "glass-time"
    description = "One temperature and time index (default: lowest T, latest time); official train/test"
    param_spec = {
        "time_index": TIME_INDEX,
        "temperature": Param(None, "number", "temperature (default: the lowest)"),
        "valid_fraction": VALID,
        "test_fraction": TEST,
    }

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        temperature = self.params["temperature"]
        if temperature is None:
            temperature = float(np.min(dataset.graph_property("temperature")))
        rows = self._rows(dataset, temperature, self.params["time_index"])
        train, test = _official(dataset, rows, self.params["test_fraction"], seed)
        train, valid = _train_valid(train, self.params["valid_fraction"], seed)
        return {"train": train, "valid": valid, "test": test}


class GlassTemperatureTransfer(_GlassProtocol):
    name = "glass-temperature-transfer"
    description = "Train at train_temperature, test at test_temperature (test_id: held-out configs at train T)"
    param_spec = {
        "train_temperature": Param(None, "number", "temperature trained on (default: the highest)"),
        "test_temperature": Param(None, "number", "temperature tested on (default: the lowest)"),
        "time_index": TIME_INDEX,
        "valid_fraction": VALID,
        "test_fraction": TEST,
    }

    def incompatibility(self, dataset: Dataset) -> str | None:
        reason = super().incompatibility(dataset)
        known = getattr(dataset, "known_temperatures", None)
        temps = known() if known is not None else np.unique(dataset.graph_property("temperature"))
        if reason is None and len(temps) < 2:
            return "temperature transfer needs a dataset with at least two temperatures"
        return reason

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        temps = np.unique(dataset.graph_property("temperature"))
        if len(temps) < 2:
            raise PluginError(f"{self.name!r} needs two temperatures; {dataset.name!r} has {temps.tolist()}")
        t_train = self.params["train_temperature"]
        t_test = self.params["test_temperature"]
        t_train = float(temps.max()) if t_train is None else float(t_train)
        t_test = float(temps.min()) if t_test is None else float(t_test)
        if np.isclose(t_train, t_test):
            raise PluginError(f"{self.name!r}: train and test temperatures are both {t_train}")
        source = self._rows(dataset, t_train, self.params["time_index"])
        target = self._rows(dataset, t_test, self.params["time_index"])
        train, test_id = _official(dataset, source, self.params["test_fraction"], seed)
        _, test = _official(dataset, target, self.params["test_fraction"], seed)
        train, valid = _train_valid(train, self.params["valid_fraction"], seed)
        return {"train": train, "valid": valid, "test": test, "test_id": test_id}

    def leaderboard_columns(self, task: TaskInfo) -> list[Column]:
        return [Column("test", "pearson_per_graph"), Column("test", "mae"), Column("test_id", "pearson_per_graph")]


PROTOCOLS = [GlassTime, GlassTemperatureTransfer]
