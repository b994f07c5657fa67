"""Per-particle local-structure descriptors and the linear-regression baseline.

Descriptors of particle i (Roadmap on machine learning glassy dynamics, Jung et al. 2023: the
potential-energy baseline; coarse-graining as in Boattini et al. / Tong and Tanaka):
- E_i: half the sum of its KA pair energies (truncated and shifted at 2.5 sigma_ab);
- for each coarse-graining radius L: the mean of E_j over particles within L (i included), the
  number of particles within L, and the number of B particles within L.
The baseline fits ordinary least squares on the training configurations' type-A particles and
reports the per-configuration Pearson r on the test ones (`benchbase glass baseline`).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from benchbase import Dataset, Predictions, TaskInfo, task_metrics
from benchbase_glass.simulate import CUT, SIGMA, ka_pair_energy


def particle_descriptors(positions: np.ndarray, types: np.ndarray, box: np.ndarray, radii: list[float]) -> np.ndarray:
    """(N, 1 + 3 * len(radii)) descriptors of one configuration (periodic k-d tree, no N^2)."""
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (3,))
    wrapped = np.mod(positions, box)
    wrapped[wrapped >= box] = 0.0
    tree = cKDTree(wrapped, boxsize=box)
    reach = max(CUT * float(SIGMA.max()), max(radii))
    pairs = tree.query_pairs(reach, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    delta = wrapped[j] - wrapped[i]
    delta -= box * np.round(delta / box)
    r = np.linalg.norm(delta, axis=-1)
    n = len(types)
    pair_e = ka_pair_energy(r, types[i], types[j])
    energy = 0.5 * (np.bincount(i, pair_e, n) + np.bincount(j, pair_e, n))
    columns = [energy]
    is_b = (types == 1).astype(np.float64)
    for radius in radii:
        inside = r < radius
        ii, jj = i[inside], j[inside]
        count = np.bincount(ii, minlength=n) + np.bincount(jj, minlength=n)
        e_sum = energy + np.bincount(ii, energy[jj], n) + np.bincount(jj, energy[ii], n)
        b_count = np.bincount(ii, is_b[jj], n) + np.bincount(jj, is_b[ii], n)
        columns += [e_sum / (count + 1), count.astype(np.float64), b_count]
    return np.stack(columns, axis=1)


def dataset_descriptors(dataset: Dataset, radii: list[float]) -> np.ndarray:
    """Descriptors of every node of the dataset (computed once per distinct configuration)."""
    a = dataset.arrays()
    out = np.empty((int(a.node_ptr[-1]), 1 + 3 * len(radii)))
    seen: dict[bytes, np.ndarray] = {}
    for g in range(a.num_graphs):
        lo, hi = int(a.node_ptr[g]), int(a.node_ptr[g + 1])
        pos, types = a.pos[lo:hi].astype(np.float64), a.x[lo:hi, 0]
        key = pos.tobytes()
        if key not in seen:
            seen[key] = particle_descriptors(pos, types, a.graph_attr["box"][g], radii)
        out[lo:hi] = seen[key]
    return out


def descriptor_baseline(
    dataset: Dataset, split: dict[str, np.ndarray], radii: list[float] = (1.0, 1.5, 2.0), task: str = "propensity"
) -> dict[str, float]:
    """OLS of the node target on the descriptors, fit on split["train"] (masked rows), scored on
    split["test"] with the task's metrics (``pearson_per_graph`` first)."""
    a = dataset.arrays()
    features = dataset_descriptors(dataset, list(radii))
    y = a.targets[task]
    mask = a.target_masks.get(task, np.ones(len(y), dtype=bool))
    graph_of = np.repeat(np.arange(a.num_graphs), np.diff(a.node_ptr))

    def rows(graphs: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(graph_of, graphs) & mask & np.isfinite(y))

    train, test = rows(split["train"]), rows(split["test"])
    design = np.column_stack([features, np.ones(len(features))])
    coef, *_ = np.linalg.lstsq(design[train], y[train], rcond=None)
    info: TaskInfo = dataset.task(task)
    pred = Predictions(y_true=y[test].astype(np.float64), y_pred=design[test] @ coef, graph=graph_of[test])
    metrics = task_metrics(info, pred)
    return {"test_pearson_per_graph": metrics.get("pearson_per_graph", float("nan")), "test_mae": metrics["mae"]}
