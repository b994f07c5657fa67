"""Synthetic Kob-Andersen configurations in BOTAN's on-disk layout, for the glass tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

N = 100
BOX = (N / 1.2) ** (1 / 3)


def random_configuration(rng, runs=3):
    types = (rng.uniform(size=N) < 0.2).astype(np.int8)
    initial = rng.uniform(0, BOX, (N, 3))
    positions = initial[None] + rng.normal(0, 0.3, (runs, N, 3))
    return types, initial, positions


def write_botan_tree(root: Path, temps=(0.5, 0.8), n_train=3, n_test=2, times=(0, 1)) -> Path:
    rng = np.random.default_rng(1)
    for t in temps:
        for split, count in (("train", n_train), ("test", n_test)):
            for c in range(count):
                types, initial, positions = random_configuration(rng)
                for k in times:
                    path = root / f"T{t:g}" / split / f"isoconfig_N{N}T{t:g}_{split}{c}_tc{k:02d}.npz"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.savez(path, types=types, initial_positions=initial, positions=positions * (1 + 0.1 * k))
    return root
