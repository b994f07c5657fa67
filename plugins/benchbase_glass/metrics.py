"""The glass-dynamics metric: Pearson r within each configuration, averaged over configurations.

The convention of Bapst et al. 2020, BOTAN (Shiba et al. 2023) and GlassBench: a model is judged by
how well it ranks the particles (or pairs) of one configuration, so the correlation is taken per
configuration (graph) and then averaged. Resampling for confidence intervals draws whole
configurations, whose per-configuration r is computed once.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from benchbase import Metric, Predictions


def per_graph_r(pred: Predictions, row_unit: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """(Pearson r of each graph, whether it is defined), graphs numbered by `row_unit`."""
    values = np.zeros(n_units)
    defined = np.zeros(n_units, dtype=bool)
    order = np.argsort(row_unit, kind="stable")
    bounds = np.searchsorted(row_unit[order], np.arange(n_units + 1))
    y_all, p_all = np.asarray(pred.y_true, float)[order], np.asarray(pred.y_pred, float)[order]
    for unit in range(n_units):
        y, p = y_all[bounds[unit] : bounds[unit + 1]], p_all[bounds[unit] : bounds[unit + 1]]
        if len(y) > 2 and np.ptp(y) > 0 and np.ptp(p) > 0:
            values[unit], defined[unit] = stats.pearsonr(y, p).statistic, True
    return values, defined


class PearsonPerGraph(Metric):
    name = "pearson_per_graph"
    description = "Pearson r within each graph (configuration), averaged over graphs"
    higher_is_better = True
    kinds = frozenset({"regression"})

    def graph_sums(self, pred: Predictions, row_unit: np.ndarray, n_units: int) -> np.ndarray:
        values, defined = per_graph_r(pred, row_unit, n_units)
        return np.stack([np.where(defined, values, 0.0), defined.astype(float)], axis=1)

    def finish(self, totals: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return totals[:, 0] / totals[:, 1]
