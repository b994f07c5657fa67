"""A metric: a value on one slice's predictions (confidence intervals come from resampling graphs)."""

from __future__ import annotations

import numpy as np
from benchbase import Metric, Predictions


class MaxError(Metric):
    """The largest absolute error on a slice: the worst case that a mean hides."""

    name = "example_max_error"
    description = "largest absolute error (benchbase-example)"
    kinds = frozenset({"regression"})

    def compute(self, pred: Predictions) -> float:
        errors = np.abs(np.asarray(pred.y_pred, dtype=float) - np.asarray(pred.y_true, dtype=float))
        return float(errors.max())
