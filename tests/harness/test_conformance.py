"""The conformance kit (`benchbase.testing`) over every built-in plugin, and its failures on broken
plugins: a clear message naming the plugin and what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchbase.contract.api import Embeddings, Encoder, FeatureSpec
from benchbase.contract.params import Param
from benchbase.contract.registry import default_registry
from benchbase.testing import (
    ConformanceError,
    SyntheticGraphs,
    check_dataset,
    check_encoder,
    check_registered,
)

ROOT = Path(__file__).resolve().parents[2]
BOTAN_SMALL = ROOT.parent / "shared" / "data" / "botan_small" / "small_data"


def _builtin(kind: str) -> list[str]:
    registry = default_registry()
    return [name for name in registry.names(kind) if registry.get(kind, name).distribution == "benchbase"]


def tiny_glass():
    """A small random Kob-Andersen-like system (N = 80, density 1.2) at two temperatures, three
    training and two test configurations each, four runs of random displacements: enough for the
    glass plugin's contract, at a fraction of the cost of real N = 4096 configurations."""
    from benchbase_glass.datasets import EDGE_TASK, NODE_TASK, GlassDataset
    from benchbase_glass.formats import Sample

    rng = np.random.default_rng(0)
    n = 80
    box = np.full(3, (n / 1.2) ** (1 / 3))
    samples = []
    for temperature in (0.5, 0.6):
        for config in range(5):
            start = rng.random((n, 3)) * box
            runs = start + rng.normal(scale=0.3, size=(4, n, 3))
            split = "train" if config < 3 else "test"
            types = (rng.random(n) < 0.2).astype(np.int8)
            samples.append(Sample(Path("tiny"), f"c{config}", split, temperature, 0, types, start, box, runs))

    class TinyGlass(GlassDataset):
        name = "tiny-glass"
        tasks = [NODE_TASK, EDGE_TASK]

        def samples(self):
            return samples

    return TinyGlass()


@pytest.fixture(scope="module")
def datasets():
    """Small datasets for plugins whose requirements go beyond the kit's synthetic graphs."""
    from toy_molecules import ToyMolecules

    return {"smiles": ToyMolecules(), "glass": tiny_glass()}


def _dataset_for(kind: str, name: str, datasets: dict):
    requires = set(getattr(default_registry().get(kind, name).obj, "requires", ()))
    if kind == "protocol" and name.startswith("glass"):
        requires = {"glass"}
    for capability in ("glass", "smiles"):
        if capability in requires:
            return datasets[capability]
    return None


@pytest.mark.parametrize(
    "kind, name",
    [pytest.param(kind, name, marks=pytest.mark.slow if kind == "executor" and name != "local" else ())
     for kind in ("encoder", "pretext", "rebalancer", "protocol", "metric", "executor") for name in _builtin(kind)],
)  # fmt: skip  # the cluster executors start Ray or a Slurm job: seconds each
def test_every_builtin_plugin_conforms(kind, name, datasets, tmp_path):
    extra = {("executor", "ray"): ("ray", "ray"), ("executor", "slurm"): ("submitit", "slurm")}.get((kind, name))
    if extra:
        pytest.importorskip(extra[0], reason=f"{extra[0]} is not installed (pip install 'benchbase[{extra[1]}]')")
    if (kind, name) == ("executor", "slurm"):  # its job handling, without a cluster: submitit's local mode
        from benchbase.running.slurm_executor import SlurmExecutor
        from benchbase.testing import check_executor

        check_executor(SlurmExecutor, cluster="local", folder=str(tmp_path / "jobs"))
        return
    check_registered(kind, name, _dataset_for(kind, name, datasets))


def test_the_kit_dataset_and_glass_datasets_conform(datasets):
    check_dataset(SyntheticGraphs())
    check_dataset(datasets["glass"])
    if BOTAN_SMALL.is_dir():  # the real data, where it is on this machine
        from benchbase_glass.datasets import BotanDataset

        check_dataset(BotanDataset(root=str(BOTAN_SMALL), max_configs=1))


class _Base(Encoder):
    requires = frozenset({"x_categorical"})
    param_spec = {"hidden": Param(8, "int", min=1)}

    def __init__(self, features: FeatureSpec, hidden: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(features.node_vocab[0] + 1, hidden)
        self.out_dim = hidden

    def graph(self, h, batch):
        return torch.zeros(batch.num_graphs, h.shape[1]).index_add(0, batch.batch, h)


class WrongShape(_Base):
    name = "wrong-shape"

    def forward(self, batch):
        h = self.embed(batch.x[:, 0])
        return Embeddings(node=h[:, :4], graph=self.graph(h, batch))


class Noisy(_Base):
    name = "noisy"

    def forward(self, batch):
        h = self.embed(batch.x[:, 0]) + torch.rand(batch.x.shape[0], self.out_dim)  # unseeded noise
        return Embeddings(node=h, graph=self.graph(h, batch))


class Unpicklable(_Base):
    name = "unpicklable"

    def __init__(self, features: FeatureSpec, hidden: int = 8) -> None:
        super().__init__(features, hidden)
        self.hook = lambda x: x  # a lambda does not pickle

    def forward(self, batch):
        h = self.embed(batch.x[:, 0])
        return Embeddings(node=h, graph=self.graph(h, batch))


class Frozen(_Base):
    name = "frozen"

    def forward(self, batch):
        h = self.embed(batch.x[:, 0]).detach()  # no gradient reaches the weights
        return Embeddings(node=h, graph=self.graph(h, batch))


@pytest.mark.parametrize(
    "cls, message",
    [
        (WrongShape, "embeddings must be node"),
        (Noisy, "is not deterministic"),
        (Unpicklable, "does not pickle"),
        (Frozen, "changed no weight"),
    ],
)
def test_broken_encoders_fail_with_a_clear_message(cls, message):
    with pytest.raises(ConformanceError, match=f"encoder '{cls.name}': .*{message}"):
        check_encoder(cls)


@pytest.mark.slow
def test_a_third_party_executor_and_metric_are_used_by_a_grid(synthetic_env, tmp_path):
    from typer.testing import CliRunner

    from benchbase.cli import app

    log = tmp_path / "jobs.log"
    grid = tmp_path / "grid.toml"
    grid.write_text(
        f"""
seeds = [0]
[train]
epochs = 2
[params.dataset."synthetic/chains"]
metric = "max_error"
[executor.synthetic-logging]
log = "{log}"
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
pretext = ["none", "tiny-masking"]
"""
    )
    out = tmp_path / "lb"
    args = ["run", "--grid", str(grid), "--store", str(tmp_path / "store"), "--leaderboard-out", str(out)]
    result = CliRunner().invoke(app, [*args, "--executor", "synthetic-logging"])
    assert result.exit_code == 0, result.output
    assert sorted(line.split(":")[0] for line in log.read_text().split()) == ["run", "run", "stage"]
    table = (out / "synthetic-chains__count__iid.md").read_text()
    assert "test_max_error ↓" in table and "[" in table  # the headline column, with its interval
    bad = CliRunner().invoke(app, [*args, "--executor", "synthetic-logging", "--executor-option", "lgo=x"])
    assert bad.exit_code == 2 and "unknown parameter 'lgo'" in bad.output
