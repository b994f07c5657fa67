"""A synthetic plugin for testing harness mechanics (resume, failures, sharing) quickly.

Graphs are random chains with two node classes; the label counts class-1 nodes, so an encoder can
learn it. Nothing here is chemistry: the point is the machinery, not the science.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import scatter

from benchbase import hookimpl
from benchbase.compute.metrics import Metric
from benchbase.contract.api import (
    Dataset,
    Embeddings,
    Encoder,
    FeatureSpec,
    GraphArrays,
    PretextOutput,
    PretextTask,
    TaskInfo,
)
from benchbase.contract.params import Param
from benchbase.running.executors import LocalExecutor


class SyntheticChains(Dataset):
    name = "synthetic/chains"
    provides = frozenset({"x_categorical", "size", "node_class_counts"})
    features = FeatureSpec(node_vocab=(2,))

    def __init__(self, graphs: int = 120, nan_labels: int = 0, metric: str = "mae") -> None:
        self.n_graphs, self.nan_labels = graphs, nan_labels
        self.tasks = [TaskInfo("count", unit="nodes", metric=metric)]
        self._arrays = None

    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            rng = np.random.default_rng(0)
            sizes = rng.integers(3, 10, self.n_graphs)
            node_ptr = np.concatenate([[0], np.cumsum(sizes)])
            edges = [np.array([[i, i + 1], [i + 1, i]]).reshape(2, 2) for n in sizes for i in range(n - 1)]
            per_graph = [
                np.concatenate(
                    [np.stack([np.arange(n - 1), np.arange(1, n)]), np.stack([np.arange(1, n), np.arange(n - 1)])],
                    axis=1,
                )
                for n in sizes
            ]
            del edges
            edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in per_graph])])
            x = (rng.random(node_ptr[-1]) < 0.3).astype(np.int64)[:, None]
            y = np.add.reduceat(x[:, 0], node_ptr[:-1]).astype(np.float32)
            y[: self.nan_labels] = np.nan
            self._arrays = GraphArrays(node_ptr, edge_ptr, np.concatenate(per_graph, axis=1), x, targets={"count": y})
        return self._arrays

    def ids(self) -> np.ndarray:
        return np.arange(self.arrays().num_graphs) + 1000

    def graph_property(self, key):
        a = self.arrays()
        if key == "size":
            return np.diff(a.node_ptr)
        if key == "node_class_counts":
            counts = np.zeros((a.num_graphs, 2), dtype=np.int64)
            np.add.at(counts, (np.repeat(np.arange(a.num_graphs), np.diff(a.node_ptr)), a.x[:, 0]), 1)
            return counts
        return None

    def node_class_names(self):
        return ["a", "b"]


class CachedChains(SyntheticChains):
    """SyntheticChains built slowly into a cache file (`cache`), each build logged beside it, as a
    featurising dataset: for the test that concurrent jobs build a cache once."""

    name = "synthetic/cached"
    param_spec = {"cache": Param(None, "str"), "graphs": Param(120, "int", min=1)}

    def __init__(self, cache: str, graphs: int = 120) -> None:
        super().__init__(graphs)
        self.cache = Path(cache)

    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            if not self.cache.exists():
                with open(f"{self.cache}.builds", "a") as log:
                    log.write(f"{os.getpid()}\n")
                time.sleep(1.0)  # featurising: long enough for a second job to start meanwhile
                built = super().arrays()
                tmp = self.cache.with_name(f"{self.cache.stem}.{os.getpid()}.tmp.npz")
                np.savez(tmp, node_ptr=built.node_ptr, edge_ptr=built.edge_ptr, edge_index=built.edge_index,
                         x=built.x, count=built.targets["count"])  # fmt: skip
                os.replace(tmp, self.cache)
            with np.load(self.cache) as a:
                self._arrays = GraphArrays(a["node_ptr"], a["edge_ptr"], a["edge_index"], a["x"],
                                           targets={"count": a["count"]})  # fmt: skip
        return self._arrays


_GATE_PASSED = False


def _gate() -> None:
    """With ``BENCHBASE_TEST_GATE=DIR:N``, the first training step in each process marks DIR and
    waits (up to two minutes) until N processes have: a test proves that N drivers, each training
    in its own process (``--jobs 1``), all train at once, whatever the machine's speed."""
    global _GATE_PASSED
    setting = os.environ.get("BENCHBASE_TEST_GATE")
    if _GATE_PASSED or not setting:
        return
    _GATE_PASSED = True
    folder, count = setting.rsplit(":", 1)
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < int(count) and time.monotonic() < deadline:
        time.sleep(0.1)


