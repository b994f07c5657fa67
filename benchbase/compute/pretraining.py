"""Stage one of a run: self-supervised pretraining on a pool of graphs, checkpointed and shared by
every run with the same stage spec."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchbase.compute import loading
from benchbase.compute.batching import TensorGraphs
from benchbase.compute.cache import atomic_path
from benchbase.compute.resume import EpochBatches, Snapshots, random_state, restore_random_state
from benchbase.compute.runtime import (
    adam,
    check_finite,
    count_parameters,
    device_of,
    on,
    optimiser_step,
    seed_everything,
)
from benchbase.compute.settings import TrainSettings
from benchbase.compute.splits import check_split
from benchbase.contract.api import (
    Dataset,
    GraphBatch,
    PretextContext,
    Protocol,
    Split,
    TaskInfo,
)
from benchbase.contract.registry import Registry


def make_split(registry: Registry, spec: dict[str, Any], dataset: Dataset) -> tuple[Protocol, TaskInfo, Split]:
    protocol = loading.build_protocol(registry, spec["protocol"]["name"], spec["protocol"]["params"])
    task = protocol.task_of(dataset)
    split = protocol.split(dataset, task, int(spec["seed"]))
    check_split(split, dataset.arrays().num_graphs)
    return protocol, task, split


def pretrain(
    registry: Registry,
    stage: dict[str, Any],
    checkpoint: Path,
    device: str | None = None,
    snapshots: Snapshots | None = None,
) -> dict[str, Any]:
    """Train encoder + pretext head on the stage's pool and save the checkpoint atomically. The
    encoder, the pretext task (its vocabularies and class counts) and the rebalancer are prepared
    on the stage's dataset - the pretraining dataset, pooled with the fine-tuning graphs when the
    pool holds them (`pretraining_pool`). `device`: where to train (``cuda:1``); by default the
    device type of the stage's numerics. `snapshots`: keep the training state after every epoch
    (and at a `request_pause`) and resume from the one it holds (`Snapshots`)."""
    started = time.perf_counter()
    generator = seed_everything(int(stage["seed"]))
    on_device = device_of(device or stage["numerics"]["device"])
    dataset, graphs, pool = pretraining_pool(registry, stage)
    encoder = loading.build_encoder(registry, stage["encoder"]["name"], stage["encoder"]["params"], dataset.features)
    encoder.prepare(dataset)
    pretext = loading.build_pretext(registry, stage["pretext"]["name"], stage["pretext"]["params"])
    rebalancer = loading.build_rebalancer(registry, stage["rebalancer"]["name"], stage["rebalancer"]["params"])
    pretext.prepare(dataset, pool)
    counts = pretext.class_counts()
    if counts is not None:
        # Multilabel counts are positives per label, which do not add up to the number of items.
        rebalancer.fit(counts, num_samples=len(pool) if pretext.is_multilabel() else None)
    head = pretext.build_head(encoder)
    encoder.to(on_device)
    head.to(on_device)
    selection = rebalancer.selection_weights() if counts is not None else None
    train = TrainSettings.of(stage["train"])
    ctx = PretextContext(
        generator=generator,
        selection_weights=None if selection is None else torch.as_tensor(selection, dtype=torch.float32),
        center_per_graph=train.center_per_graph,
    )
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = adam(params, lr=train.pretrain_lr)
    losses: list[float] = []
    saved = snapshots.load() if snapshots is not None else None
    position = None
    if saved is not None:
        losses = _restore(saved, encoder, head, optimizer, generator, on_device)
        position = EpochBatches.saved(saved)

    def state(step_losses: list[float]) -> dict[str, Any]:
        """What the loop carries on (`Snapshots`), with the losses of the epoch's steps so far; reads,
        never draws."""
        weights = {"encoder": encoder.state_dict(), "head": head.state_dict(), "optimizer": optimizer.state_dict()}
        rest = {"losses": losses, "step_losses": step_losses, "generator": generator.get_state()}
        return weights | rest | {"random": random_state(on_device)}

    for epoch in range(len(losses), train.pretrain_epochs):
        encoder.train()
        head.train()
        batches = EpochBatches(graphs, pool, train.batch_size, generator, train.max_nodes, position)
        step_losses = [] if position is None else list(position["step_losses"])
        position = None
        for batch in batches.steps(snapshots, epoch, functools.partial(state, step_losses)):
            batch = dataset.augment(batch, generator)  # on CPU, before the move: one generator
            loss = _pretext_loss(pretext, rebalancer, encoder, head, on(on_device, batch), ctx)
            check_finite(loss, f"pretraining epoch {epoch}")
            optimiser_step(optimizer, loss, params, train.grad_clip)
            step_losses.append(loss.item())
        losses.append(sum(step_losses, 0.0) / max(len(step_losses), 1))  # summed in step order, as ever
        if snapshots is not None:
            snapshots.save(epoch + 1, state([]))
    with atomic_path(checkpoint) as tmp:
        torch.save({"encoder": encoder.cpu().state_dict(), "head": head.cpu().state_dict()}, tmp)
    return {
        "pool_size": int(len(pool)),
        "losses": losses,
        "seconds": time.perf_counter() - started,
        "n_params": count_parameters(encoder, head),
        "class_counts": None if counts is None else [float(c) for c in counts],
    } | (snapshots.details() if snapshots is not None else {})


def _restore(state: dict[str, Any], encoder, head, optimizer, generator: torch.Generator, device) -> list[float]:
    """Put the stage's training where a snapshot left it; the losses of the epochs it ran."""
    encoder.load_state_dict(state["encoder"])
    head.load_state_dict(state["head"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    restore_random_state(state["random"], device)
    return list(state["losses"])


def pretraining_pool(registry: Registry, stage: dict[str, Any]) -> tuple[Dataset, TensorGraphs, np.ndarray]:
    """The dataset a stage pretrains on, its tensors and the pool (graph positions in them): the
    stage's dataset, or - when its pool adds fine-tuning graphs (``pool.finetune``, see
    `RunSpec.stage_spec`) - that dataset followed by the fine-tuning dataset (`loading.PooledDataset`),
    the pool being every graph of the first and the pooled graphs of the second."""
    dataset, graphs = loading.dataset_tensors(registry, stage["dataset"]["name"], stage["dataset"]["params"])
    pool = stage["pool"]
    if not (isinstance(pool, dict) and "finetune" in pool):
        return dataset, graphs, _pool_indices(registry, pool, dataset)
    other = pool["finetune"]["dataset"]
    theirs = _pool_indices(registry, pool["graphs"], loading.build_dataset(registry, other["name"], other["params"]))
    pooled, pooled_graphs = loading.pooled_tensors(registry, stage["dataset"], other)
    return pooled, pooled_graphs, np.concatenate([np.arange(graphs.num_graphs), graphs.num_graphs + theirs])


def _pool_indices(registry: Registry, pool: Any, dataset: Dataset) -> np.ndarray:
    """``"all"``: every graph of `dataset`; ``{"train_of": protocol, "seed": seed}``: the train and
    valid graphs of that protocol's split of it."""
    if pool == "all":
        return np.arange(dataset.arrays().num_graphs)
    spec = {"protocol": pool["train_of"], "seed": pool["seed"]}
    protocol, _, split = make_split(registry, spec, dataset)
    return protocol.pretrain_pool(split, "train")


def _pretext_loss(pretext, rebalancer, encoder, head, batch: GraphBatch, ctx: PretextContext) -> torch.Tensor:
    out = pretext.step(encoder, head, batch, ctx)
    if out.loss is not None:
        return out.loss
    return rebalancer.loss(out.logits, out.targets, multilabel=out.multilabel)
