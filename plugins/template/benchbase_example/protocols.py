"""A protocol: a standard split of a dataset and the metrics reported on it."""

from __future__ import annotations

import numpy as np
from benchbase import Dataset, Param, Protocol, Split, TaskInfo


class Ordered(Protocol):
    """Train on the first graphs in the dataset's order, validate on the next ones, test on the last:
    a time split when the graphs are in the order they were measured. The seed changes nothing."""

    name = "example-ordered"
    description = "train on the first graphs, valid on the next, test on the last (benchbase-example)"
    param_spec = {
        "valid_fraction": Param(0.1, "number", "share of labelled graphs in valid", min=0.0, max=0.4, min_open=True),
        "test_fraction": Param(0.1, "number", "share of labelled graphs in test", min=0.0, max=0.4, min_open=True),
    }

    def split(self, dataset: Dataset, task: TaskInfo, seed: int) -> Split:
        graphs = np.arange(dataset.arrays().num_graphs)
        if task.level == "graph":  # only graphs with a label
            graphs = graphs[np.isfinite(dataset.labels(task.name))]
        n_test = max(1, round(self.params["test_fraction"] * len(graphs)))
        n_valid = max(1, round(self.params["valid_fraction"] * len(graphs)))
        end_train = len(graphs) - n_valid - n_test
        return {"train": graphs[:end_train], "valid": graphs[end_train:-n_test], "test": graphs[-n_test:]}
