"""The two stages of a run: self-supervised pretraining (shared, checkpointed) and fine-tuning with
early stopping on the validation split, evaluated at the best validation epoch."""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchbase import loading
from benchbase.api import (
    Dataset,
    Encoder,
    GraphBatch,
    PluginError,
    Predictions,
    PretextContext,
    PretextTask,
    Protocol,
    Split,
    TaskInfo,
)
from benchbase.batching import TensorGraphs, center_per_graph, concat_ranges, iterate_batches
from benchbase.cache import atomic_path
from benchbase.errors import TrainingDiverged
from benchbase.grid import RunSpec, expand_grid, load_grid
from benchbase.metrics import pretext_labels, subset
from benchbase.registry import Registry, default_registry
from benchbase.splits import check_split


def device_of(numerics: dict[str, Any]) -> torch.device:
    """The run's device. On CUDA, torch's deterministic algorithms are switched on (where torch has
    them; the others warn) so that a spec gives the same numbers on the same GPU model."""
    device = torch.device(numerics.get("device", "cpu"))
    if device.type == "cuda" and device.index is None:  # which GPU: --device cuda:N, else the first
        device = torch.device(f"cuda:{os.environ.get('BENCHBASE_CUDA_DEVICE', '0')}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PluginError(f"the run asks for device {device} but this worker has no CUDA device")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return device


def on(device: torch.device, batch: GraphBatch) -> GraphBatch:
    """A batch on the run's device: data stays in CPU arrays, each batch moves when it is used."""
    return batch if device.type == "cpu" else batch.to(device)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def adam(params: list[nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with its fused kernel: one pass over all parameters per step instead of a loop of small
    operations per tensor (3x faster on CPU for the quick profile's many small tensors)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)


def count_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def _check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} during {where}")


def optimiser_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], grad_clip: float | None
) -> None:
    """One update; with `grad_clip` the gradients' global norm is clipped to it first (the train
    setting ``grad_clip``, read by fine-tuning and pretraining alike)."""
    optimizer.zero_grad()
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(params, float(grad_clip))
    optimizer.step()


# ---------------------------------------------------------------------------------------------
# Splits


def make_split(registry: Registry, spec: dict[str, Any], dataset: Dataset) -> tuple[Protocol, TaskInfo, Split]:
    protocol = loading.build_protocol(registry, spec["protocol"]["name"], spec["protocol"]["params"])
    task = protocol.task_of(dataset)
    split = protocol.split(dataset, task, int(spec["seed"]))
    check_split(split, dataset.arrays().num_graphs)
    return protocol, task, split


# ---------------------------------------------------------------------------------------------
# Pretraining


def pretrain(registry: Registry, stage: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """Train encoder + pretext head on the stage's pool and save the checkpoint atomically. The
    encoder, the pretext task (its vocabularies and class counts) and the rebalancer are prepared
    on the stage's dataset - the pretraining dataset, pooled with the fine-tuning graphs when the
    pool holds them (`pretraining_pool`)."""
    started = time.perf_counter()
    generator = seed_everything(int(stage["seed"]))
    device = device_of(stage["numerics"])
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
    encoder.to(device)
    head.to(device)
    selection = rebalancer.selection_weights() if counts is not None else None
    train = stage["train"]
    ctx = PretextContext(
        generator=generator,
        selection_weights=None if selection is None else torch.as_tensor(selection, dtype=torch.float32),
        center_per_graph=bool(train.get("center_per_graph", False)),
    )
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = adam(params, lr=train["pretrain_lr"])
    losses = []
    for epoch in range(train["pretrain_epochs"]):
        encoder.train()
        head.train()
        total, steps = 0.0, 0
        for batch in iterate_batches(graphs, pool, train["batch_size"], True, generator, train["max_nodes"]):
            batch = dataset.augment(batch, generator)  # on CPU, before the move: one generator
            loss = _pretext_loss(pretext, rebalancer, encoder, head, on(device, batch), ctx)
            _check_finite(loss, f"pretraining epoch {epoch}")
            optimiser_step(optimizer, loss, params, train.get("grad_clip"))
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    with atomic_path(checkpoint) as tmp:
        torch.save({"encoder": encoder.cpu().state_dict(), "head": head.cpu().state_dict()}, tmp)
    return {
        "pool_size": int(len(pool)),
        "losses": losses,
        "seconds": time.perf_counter() - started,
        "n_params": count_parameters(encoder, head),
        "class_counts": None if counts is None else [float(c) for c in counts],
    }


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


# ---------------------------------------------------------------------------------------------
# Fine-tuning


class TaskHeads(nn.Module):
    """One head per task on the embedding of the task's level: linear, or a two-layer MLP of
    width `hidden` (the decoders of BOTAN-style models) when `hidden` is set."""

    def __init__(self, tasks: list[TaskInfo], width: int, has_edge_embedding: bool, hidden: int | None = None):
        super().__init__()
        self.tasks = tasks
        self.heads = nn.ModuleDict()
        for task in tasks:
            in_dim = 2 * width if task.level == "edge" and not has_edge_embedding else width
            if hidden:
                self.heads[task.name] = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            else:
                self.heads[task.name] = nn.Linear(in_dim, 1)

    def forward(self, emb, batch: GraphBatch) -> dict[str, torch.Tensor]:
        out = {}
        for task in self.tasks:
            if task.level == "graph":
                features = emb.graph
            elif task.level == "node":
                features = emb.node
            elif emb.edge is not None:
                features = emb.edge
            else:
                src, dst = batch.edge_index
                features = torch.cat([emb.node[src], emb.node[dst]], dim=-1)
            out[task.name] = self.heads[task.name](features).squeeze(-1)
        return out


@dataclass
class Standardiser:
    """Regression targets are trained in standard units (train-split mean and std)."""

    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(cls, tasks: list[TaskInfo], targets: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]):
        self = cls()
        for task in tasks:
            values = targets[task.name]
            keep = torch.isfinite(values) & masks.get(task.name, torch.ones_like(values, dtype=torch.bool))
            v = values[keep].double()
            if task.kind == "regression" and len(v) > 1:
                self.mean[task.name], self.std[task.name] = float(v.mean()), float(v.std()) or 1.0
            else:
                self.mean[task.name], self.std[task.name] = 0.0, 1.0
        return self


def _rows_of_graphs(graphs: TensorGraphs, level: str, indices: np.ndarray) -> torch.Tensor:
    """Row positions of the given graphs at a level, for label statistics over a split."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    if level == "graph":
        return idx
    ptr = graphs.node_ptr if level == "node" else graphs.edge_ptr
    return concat_ranges(ptr[idx], ptr[idx + 1] - ptr[idx])


@dataclass(frozen=True)
class EpochEnd:
    """What `FineTuner.fit`'s ``on_epoch`` callback sees after each epoch: the epoch (0-based), its
    validation loss (the early-stopping criterion) and the tuner, whose model is the one at the
    end of that epoch (in evaluation mode: `FineTuner.predict` may be called on any slice)."""

    epoch: int
    valid_loss: float
    tuner: FineTuner


class FineTuner:
    """Fits encoder + heads on one split of one dataset and predicts any slice.

    Public (`benchbase.FineTuner`, contract-versioned): `fit`, `predict`, `load_pretrained` and the
    attributes `tasks`, `weights` (each task's loss weight; 0: its head is not trained), `encoder`,
    `heads`. Everything else is the harness's own."""

    def __init__(self, registry: Registry, run: RunSpec, dataset: Dataset, graphs: TensorGraphs) -> None:
        self.run, self.dataset, self.graphs = run, dataset, graphs
        self.train_cfg = run.train
        self.tasks = dataset.tasks
        self.generator = seed_everything(run.seed)
        self.device = device_of(run.spec["numerics"])
        name, params = run.component("encoder")
        self.encoder: Encoder = loading.build_encoder(registry, name, params, dataset.features)
        self.encoder.prepare(dataset)
        probe = self._probe_edge_embedding()
        self.heads = TaskHeads(self.tasks, self.encoder.out_dim, probe, self.train_cfg.get("head_hidden"))
        self.encoder.to(self.device)
        self.heads.to(self.device)
        self.weights = self._task_weights()
        self.classification = [t for t in self.tasks if t.kind == "classification"]
        if any(t.level != "graph" for t in self.classification):
            raise PluginError("classification tasks must be graph-level")
        self.rebalancer = loading.build_rebalancer(registry, *run.component("rebalancer"))

    def _probe_edge_embedding(self) -> bool:
        if not any(t.level == "edge" for t in self.tasks):
            return False
        self.encoder.eval()
        with torch.no_grad():
            emb = self.encoder(self.graphs.batch(torch.tensor([0])))
        return emb.edge is not None

    def _task_weights(self) -> dict[str, float]:
        given = self.train_cfg.get("task_weights") or {}
        unknown = set(given) - {t.name for t in self.tasks}
        if unknown:
            raise PluginError(f"task_weights name unknown task(s) {sorted(unknown)} of {self.dataset.name!r}")
        return {t.name: float(given.get(t.name, 1.0 if not given else 0.0)) for t in self.tasks}

    def load_pretrained(self, checkpoint: Path) -> None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.encoder.load_state_dict(state["encoder"])
        self.encoder.to(self.device)

    def _label_keep(self, split: Split) -> dict[str, torch.Tensor]:
        """The few-label setting: one graph-level task keeps only k labelled training graphs."""
        few = self.train_cfg.get("few_label")
        if not few:
            return {}
        task, k = few["task"], int(few["k"])
        if self.dataset.task(task).level != "graph":
            raise PluginError("few_label applies to graph-level tasks")
        rng = np.random.default_rng(self.run.seed)
        labelled = split["train"][np.isfinite(self.dataset.labels(task)[split["train"]])]
        keep = np.zeros(self.graphs.num_graphs, dtype=bool)
        keep[rng.permutation(labelled)[:k]] = True
        keep[np.setdiff1d(np.arange(self.graphs.num_graphs), split["train"])] = True
        return {task: torch.from_numpy(keep).to(self.device)}

    def fit(self, split: Split, on_epoch: Callable[[EpochEnd], None] | None = None) -> dict[str, Any]:
        """Train on ``split["train"]`` with early stopping on ``split["valid"]``, then keep the best
        epoch's weights. `on_epoch`, if given, is called after each epoch's validation (learning
        curves); it must not change the model or draw from torch's global random generator, or
        the run would no longer be the one the harness makes."""
        train_idx, valid_idx = split["train"], split["valid"]
        self.keep = self._label_keep(split)
        targets, masks = {}, {}
        for task in self.tasks:
            rows = _rows_of_graphs(self.graphs, task.level, train_idx)
            values = self.graphs.targets[task.name][rows].clone()
            if task.name in self.keep:
                values[~self.keep[task.name][rows]] = float("nan")
            targets[task.name] = values
            if task.name in self.graphs.target_masks:
                masks[task.name] = self.graphs.target_masks[task.name][rows]
        self.scaler = Standardiser.fit(self.tasks, targets, masks)
        if self.classification:
            positives = [float(np.nansum(targets[t.name].numpy())) for t in self.classification]
            self.rebalancer.fit(np.array(positives), num_samples=len(train_idx))
        cfg = self.train_cfg
        params = list(self.encoder.parameters()) + list(self.heads.parameters())
        optimizer = adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
        best = (float("inf"), -1, None)
        history = []
        for epoch in range(cfg["epochs"]):
            self.encoder.train()
            self.heads.train()
            for batch in iterate_batches(
                self.graphs, train_idx, cfg["batch_size"], True, self.generator, cfg["max_nodes"]
            ):
                batch = self.dataset.augment(batch, self.generator)  # training batches only
                loss = self._loss(on(self.device, batch), training=True)
                _check_finite(loss, f"fine-tuning epoch {epoch}")
                optimiser_step(optimizer, loss, params, cfg.get("grad_clip"))
            valid_loss = self._evaluate_loss(valid_idx)
            history.append(valid_loss)
            if on_epoch is not None:
                on_epoch(EpochEnd(epoch, valid_loss, self))
            if valid_loss < best[0]:
                state = (copy.deepcopy(self.encoder.state_dict()), copy.deepcopy(self.heads.state_dict()))
                best = (valid_loss, epoch, state)
            elif epoch - best[1] >= cfg["patience"]:
                break
        if best[2] is None:
            raise TrainingDiverged("validation loss was never finite")
        self.encoder.load_state_dict(best[2][0])
        self.heads.load_state_dict(best[2][1])
        return {"best_epoch": best[1], "epochs_run": len(history), "best_valid_loss": best[0]}

    def _loss(self, batch: GraphBatch, training: bool) -> torch.Tensor:
        preds = self.heads(self.encoder(batch), batch)
        total = preds[self.tasks[0].name].new_zeros(())
        for task in self.tasks:
            if self.weights[task.name] == 0 or task.kind == "classification":
                continue
            y = batch.targets[task.name]
            keep = self._keep_rows(task, batch, training)
            if keep.any():
                standard = (y[keep] - self.scaler.mean[task.name]) / self.scaler.std[task.name]
                pred = preds[task.name][keep]
                if self._centred(task):
                    graph = self._graph_of_rows(task, batch)[keep]
                    standard = center_per_graph(standard, graph, batch.num_graphs)
                    pred = center_per_graph(pred, graph, batch.num_graphs)
                total = total + self.weights[task.name] * torch.mean((pred - standard) ** 2)
        if self.classification:
            # Binary tasks go through the rebalancer together, as one multilabel loss (NaN = missing).
            logits = torch.stack([preds[t.name] for t in self.classification], dim=-1)
            labels = torch.stack(
                [
                    torch.where(self._keep_rows(t, batch, training), batch.targets[t.name], torch.nan)
                    for t in self.classification
                ],
                dim=-1,
            )
            weight = sum(self.weights[t.name] for t in self.classification) / len(self.classification)
            total = total + weight * self.rebalancer.loss(logits, labels, multilabel=True)
        return total

    def _centred(self, task: TaskInfo) -> bool:
        """Whether the task's loss is taken per graph around each graph's mean (``center_per_graph``):
        node and edge regression tasks only; a graph-level task has one row per graph."""
        return bool(self.train_cfg.get("center_per_graph")) and task.level != "graph" and task.kind == "regression"

    @staticmethod
    def _graph_of_rows(task: TaskInfo, batch: GraphBatch) -> torch.Tensor:
        """The batch-local graph of each row of a node or edge task."""
        return batch.batch if task.level == "node" else batch.edge_batch

    def _keep_rows(self, task: TaskInfo, batch: GraphBatch, training: bool) -> torch.Tensor:
        keep = torch.isfinite(batch.targets[task.name])
        if task.name in batch.target_masks:
            keep &= batch.target_masks[task.name]
        if training and task.name in self.keep:
            keep &= self.keep[task.name][batch.graph_index]
        return keep

    @torch.no_grad()
    def _evaluate_loss(self, indices: np.ndarray) -> float:
        self.encoder.eval()
        self.heads.eval()
        total, count = 0.0, 0
        for batch in self._fixed_batches(indices):
            total += float(self._loss(batch, training=False)) * batch.num_graphs
            count += batch.num_graphs
        return total / max(count, 1)

    def _fixed_batches(self, indices: np.ndarray) -> list[GraphBatch]:
        """Evaluation batches in a fixed order, assembled once per run: the validation slice is
        evaluated every epoch."""
        key = (len(indices), hash(np.asarray(indices).tobytes()))
        cache = self.__dict__.setdefault("_batches", {})
        if key not in cache:
            cfg = self.train_cfg
            batches = iterate_batches(self.graphs, indices, cfg["batch_size"], max_nodes=cfg["max_nodes"])
            cache[key] = [on(self.device, batch) for batch in batches]
        return cache[key]

    @torch.no_grad()
    def predict(self, indices: np.ndarray) -> dict[str, Predictions]:
        self.encoder.eval()
        self.heads.eval()
        rows: dict[str, list] = {t.name: [[], [], []] for t in self.tasks}
        for batch in iterate_batches(
            self.graphs, indices, self.train_cfg["batch_size"], max_nodes=self.train_cfg["max_nodes"]
        ):
            batch = on(self.device, batch)
            preds = self.heads(self.encoder(batch), batch)
            graph_of = {
                "graph": batch.graph_index,
                "node": batch.graph_index[batch.batch],
                "edge": batch.graph_index[batch.edge_batch],
            }
            for task in self.tasks:
                y = batch.targets[task.name]
                keep = self._keep_rows(task, batch, training=False)
                pred = preds[task.name].clone()
                if self._centred(task):
                    # A centred loss leaves each graph's level of the output unfitted: report the
                    # within-graph variation around the training mean (per-graph r is unchanged).
                    graph = self._graph_of_rows(task, batch)[keep]
                    pred[keep] = center_per_graph(pred[keep], graph, batch.num_graphs)
                pred = pred * self.scaler.std[task.name] + self.scaler.mean[task.name]
                rows[task.name][0].append(y[keep].cpu().numpy())
                rows[task.name][1].append(pred[keep].cpu().numpy())
                rows[task.name][2].append(graph_of[task.level][keep].cpu().numpy())
        return {name: Predictions(*(np.concatenate(parts) for parts in lists)) for name, lists in rows.items()}


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
    device = device_of(run.spec["numerics"])
    encoder.to(device).eval()
    head.to(device).eval()
    generator = torch.Generator()
    generator.manual_seed(run.seed + 1_000_003)  # held-out masks differ from training masks
    ctx = PretextContext(generator=generator, training=False)
    logits, targets, graph_of_item = [], [], []
    items = 0
    with torch.no_grad():
        for batch in iterate_batches(graphs, indices, run.train["batch_size"], max_nodes=run.train["max_nodes"]):
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


@dataclass
class RunOutcome:
    """What a fine-tuning run produced: metrics per task, predictions per slice and task (derived
    slices and the pretext head's held-out items, slice ``pretext``, included), its split."""

    metrics: dict[str, dict[str, float]]
    predictions: dict[str, dict[str, Predictions]]
    split: Split
    details: dict[str, Any]


def with_derived_slices(
    protocol: Protocol, dataset: Dataset, split: Split, by_slice: dict[str, Predictions]
) -> dict[str, Predictions]:
    """One task's predictions per slice, with the protocol's derived slices (subsets) added."""
    out = dict(by_slice)
    for name, (parent, graphs) in protocol.derived_slices(dataset, split).items():
        mask = np.zeros(dataset.arrays().num_graphs, dtype=bool)
        mask[np.asarray(graphs, dtype=np.int64)] = True
        out[name] = subset(by_slice[parent], mask)
    return out


@dataclass
class FineTuning:
    """One run set up for fine-tuning as ``benchbase run`` sets it up: its dataset (and its tensors),
    the protocol's split, and its `FineTuner`, built when `tuner` is first read (a script that
    needs only the data and the split builds no model)."""

    registry: Registry
    run: RunSpec
    dataset: Dataset
    graphs: TensorGraphs
    protocol: Protocol
    #: The task whose labels define the split (`Protocol.task_of`).
    split_task: TaskInfo
    split: Split

    @functools.cached_property
    def tuner(self) -> FineTuner:
        return FineTuner(self.registry, self.run, self.dataset, self.graphs)


def prepare_finetune(registry: Registry, run: RunSpec) -> FineTuning:
    """The dataset and split of one run, and its tuner to come (`FineTuning`)."""
    dataset, graphs = loading.dataset_tensors(registry, *run.component("dataset"))
    protocol, split_task, split = make_split(registry, run.spec, dataset)
    return FineTuning(registry, run, dataset, graphs, protocol, split_task, split)


def fine_tunings(grid: Path | str | Mapping[str, Any], registry: Registry | None = None) -> Iterator[FineTuning]:
    """The fine-tuning runs of a grid (a grid file, or its table as a dict), in the grid's order,
    each set up as ``benchbase run`` sets it up (`FineTuning`); for research scripts such as
    learning curves (``tuner.fit(run.split, on_epoch=...)``). Nothing is stored. A run with a
    pretext task is pretrained first, into a temporary checkpoint that its tuner loads. The
    caller sets torch's thread count (``benchbase run`` uses the run's ``train.threads``). Raises
    `PluginError` when the grid has no run this machine can train, saying why."""
    registry = registry or default_registry()
    if isinstance(grid, Mapping):
        expanded = expand_grid(registry, dict(grid))
    else:
        expanded = load_grid(registry, grid)
    if not expanded.runs:
        reasons = sorted({f"{s.label}: {s.reason}" for s in expanded.skipped})
        raise PluginError("the grid has no run to fine-tune" + (": " + "; ".join(reasons) if reasons else ""))
    for run in expanded.runs:
        prepared = prepare_finetune(registry, run)
        stage = run.stage_spec()
        if stage is not None:
            with tempfile.TemporaryDirectory(prefix="benchbase-stage-") as folder:
                checkpoint = Path(folder) / "stage.pt"
                pretrain(registry, stage, checkpoint)
                prepared.tuner.load_pretrained(checkpoint)
        yield prepared


def run_finetune(registry: Registry, run: RunSpec, checkpoint: Path | None) -> RunOutcome:
    """Fine-tune and evaluate one run."""
    started = time.perf_counter()
    prepared = prepare_finetune(registry, run)
    dataset, graphs, protocol = prepared.dataset, prepared.graphs, prepared.protocol
    split_task, split, tuner = prepared.split_task, prepared.split, prepared.tuner
    if checkpoint is not None:
        tuner.load_pretrained(checkpoint)
    fit_info = tuner.fit(split)
    train_seconds = time.perf_counter() - started
    by_slice = {name: tuner.predict(indices) for name, indices in split.items() if name != "train"}
    pool, evaluation_pool = _finetuning_pool(run, protocol, split) if checkpoint is not None else (None, None)
    metrics: dict[str, dict[str, float]] = {}
    predictions: dict[str, dict[str, Predictions]] = {}
    for task in dataset.tasks:
        if tuner.weights[task.name] == 0:  # an untrained head: its numbers would mean nothing
            continue
        per_slice = {slice_name: preds[task.name] for slice_name, preds in by_slice.items()}
        per_slice = with_derived_slices(protocol, dataset, split, per_slice)
        metrics[task.name] = protocol.report(task, per_slice, dataset, split, pool)
        for slice_name, pred in per_slice.items():
            predictions.setdefault(slice_name, {})[task.name] = pred
    if protocol.evaluates_pretext and checkpoint is not None and split_task.name in metrics:
        evaluated = evaluate_pretext(registry, run, dataset, graphs, checkpoint, split["test"], evaluation_pool)
        if evaluated is not None:
            labels, class_names = evaluated
            metrics[split_task.name].update(protocol.report_pretext(labels, class_names))
            predictions["pretext"] = {split_task.name: labels}
    details = {
        "split_task": split_task.name,
        "n_params": count_parameters(tuner.encoder, tuner.heads),
        "fit": fit_info,
        "seconds": {"train": train_seconds, "total": time.perf_counter() - started},
        "tasks": {t.name: dataclasses.asdict(t) for t in dataset.tasks if t.name in metrics},
        **_skipped_inputs(dataset),
    }
    return RunOutcome(metrics=metrics, predictions=predictions, split=split, details=details)


def _finetuning_pool(run: RunSpec, protocol: Protocol, split: Split) -> tuple[np.ndarray | None, np.ndarray]:
    """(the graphs of the run's dataset that its pretraining pool held, for `Protocol.report`; the
    graphs its pretext task is prepared on for `evaluate_pretext`). With another pretraining dataset
    the first is None - the pool's statistics (the imbalance protocol's ``pool_nodes_<class>``) would
    count only part of a pool that is mostly elsewhere - and the second the train and valid graphs:
    what the task's preparation reads of the dataset whose held-out graphs it scores (vocabularies
    that come from the features, which the two datasets share)."""
    mode = run.train["pretrain_pool"]
    if "pretrain_dataset" in run.spec:
        return None, protocol.pretrain_pool(split, "train")
    pool = protocol.pretrain_pool(split, "train" if mode == "train" else "all")
    return pool, pool


def _skipped_inputs(dataset: Dataset) -> dict[str, Any]:
    """Inputs the dataset plugin could not use (unparsable records): counted and listed (the first
    100) in the run record, so that nothing is dropped silently."""
    skipped = list(dataset.skipped)
    return {"skipped_inputs": len(skipped), "skipped_examples": [list(item) for item in skipped[:100]]}
