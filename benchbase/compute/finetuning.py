"""Stage two of a run: the fine-tuning loop (task heads, target standardisation, early stopping on the
validation split, prediction)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchbase.compute import loading
from benchbase.compute.batching import TensorGraphs, center_per_graph, concat_ranges, iterate_batches
from benchbase.compute.resume import EpochBatches, Snapshots, random_state, restore_random_state
from benchbase.compute.runspec import RunSpec
from benchbase.compute.runtime import adam, check_finite, device_of, on, optimiser_step, seed_everything
from benchbase.contract.api import (
    Dataset,
    Encoder,
    GraphBatch,
    PluginError,
    Predictions,
    Split,
    TaskInfo,
)
from benchbase.contract.errors import TrainingDiverged
from benchbase.contract.registry import Registry


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
        self.device = device_of(run.train.device)
        name, params = run.component("encoder")
        self.encoder: Encoder = loading.build_encoder(registry, name, params, dataset.features)
        self.encoder.prepare(dataset)
        probe = self._probe_edge_embedding()
        self.heads = TaskHeads(self.tasks, self.encoder.out_dim, probe, self.train_cfg.head_hidden)
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
        given = self.train_cfg.task_weights or {}
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
        few = self.train_cfg.few_label
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

    def fit(
        self,
        split: Split,
        on_epoch: Callable[[EpochEnd], None] | None = None,
        snapshots: Snapshots | None = None,
    ) -> dict[str, Any]:
        """Train on ``split["train"]`` with early stopping on ``split["valid"]``, then keep the best
        epoch's weights. `on_epoch`, if given, is called after each epoch's validation (learning
        curves); it must not change the model or draw from torch's global random generator, or
        the run would no longer be the one the harness makes. `snapshots`, if given, keeps the
        training state after every epoch - and after the step in progress when a pause is
        requested (`request_pause`; then `TrainingPaused` is raised, `EpochBatches.steps`) - and
        resumes from the one it holds (the same numbers as an uninterrupted fit; `on_epoch` sees
        only the epochs run in this call)."""
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
        optimizer = adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        best: tuple[float, int, Any] = (float("inf"), -1, None)
        history: list[float] = []
        saved = snapshots.load() if snapshots is not None else None
        position = None
        if saved is not None:
            best, history = self._restore(saved, optimizer)
            position = EpochBatches.saved(saved)
        for epoch in range(len(history), cfg.epochs):
            self.encoder.train()
            self.heads.train()
            batches = EpochBatches(self.graphs, train_idx, cfg.batch_size, self.generator, cfg.max_nodes, position)
            position = None
            # `best` and `history` change only between epochs: bound now, read at a pause.
            state = functools.partial(self._training_state, optimizer, best, history)
            for batch in batches.steps(snapshots, epoch, state):
                batch = self.dataset.augment(batch, self.generator)  # training batches only
                loss = self._loss(on(self.device, batch), training=True)
                check_finite(loss, f"fine-tuning epoch {epoch}")
                optimiser_step(optimizer, loss, params, cfg.grad_clip)
            valid_loss = self._evaluate_loss(valid_idx)
            history.append(valid_loss)
            if on_epoch is not None:
                on_epoch(EpochEnd(epoch, valid_loss, self))
            if valid_loss < best[0]:
                state = (copy.deepcopy(self.encoder.state_dict()), copy.deepcopy(self.heads.state_dict()))
                best = (valid_loss, epoch, state)
            elif epoch - best[1] >= cfg.patience:
                break
            if snapshots is not None:
                snapshots.save(epoch + 1, self._training_state(optimizer, best, history))
        if best[2] is None:
            raise TrainingDiverged("validation loss was never finite")
        self.encoder.load_state_dict(best[2][0])
        self.heads.load_state_dict(best[2][1])
        return {"best_epoch": best[1], "epochs_run": len(history), "best_valid_loss": best[0]}

    def _training_state(self, optimizer: torch.optim.Optimizer, best: tuple, history: list[float]) -> dict[str, Any]:
        """What the loop carries into the next epoch (`Snapshots`); reads, never draws."""
        return {
            "encoder": self.encoder.state_dict(),
            "heads": self.heads.state_dict(),
            "optimizer": optimizer.state_dict(),
            "best": {"loss": best[0], "epoch": best[1], "weights": list(best[2]) if best[2] else None},
            "history": history,
            "generator": self.generator.get_state(),
            "random": random_state(self.device),
        }

    def _restore(self, state: dict[str, Any], optimizer: torch.optim.Optimizer) -> tuple[tuple, list[float]]:
        """Put the model, optimiser and generators where a snapshot left them; (best, history)."""
        self.encoder.load_state_dict(state["encoder"])
        self.heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        restore_random_state(state["random"], self.device)
        b = state["best"]
        weights = None if b["weights"] is None else tuple(b["weights"])
        return (b["loss"], b["epoch"], weights), list(state["history"])

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
        return self.train_cfg.center_per_graph and task.level != "graph" and task.kind == "regression"

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
            batches = iterate_batches(self.graphs, indices, cfg.batch_size, max_nodes=cfg.max_nodes)
            cache[key] = [on(self.device, batch) for batch in batches]
        return cache[key]

    @torch.no_grad()
    def predict(self, indices: np.ndarray) -> dict[str, Predictions]:
        self.encoder.eval()
        self.heads.eval()
        rows: dict[str, list] = {t.name: [[], [], []] for t in self.tasks}
        for batch in iterate_batches(
            self.graphs, indices, self.train_cfg.batch_size, max_nodes=self.train_cfg.max_nodes
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
