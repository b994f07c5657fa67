"""Scoring a pretext task on held-out graphs (each held-out item scored once, in rounds), for the
protocols that measure the pretext task itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from benchbase.compute import loading
from benchbase.compute.batching import TensorGraphs, iterate_batches
from benchbase.compute.metrics import pretext_labels
from benchbase.compute.runspec import RunSpec
from benchbase.compute.runtime import device_of, on
from benchbase.contract.api import (
    Dataset,
    GraphBatch,
    PluginError,
    Predictions,
    PretextContext,
    PretextTask,
)
from benchbase.contract.registry import Registry


def evaluate_pretext(
    registry: Registry,
    run: RunSpec,
    dataset: Dataset,
    graphs: TensorGraphs,
    checkpoint: Path,
    indices: np.ndarray,
    pool: np.ndarray,
) -> tuple[Predictions, list[str] | None] | None:
    """The pretrained pretext head's predicted classes on held-out graphs (class-labelled,
    multiclass tasks), with the graph position of each item; None when there is nothing to score.

    A task with `PretextTask.evaluation_rounds` (node masking, say) has every item of every held-out
    graph scored exactly once, in rounds that each corrupt about a training step's share; any other
    task gets one ordinary step per batch (a random sample of items). Deterministic per run seed:
    the rounds and any random corruption come from a generator seeded from it."""
    name, params = run.component("pretext")
    pretext = loading.build_pretext(registry, name, params)
    if not pretext.class_labelled or pretext.is_multilabel():
        return None
    encoder = loading.build_encoder(registry, *run.component("encoder"), dataset.features)
    encoder.prepare(dataset)
    pretext.prepare(dataset, pool)
    head = pretext.build_head(encoder)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    encoder.load_state_dict(state["encoder"])
    head.load_state_dict(state["head"])
    device = device_of(run.train.device)
    encoder.to(device).eval()
    head.to(device).eval()
    generator = torch.Generator()
    generator.manual_seed(run.seed + 1_000_003)  # held-out masks differ from training masks
    ctx = PretextContext(generator=generator, training=False)
    logits, targets, graph_of_item = [], [], []
    items = 0
    with torch.no_grad():
        for batch in iterate_batches(graphs, indices, run.train.batch_size, max_nodes=run.train.max_nodes):
            batch = on(device, batch)
            for round_ctx, selected in evaluation_contexts(pretext, batch, ctx):
                out = pretext.step(encoder, head, batch, round_ctx)
                if out.logits is None:  # a batch with nothing to predict (no context, say)
                    continue
                if selected is not None and len(out.logits) != selected:
                    raise PluginError(
                        f"pretext task {pretext.name!r} predicted {len(out.logits)} items in an evaluation "
                        f"round that selects {selected}"
                    )
                logits.append(out.logits.cpu().numpy())
                targets.append(out.targets.cpu().numpy())
                if out.item_graph is not None:
                    graph_of_item.append(batch.graph_index[out.item_graph].cpu().numpy())
                else:  # no graph per item: each item is its own resampling unit
                    graph_of_item.append(-1 - np.arange(items, items + len(out.logits)))
                items += len(out.logits)
    if not logits:
        return None
    labels = pretext_labels(np.concatenate(logits), np.concatenate(targets), np.concatenate(graph_of_item))
    return labels, pretext.class_names()


def evaluation_contexts(
    pretext: PretextTask, batch: GraphBatch, ctx: PretextContext
) -> list[tuple[PretextContext, int | None]]:
    """The contexts of one held-out batch's steps, each with the number of items it selects: one
    per round of the task's `evaluation_rounds` (checked to cover every item exactly once; empty
    rounds skipped), or the plain context (None: the task chooses)."""
    rounds = pretext.evaluation_rounds(batch, ctx.generator)
    if rounds is None:
        return [(ctx, None)]
    rounds = [torch.as_tensor(mask).cpu() for mask in rounds]
    if rounds:
        masks = all(mask.dtype == torch.bool and mask.dim() == 1 for mask in rounds)
        cover = torch.stack(rounds).sum(dim=0) if masks and len({len(m) for m in rounds}) == 1 else None
        if cover is None or not bool((cover == 1).all()):
            raise PluginError(
                f"pretext task {pretext.name!r}: evaluation_rounds must be equal-length bool masks that select "
                "every item exactly once"
            )
    return [(dataclasses.replace(ctx, selection=mask), int(mask.sum())) for mask in rounds if bool(mask.any())]
