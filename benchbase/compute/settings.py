"""The training settings of a grid (``[train]``): their schema, the profiles, and which of them
pretraining, the stage and the numerics read. One declaration, from which the rest is derived."""

from __future__ import annotations

from typing import Any

from benchbase.contract.params import Param, defaults_of

POOLS = ("all", "train", "all+finetune")
#: Most intra-op threads a run may ask for.
MAX_THREADS = 1024
#: The training settings of ``[train]`` (defaults: the quick profile).
TRAINING: dict[str, Param] = {
    "epochs": Param(30, "int", "fine-tuning epochs at most", min=1),
    "patience": Param(6, "int", "epochs without a better validation loss before stopping", min=1),
    "batch_size": Param(128, "int", "graphs per batch", min=1),
    "lr": Param(1e-3, "number", "fine-tuning learning rate (Adam)", min=0.0, min_open=True),
    "weight_decay": Param(0.0, "number", "fine-tuning weight decay", min=0.0),
    "pretrain_epochs": Param(5, "int", "pretraining epochs", min=1),
    "pretrain_lr": Param(1e-3, "number", "pretraining learning rate (Adam)", min=0.0, min_open=True),
    "pretrain_pool": Param(
        "all",
        "str",
        "all: pretraining sees every graph of the pretraining dataset, labels unseen; train: only the train and "
        "valid graphs of the run's split, so that the test region stays out of pretraining (with pretrain_dataset: "
        "that dataset's graphs and those); all+finetune: with pretrain_dataset, that dataset's graphs and every "
        "graph of the fine-tuning dataset (without it, the same as all)",
        choices=POOLS,
    ),
    "pretrain_dataset": Param(
        None,
        "str",
        "a registered dataset to pretrain on instead of the fine-tuning dataset (unset: the fine-tuning dataset), "
        'with the parameters the grid gives it ([params.dataset."<name>"]); its features must equal the '
        "fine-tuning dataset's. With pretrain_pool = all, runs on any dataset share its stage",
    ),
    "max_nodes": Param(None, "int", "cap on nodes per batch (large graphs)", min=1),
    "task_weights": Param(None, "dict", "loss weight per task name (unnamed tasks: 0)"),
    "few_label": Param(None, "dict", "{task, k}: keep only k labelled training graphs of a task"),
    "head_hidden": Param(None, "int", "width of two-layer MLP task heads (default: linear heads)", min=1),
    "grad_clip": Param(
        None, "number", "clip the gradient norm to this value (fine-tuning and pretraining)", min=0.0, min_open=True
    ),
    "center_per_graph": Param(
        False,
        "bool",
        "regression loss of node and edge tasks on targets and predictions each centred per graph, so that a "
        "per-graph offset of the target cannot dominate the loss (for per-graph metrics such as a Pearson r per graph)",
    ),
    # The cap: far above any machine's cores, far below the counts at which torch's thread pool
    # crashes the process (a typo such as 100000 ended in a segfault, not a message).
    "threads": Param(
        1, "int", "intra-op threads of each run, whatever --jobs is: results depend on it", min=1, max=MAX_THREADS
    ),
    "device": Param("cpu", "str", "where runs train: cpu, cuda, cuda:N, or auto (cuda when available)"),
}
PROFILES: dict[str, dict[str, Any]] = {
    # Sized for 2 CPU cores: small models, few epochs; tables made with it say "quick profile".
    "quick": defaults_of(TRAINING),
    # The literature's scale, meant for GPUs.
    "paper": {**defaults_of(TRAINING), "epochs": 200, "patience": 30, "batch_size": 256, "pretrain_epochs": 100},
}
#: Settings that only pretraining reads: absent from the spec of a run without a pretext task.
PRETRAINING_SETTINGS = ("pretrain_epochs", "pretrain_lr", "pretrain_pool", "pretrain_dataset")
#: Settings of the machine rather than the method: they go to the spec's ``numerics``.
NUMERICS_SETTINGS = ("threads", "device")
#: What a pretraining stage reads of the training settings.
STAGE_SETTINGS = ("pretrain_epochs", "pretrain_lr", "batch_size", "max_nodes", "grad_clip", "center_per_graph")