class TinyEncoder(Encoder):
    name = "tiny"
    description = "Embedding + one round of neighbour averaging (tests only)."
    requires = frozenset({"x_categorical"})
    param_spec = {"hidden": Param(16, "int", min=1), "explode": Param(False, "bool")}

    def __init__(self, features: FeatureSpec, hidden: int = 16, explode: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(features.node_vocab[0] + 1, hidden)
        self.mix = nn.Linear(2 * hidden, hidden)
        self.out_dim, self.explode = hidden, explode

    def forward(self, batch):
        if self.training:
            _gate()
        h = self.embed(batch.x[:, 0])
        src, dst = batch.edge_index
        neigh = scatter(h[src], dst, dim=0, dim_size=h.shape[0], reduce="mean")
        h = torch.relu(self.mix(torch.cat([h, neigh], dim=-1)))
        if self.explode:
            h = h * float("nan")
        return Embeddings(node=h, graph=scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="sum"))


class NoisyTinyEncoder(TinyEncoder):
    """`TinyEncoder` that draws from every global random generator while training (dropout on
    torch's, a jitter from numpy's and Python's): what a resumed run must restore."""

    name = "tiny-noisy"
    description = "TinyEncoder with dropout and jitter from the global generators (tests only)."

    param_spec = {**TinyEncoder.param_spec, "pause": Param(0.0, "number", "seconds slept per training step", min=0.0)}

    def __init__(self, features: FeatureSpec, hidden: int = 16, explode: bool = False, pause: float = 0.0) -> None:
        super().__init__(features, hidden, explode)
        self.pause = pause

    def forward(self, batch):
        emb = super().forward(batch)
        if not self.training:
            return emb
        if self.pause:  # a floor on training time, whatever the machine's speed (the time-limit test)
            time.sleep(self.pause)
        jitter = 1.0 + 1e-3 * (float(np.random.rand()) + random.random())
        node = nn.functional.dropout(emb.node, 0.2, training=True) * jitter
        return Embeddings(node=node, graph=scatter(node, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="sum"))


class TinyMasking(PretextTask):
    name = "tiny-masking"
    description = "Mask 30% of nodes, predict their class (tests only)."
    requires = frozenset({"x_categorical"})
    param_spec = {
        "rate": Param(0.3, "number", min=0.0, max=1.0),
        "fail": Param(False, "bool"),
        "trace": Param(None, "str", "a file that gets one line per pretraining this task does"),
    }

    def __init__(self, rate: float = 0.3, fail: bool = False, trace: str | None = None) -> None:
        self.rate, self.fail, self.trace = rate, fail, trace

    def prepare(self, dataset, pool):
        a = dataset.arrays()
        rows = np.concatenate([np.arange(a.node_ptr[g], a.node_ptr[g + 1]) for g in pool])
        self.counts = np.bincount(a.x[rows, 0], minlength=2)

    def class_counts(self):
        return self.counts

    def class_names(self):
        return ["a", "b"]

    def build_head(self, encoder):
        return nn.Linear(encoder.out_dim, 2)

    def step(self, encoder, head, batch, ctx):
        if self.fail:
            raise RuntimeError("planted failure")
        if self.trace and torch.is_grad_enabled() and not getattr(self, "_traced", False):
            self._traced = True  # the first training step of a pretraining: one line per stage computed
            with open(self.trace, "a") as handle:
                handle.write(f"{int(batch.x[:, 0].sum())}\n")
        n = batch.x.shape[0]
        chosen = torch.rand(n, generator=ctx.generator) < self.rate
        chosen[0] = True
        x = batch.x.clone()
        x[chosen, 0] = 2  # the mask token
        emb = encoder(batch.replace(x=x))
        return PretextOutput(logits=head(emb.node[chosen]), targets=batch.x[chosen, 0])


@hookimpl
def register_datasets(register):
    register("synthetic/chains", SyntheticChains, description="random chains (tests)")
    register("synthetic/cached", CachedChains, description="random chains built into a cache file (tests)")


@hookimpl
def register_encoders(register):
    register(TinyEncoder)
    register(NoisyTinyEncoder)


@hookimpl
def register_pretext_tasks(register):
    register(TinyMasking)


class MaxError(Metric):
    """A third-party metric: the largest absolute error (tests only)."""

    name = "max_error"
    description = "largest absolute error (tests only)"

    def compute(self, pred):
        return float(np.max(np.abs(pred.y_pred - pred.y_true)))


class LoggingExecutor(LocalExecutor):
    """A third-party executor: in-process, appending each job's key to a log file (tests only)."""

    name = "synthetic-logging"
    description = "in-process, logging each job (tests only)"
    param_spec = {"log": Param("jobs.log", "str", "file each job's key is appended to")}

    def __init__(self, jobs: int = 1, log: str = "jobs.log") -> None:
        super().__init__(jobs=1)
        self.log = log

    def submit(self, key, fn, payload, resources=None, after=()):
        with open(self.log, "a") as handle:
            handle.write(key + "\n")
        super().submit(key, fn, payload)


@hookimpl
def register_metrics(register):
    register(MaxError)


@hookimpl
def register_executors(register):
    register(LoggingExecutor)
