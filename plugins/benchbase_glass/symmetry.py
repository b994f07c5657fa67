"""The 48 symmetries of the cube (the full octahedral group O_h), applied to glass graphs.

A glass configuration in a cubic periodic box has no preferred axis or handedness: permuting the
axes and reflecting any of them gives an equally likely configuration with the same dynamics. BOTAN
(h3-Open-BDEC/pyg_botan) draws one such symmetry each time a configuration is served for training
and applies it to the edge vectors; `augment_batch` does the same, per graph of a batch, from the
run's seeded generator, so that training is deterministic for a seed.

Each element is a 3x3 signed permutation matrix S (one +-1 per row and column); a pair vector
r_j - r_i becomes S (r_j - r_i). Lengths, hence the graph, the particle types and both targets
(propensity and bond motion are lengths), are unchanged.
"""

from __future__ import annotations

import itertools

import torch

from benchbase import GraphBatch


def cube_symmetries() -> torch.Tensor:
    """(48, 3, 3) float32: every axis permutation (6) times every choice of reflections (8)."""
    matrices = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3)
            for row, (col, sign) in enumerate(zip(perm, signs, strict=True)):
                m[row, col] = sign
            matrices.append(m)
    return torch.stack(matrices)


CUBE_SYMMETRIES = cube_symmetries()


def draw_symmetries(num_graphs: int, generator: torch.Generator) -> torch.Tensor:
    """Indices into `CUBE_SYMMETRIES`, one per graph, uniform over the 48 elements."""
    return torch.randint(len(CUBE_SYMMETRIES), (num_graphs,), generator=generator)


def augment_batch(batch: GraphBatch, generator: torch.Generator) -> GraphBatch:
    """The batch with one random cube symmetry per graph applied to its edge vectors (``edge_attr``)
    and positions (``pos``, about the origin); the box lengths are permuted with the axes. New
    tensors throughout: the dataset's own arrays are never changed."""
    mats = CUBE_SYMMETRIES[draw_symmetries(batch.num_graphs, generator)]
    changes: dict = {}
    if batch.edge_attr is not None:
        # row vectors: v' = v S^T, with each edge's S that of its graph
        changes["edge_attr"] = torch.einsum("ek,ejk->ej", batch.edge_attr, mats[batch.edge_batch])
    if batch.pos is not None:
        changes["pos"] = torch.einsum("nk,njk->nj", batch.pos, mats[batch.batch])
    if "box" in batch.graph_attr:
        box = torch.einsum("gk,gjk->gj", batch.graph_attr["box"], mats.abs())
        changes["graph_attr"] = {**batch.graph_attr, "box": box}
    return batch.replace(**changes)
