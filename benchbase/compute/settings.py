"""The training settings of a grid (``[train]``), declared once as the typed `TrainSettings`: each
field's type, default (the quick profile), allowed values and which stage reads it. The schema
(`TRAINING`), the profiles and the setting groups that planning and the stage spec use are derived
from that one declaration."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from benchbase.contract.params import Param, defaults_of

POOLS = ("all", "train", "all+finetune")
#: Most intra-op threads a run may ask for.
MAX_THREADS = 1024

# Who reads a setting. It decides where a setting enters a spec: settings only pretraining reads
# are left out of the spec of a run without a pretext task (changing them re-runs nothing they
# cannot affect); a pretraining stage's spec holds those pretraining reads; the machine's settings
# go to the spec's ``numerics``.
FINE_TUNING = "fine-tuning"
PRETRAINING = "pretraining"
BOTH = "both"
#: Which graphs pretraining sees: entered in the stage spec as its dataset and pool, not as settings.
POOL = "pool"
MACHINE = "machine"


def setting(read_by: str, default: Any, *args: Any, **kwargs: Any) -> Any:
    """A field of `TrainSettings`: its `Param` (type, allowed values, help) and who reads it."""
    param = Param(default, *args, **kwargs)
    return dataclasses.field(default=default, metadata={"param": param, "read_by": read_by})


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The training settings of one run, typed. Built from a spec's ``train`` section (`of`);
    settings a spec leaves out (those of pretraining, in a run without a pretext task) keep their
    defaults, which nothing then reads."""

    epochs: int = setting(FINE_TUNING, 30, "int", "fine-tuning epochs at most", min=1)
    patience: int = setting(FINE_TUNING, 6, "int", "epochs without a better validation loss before stopping", min=1)
    batch_size: int = setting(BOTH, 128, "int", "graphs per batch", min=1)
    lr: float = setting(FINE_TUNING, 1e-3, "number", "fine-tuning learning rate (Adam)", min=0.0, min_open=True)
    weight_decay: float = setting(FINE_TUNING, 0.0, "number", "fine-tuning weight decay", min=0.0)
    pretrain_epochs: int = setting(PRETRAINING, 5, "int", "pretraining epochs", min=1)
    pretrain_lr: float = setting(
        PRETRAINING, 1e-3, "number", "pretraining learning rate (Adam)", min=0.0, min_open=True
    )
    pretrain_pool: str = setting(
        POOL,
        "all",
        "str",
        "all: pretraining sees every graph of the pretraining dataset, labels unseen; train: only the train and "
        "valid graphs of the run's split, so that the test region stays out of pretraining (with pretrain_dataset: "
        "that dataset's graphs and those); all+finetune: with pretrain_dataset, that dataset's graphs and every "
        "graph of the fine-tuning dataset (without it, the same as all)",
        choices=POOLS,
    )
    pretrain_dataset: str | None = setting(
        POOL,
        None,
        "str",
        "a registered dataset to pretrain on instead of the fine-tuning dataset (unset: the fine-tuning dataset), "
        'with the parameters the grid gives it ([params.dataset."<name>"]); its features must equal the '
        "fine-tuning dataset's. With pretrain_pool = all, runs on any dataset share its stage",
    )
    max_nodes: int | None = setting(BOTH, None, "int", "cap on nodes per batch (large graphs)", min=1)
    task_weights: dict[str, float] | None = setting(
        FINE_TUNING, None, "dict", "loss weight per task name (unnamed tasks: 0)"
    )
    few_label: dict[str, Any] | None = setting(
        FINE_TUNING, None, "dict", "{task, k}: keep only k labelled training graphs of a task"
    )
    head_hidden: int | None = setting(
        FINE_TUNING, None, "int", "width of two-layer MLP task heads (default: linear heads)", min=1
    )
    grad_clip: float | None = setting(
        BOTH,
        None,
        "number",
        "clip the gradient norm to this value (fine-tuning and pretraining)",
        min=0.0,
        min_open=True,
    )
    center_per_graph: bool = setting(
        BOTH,
        False,
        "bool",
        "regression loss of node and edge tasks on targets and predictions each centred per graph, so that a "
        "per-graph offset of the target cannot dominate the loss (for per-graph metrics such as a Pearson r per graph)",
    )
    # The cap: far above any machine's cores, far below the counts at which torch's thread pool
    # crashes the process (a typo such as 100000 ended in a segfault, not a message).
    threads: int = setting(
        MACHINE,
        1,
        "int",
        "intra-op threads of each run, whatever --jobs is: results depend on it",
        min=1,
        max=MAX_THREADS,
    )
    device: str = setting(MACHINE, "cpu", "str", "where runs train: cpu, cuda, cuda:N, or auto (cuda when available)")

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> TrainSettings:
        return cls(**values)


def _read_by(*who: str) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrainSettings) if f.metadata["read_by"] in who)


#: The training settings of ``[train]`` (defaults: the quick profile), as parameters.
TRAINING: dict[str, Param] = {f.name: f.metadata["param"] for f in dataclasses.fields(TrainSettings)}
PROFILES: dict[str, dict[str, Any]] = {
    # Sized for 2 CPU cores: small models, few epochs; tables made with it say "quick profile".
    "quick": defaults_of(TRAINING),
    # The literature's scale, meant for GPUs.
    "paper": {**defaults_of(TRAINING), "epochs": 200, "patience": 30, "batch_size": 256, "pretrain_epochs": 100},
}
#: Settings that only pretraining reads: absent from the spec of a run without a pretext task.
PRETRAINING_SETTINGS = _read_by(PRETRAINING, POOL)
#: Settings of the machine rather than the method: they go to the spec's ``numerics``.
NUMERICS_SETTINGS = _read_by(MACHINE)
#: What a pretraining stage reads of the training settings (its spec's ``train``).
STAGE_SETTINGS = _read_by(PRETRAINING, BOTH)
