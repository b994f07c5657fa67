"""Glass targets and the cutoff graph against direct numpy computations on real BOTAN data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchbase_glass.targets import bond_motion, minimum_image, neighbour_pairs, propensity

ROOT = Path(__file__).resolve().parents[2]
BOTAN_SMALL = ROOT.parent / "shared" / "data" / "botan_small" / "small_data"
BOTAN_FILE = BOTAN_SMALL / "T0.44" / "train" / "isoconfig_N4096T0.44_1_tc07.npz"
needs_botan = pytest.mark.skipif(not BOTAN_FILE.exists(), reason=f"botan_small sample not found at {BOTAN_FILE}")


@pytest.fixture(scope="module")
def botan_sample():
    with np.load(BOTAN_FILE) as data:
        initial, positions = data["initial_positions"], data["positions"]
    box = (len(initial) / 1.2) ** (1 / 3)
    return initial, positions, box


@needs_botan
def test_propensity_equals_direct_loop(botan_sample):
    initial, positions, box = botan_sample
    got = propensity(initial, positions, box)
    runs = positions.shape[0]
    for i in [0, 17, 1000, 4095]:
        direct = sum(np.sqrt(np.sum((positions[r, i] - initial[i]) ** 2)) for r in range(runs)) / runs
        assert got[i] == pytest.approx(direct, rel=1e-12)
    assert got.shape == (len(initial),)
    assert 0.1 < got.mean() < 3.0  # alpha-time displacements are of order one particle size


@needs_botan
def test_bond_motion_equals_brute_force_rows(botan_sample):
    initial, positions, box = botan_sample
    edge_index, values = bond_motion(initial, positions, box, cutoff=2.0)
    sources = np.arange(0, 4096, 97)
    for i in sources:
        # brute force: distances from particle i to every particle, minimum image by explicit rounding
        d0_vec = initial - initial[i]
        d0_vec -= box * np.round(d0_vec / box)
        d0 = np.sqrt((d0_vec**2).sum(-1))
        partners = np.flatnonzero((d0 < 2.0) & (np.arange(len(initial)) != i))
        mine = edge_index[0] == i
        assert np.array_equal(np.sort(edge_index[1, mine]), partners)
        expected = []
        for j in partners:
            dt = positions[:, j] - positions[:, i]
            dt -= box * np.round(dt / box)
            expected.append(np.sqrt((dt**2).sum(-1)).mean() - d0[j])
        order = np.argsort(edge_index[1, mine])
        np.testing.assert_allclose(values[mine][order], expected, rtol=1e-10, atol=1e-12)


@needs_botan
def test_bond_motion_is_symmetric(botan_sample):
    initial, positions, box = botan_sample
    edge_index, values = bond_motion(initial, positions[:4], box)
    lookup = {(int(a), int(b)): v for a, b, v in zip(edge_index[0], edge_index[1], values, strict=True)}
    for a, b, v in list(zip(edge_index[0], edge_index[1], values, strict=True))[:500]:
        assert lookup[(int(b), int(a))] == pytest.approx(v)


def test_neighbour_pairs_match_n2_on_random_box():
    rng = np.random.default_rng(0)
    box = np.array([6.0, 6.5, 7.0])
    pos = rng.uniform(0, 1, (300, 3)) * box + rng.integers(-2, 3, (300, 3)) * box  # unwrapped images
    ei = neighbour_pairs(pos, box, cutoff=1.7)
    delta = minimum_image(pos[None] - pos[:, None], box)
    dist = np.sqrt((delta**2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    src, dst = np.nonzero(dist < 1.7)
    assert np.array_equal(ei, np.stack([src, dst]))


def test_cutoff_beyond_half_box_is_rejected():
    with pytest.raises(ValueError, match="half the box"):
        neighbour_pairs(np.zeros((4, 3)), 3.0, cutoff=2.0)
