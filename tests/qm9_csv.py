"""Real molecules for the CSV tests: QM9 SMILES and HOMO-LUMO gaps (eV) from the PyPI package
qm9pack, written as a user's CSV file would be."""

from __future__ import annotations

import csv
import importlib.metadata
from pathlib import Path

HARTREE_TO_EV = 27.211386
#: Two SMILES RDKit rejects (an unclosed ring, an aromatic ring that cannot be kekulised).
REJECTED = ["C1CC", "c1cccc1"]


def qm9_rows(count: int, stride: int = 10, part: int = 3) -> list[dict[str, str]]:
    """`count` molecules, every `stride`-th of a part of QM9: QM9 index, SMILES, gap in eV. The third
    part holds molecules of nine heavy atoms with varied scaffolds; the first part, read with a long
    stride, molecules of every size."""
    import pandas as pd

    path = importlib.metadata.distribution("qm9pack").locate_file(f"qm9pack/data/qm9_part{part}.csv")
    frame = pd.read_csv(path, usecols=["Index", "SMILES", "HOMO_LUMO_gap_au"], nrows=count * stride)
    frame = frame.iloc[::stride]
    return [
        {"mol_id": str(i), "smiles": s, "gap": f"{g * HARTREE_TO_EV:.5f}"}
        for i, s, g in zip(frame["Index"], frame["SMILES"], frame["HOMO_LUMO_gap_au"], strict=True)
    ]


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def user_csv(path: Path, count: int = 300) -> Path:
    """A user's file: `count` QM9 molecules with their gap and a 0/1 column (gap above 7 eV), plus
    the two SMILES RDKit rejects and one molecule without a label."""
    rows = qm9_rows(count)
    for row in rows:
        row["wide_gap"] = "1" if float(row["gap"]) > 7.0 else "0"
    rows[5]["smiles"], rows[40]["smiles"] = REJECTED
    rows[7]["gap"] = rows[7]["wide_gap"] = ""
    return write_csv(path, rows)
