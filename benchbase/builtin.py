"""The core's own plugin: generic protocols, rebalancers, metrics, the local executor and the
``pyg`` adapter dataset, registered like any third party's."""

from __future__ import annotations

from benchbase.compute import metrics, protocols, rebalancers
from benchbase.contract.hookspecs import hookimpl
from benchbase.running import executors
from benchbase.running.ray_executor import RayExecutor
from benchbase.running.slurm_executor import SlurmExecutor

PROTOCOLS = [
    protocols.IID,
    protocols.ExtrapolationThreshold,
    protocols.ExtrapolationTails,
    protocols.Size,
    protocols.Scaffold,
    protocols.Imbalance,
]
REBALANCERS = [
    rebalancers.NoRebalancing,
    rebalancers.InverseFrequency,
    rebalancers.SqrtInverseFrequency,
    rebalancers.ClassBalanced,
    rebalancers.Focal,
    rebalancers.LogitAdjustment,
    rebalancers.MaskedResampling,
]


@hookimpl
def register_datasets(register):
    """``pyg``: any torch_geometric dataset class (no chemistry: it lives in the core)."""
    from benchbase.compute import pyg_dataset

    pyg_dataset.register(register)


@hookimpl
def register_protocols(register):
    for cls in PROTOCOLS:
        register(cls)


@hookimpl
def register_rebalancers(register):
    for cls in REBALANCERS:
        register(cls)


@hookimpl
def register_metrics(register):
    for cls in metrics.BUILTIN_METRICS:
        register(cls)


@hookimpl
def register_executors(register):
    register(executors.LocalExecutor)
    register(RayExecutor)
    register(SlurmExecutor)
