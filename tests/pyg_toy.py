"""A small torch_geometric InMemoryDataset built by the tests (no download): rings of two atom
kinds with a bond type, 3-D positions and a graph-level regression label."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data, Dataset, InMemoryDataset


class Rings(InMemoryDataset):
    """`graphs` rings of 4-11 nodes; x = (kind 0-2, degree flag 0-1) integers, edge_attr = 0/1
    (same kind at both ends), pos on a circle, y = number of kind-2 nodes + 0.1 * size."""

    def __init__(self, graphs: int = 80, seed: int = 0) -> None:
        super().__init__(None)
        rng = np.random.default_rng(seed)
        data_list = [self._ring(rng) for _ in range(graphs)]
        self.data, self.slices = self.collate(data_list)

    @staticmethod
    def _ring(rng: np.random.Generator) -> Data:
        n = int(rng.integers(4, 12))
        kind = rng.integers(0, 3, n)
        src = np.arange(n)
        dst = (src + 1) % n
        edge_index = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1)
        same = (kind[edge_index[0]] == kind[edge_index[1]]).astype(np.int64)
        angle = 2 * np.pi * src / n
        return Data(
            x=torch.from_numpy(np.stack([kind, (src % 2)], axis=1)),
            edge_index=torch.from_numpy(edge_index),
            edge_attr=torch.from_numpy(same[:, None]),
            pos=torch.from_numpy(np.stack([np.cos(angle), np.sin(angle), np.zeros(n)], axis=1)).float(),
            y=torch.tensor([float((kind == 2).sum()) + 0.1 * n]),
        )


class ProcessedRings(InMemoryDataset):
    """`Rings` the PyG way: processed once into ``<root>/processed/data.pt`` (with a
    ``pre_transform.pt`` beside it), read back from there by every later build."""

    def __init__(self, root: str, graphs: int = 20) -> None:
        self.graphs = graphs
        super().__init__(root)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return ["data.pt"]

    def download(self) -> None:
        pass

    def process(self) -> None:
        rng = np.random.default_rng(0)
        self.save([Rings._ring(rng) for _ in range(self.graphs)], self.processed_paths[0])


class FileRings(Dataset):
    """`Rings` one file per graph under ``<root>/processed``, each read by `get` with a full
    unpickling (``torch.load(..., weights_only=False)``), as some PyG classes do after building."""

    def __init__(self, root: str, graphs: int = 6) -> None:
        self.graphs = graphs
        super().__init__(root)

    @property
    def raw_file_names(self) -> list[str]:
        return []

    @property
    def processed_file_names(self) -> list[str]:
        return [f"ring_{i}.pt" for i in range(self.graphs)]

    def download(self) -> None:
        pass

    def process(self) -> None:
        rng = np.random.default_rng(0)
        for path in self.processed_paths:
            torch.save(Rings._ring(rng).to_dict(), path)

    def len(self) -> int:
        return self.graphs

    def get(self, idx: int) -> Data:
        return Data(**torch.load(self.processed_paths[idx], weights_only=False))


class NeedsDownload(InMemoryDataset):
    """Stands for a PyG dataset whose files must be downloaded, on a machine that cannot."""

    def __init__(self, root: str) -> None:
        from urllib.error import URLError

        raise URLError(f"cannot reach the download server for {root}")


class NodeLabels(InMemoryDataset):
    """One graph with a label per node (node classification): not graph-level."""

    def __init__(self) -> None:
        super().__init__(None)
        data = Data(x=torch.zeros(5, 1), edge_index=torch.tensor([[0, 1], [1, 0]]), y=torch.arange(5))
        self.data, self.slices = self.collate([data])
