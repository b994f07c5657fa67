"""Dynamical targets and the cutoff graph of a periodic particle configuration.

Node target, propensity (Widmer-Cooper and Harrowell 2004; Bapst et al., Nature Physics 16, 448,
2020): the mean over iso-configurational runs of |r_i(t) - r_i(0)|. Edge target, the BOTAN bond
motion (Shiba et al., J. Chem. Phys. 158, 084503, 2023): the mean over runs of
|r_ij(t)| - |r_ij(0)| with minimum-image pair vectors, for pairs with |r_ij(0)| < cutoff.
Positions are unwrapped, so particle displacements need no image correction; pair vectors do.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def minimum_image(delta: np.ndarray, box: np.ndarray | float) -> np.ndarray:
    """Pair vectors folded into [-L/2, L/2) per axis (orthorhombic box)."""
    box = np.asarray(box, dtype=np.float64)
    return delta - box * np.round(delta / box)


def _box3(box: np.ndarray | float) -> np.ndarray:
    return np.broadcast_to(np.asarray(box, dtype=np.float64), (3,)).copy()


def neighbour_pairs(positions: np.ndarray, box: np.ndarray | float, cutoff: float = 2.0) -> np.ndarray:
    """Directed pairs (2, E) with minimum-image distance < cutoff, both directions, sorted by
    (source, target). A k-d tree with periodic `boxsize` (no N^2 matrix): O(N log N)."""
    box = _box3(box)
    if np.any(cutoff >= box / 2):
        raise ValueError(f"cutoff {cutoff} must be below half the box {box.tolist()}")
    wrapped = np.mod(positions, box)
    # cKDTree rejects coordinates equal to the box length after the modulo in float rounding.
    wrapped[wrapped >= box] = 0.0
    tree = cKDTree(wrapped, boxsize=box)
    pairs = tree.query_pairs(cutoff, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((2, 0), dtype=np.int64)
    both = np.concatenate([pairs, pairs[:, ::-1]]).astype(np.int64)
    order = np.lexsort((both[:, 1], both[:, 0]))
    return np.ascontiguousarray(both[order].T)


def propensity(
    initial_positions: np.ndarray, positions: np.ndarray, box: np.ndarray | float | None = None
) -> np.ndarray:
    """(N,) mean over runs of the displacement length; `positions` is (runs, N, 3) unwrapped.
    `box` is accepted for a uniform signature; unwrapped displacements need no image."""
    del box
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim == 2:
        positions = positions[None]
    return np.linalg.norm(positions - np.asarray(initial_positions, dtype=np.float64)[None], axis=-1).mean(axis=0)


def bond_motion(
    initial_positions: np.ndarray,
    positions: np.ndarray,
    box: np.ndarray | float,
    cutoff: float = 2.0,
    edge_index: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(edge_index (2, E), values (E,)): mean over runs of |r_ij(t)| - |r_ij(0)| for the pairs of
    `neighbour_pairs(initial_positions, box, cutoff)` (or the given `edge_index`)."""
    box = _box3(box)
    initial = np.asarray(initial_positions, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim == 2:
        positions = positions[None]
    if edge_index is None:
        edge_index = neighbour_pairs(initial, box, cutoff)
    src, dst = edge_index
    d0 = np.linalg.norm(minimum_image(initial[dst] - initial[src], box), axis=-1)
    total = np.zeros(len(src))
    for run in positions:  # one run at a time keeps memory at O(E)
        total += np.linalg.norm(minimum_image(run[dst] - run[src], box), axis=-1)
    return edge_index, total / len(positions) - d0
