"""A third-party, file-backed dataset as an outside user writes one (tests only): chains whose
lengths and labels come from a CSV file, with no `content_key()`. One dataset declares its file
with the ``"path"`` parameter type; the other is written in the older style, a plain ``path``
default, as plugins written before that type existed are."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from benchbase import hookimpl
from benchbase.contract.api import Dataset, FeatureSpec, GraphArrays, TaskInfo
from benchbase.contract.params import Param


class FileChains(Dataset):
    name = "file/chains"
    provides = frozenset({"x_categorical", "size"})
    features = FeatureSpec(node_vocab=(2,))
    param_spec = {"source": Param(None, "path", "CSV of length,label rows")}

    def __init__(self, source: str | None = None) -> None:
        self.source = source
        self.tasks = [TaskInfo("label", unit="", metric="mae")]
        self._arrays: GraphArrays | None = None

    def _rows(self) -> list[tuple[int, float]]:
        with open(Path(self.source)) as handle:
            return [(int(r["length"]), float(r["label"])) for r in csv.DictReader(handle)]

    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            rows = self._rows()
            sizes = np.array([n for n, _ in rows])
            node_ptr = np.concatenate([[0], np.cumsum(sizes)])
            edges = [np.stack([np.arange(n - 1), np.arange(1, n)]) for n in sizes]
            edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in edges])])
            x = (np.arange(node_ptr[-1]) % 2).astype(np.int64)[:, None]
            y = np.array([label for _, label in rows], dtype=np.float32)
            self._arrays = GraphArrays(node_ptr, edge_ptr, np.concatenate(edges, axis=1), x, targets={"label": y})
        return self._arrays

    def ids(self) -> np.ndarray:
        return np.arange(self.arrays().num_graphs)

    def graph_property(self, key):
        return np.diff(self.arrays().node_ptr) if key == "size" else None


class OldFileChains(FileChains):
    """The older form: parameters inferred from ``defaults``; the file is the ``path`` one."""

    name = "file/old-chains"
    param_spec = {}
    defaults = {"path": None}

    def __init__(self, path: str | None = None) -> None:
        super().__init__(source=path)


@hookimpl
def register_datasets(register):
    register("file/chains", FileChains, description="chains from a CSV file (tests)")
    register("file/old-chains", OldFileChains, description="chains from a CSV file, old form (tests)")


def write_chains(path: Path, rows: int) -> Path:
    lines = ["length,label"] + [f"{3 + i % 5},{(3 + i % 5) / 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path
