"""The spec of one run, as the training loop reads it: typed accessors over its canonical JSON, its id,
and the pretraining stage it needs."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from benchbase.compute.settings import STAGE_SETTINGS, TrainSettings
from benchbase.contract.identity import content_hash
from benchbase.contract.kinds import METHOD_KINDS, NO_PRETEXT, RUN_KINDS


@dataclass(frozen=True)
class RunSpec:
    """One grid point. `spec` is canonical JSON-able data; the run id is its hash. `device` is
    where the run is placed (``cuda:1``, from the grid's ``device``); the spec's numerics hold
    only its type (``cuda``), since which GPU of a node runs it does not change its numbers."""

    spec: dict[str, Any]
    device: str | None = None

    @property
    def run_id(self) -> str:
        return content_hash(self.spec)

    def component(self, kind: str) -> tuple[str, dict[str, Any]]:
        part = self.spec[kind]
        return part["name"], part["params"]

    @property
    def seed(self) -> int:
        return int(self.spec["seed"])

    @functools.cached_property
    def train(self) -> TrainSettings:
        """The run's training settings, typed; the machine's (threads, device) from its numerics
        and placement."""
        numerics = self.spec["numerics"]
        return TrainSettings.of(
            {**self.spec["train"], "threads": int(numerics["threads"]), "device": self.device or numerics["device"]}
        )

    @property
    def threads(self) -> int:
        return int(self.spec["numerics"]["threads"])

    def label(self) -> str:
        names = [self.spec[k]["name"] for k in RUN_KINDS]
        pool = self.spec["train"].get("pretrain_pool")
        other = self.spec.get("pretrain_dataset")
        if other is not None:
            note = f" (pretrained on {other['name']}" + (f", pool {pool})" if pool != "all" else ")")
        else:
            note = f" (pool {pool})" if pool == "train" else ""
        return " | ".join(names) + note + f" | seed {self.seed}"

    def stage_spec(self) -> dict[str, Any] | None:
        """The pretraining stage this run needs (None without a pretext task). Runs whose stage
        specs are equal share one checkpoint: the stage depends on the protocol only when its pool
        is the protocol's train split.

        With another pretraining dataset (``pretrain_dataset``) the stage's dataset, its data key
        and its code fingerprint are those of the pretraining dataset; with ``pretrain_pool =
        "all"`` nothing of the fine-tuning dataset or protocol enters it, so that every run that
        pretrains the same way on that dataset - its own runs included - shares the stage. A pool
        that adds fine-tuning graphs (``all+finetune``, ``train``) names them under
        ``pool.finetune`` (dataset, data key, code) and ``pool.graphs`` (``"all"``, or the train
        split of a protocol and seed)."""
        if self.spec["pretext"]["name"] == NO_PRETEXT:
            return None
        train = self.spec["train"]
        code = self.spec["code"]
        kinds = list(METHOD_KINDS)
        graphs: Any = "all"
        if train["pretrain_pool"] == "train":
            graphs = {"train_of": self.spec["protocol"], "seed": self.seed}
            kinds.append("protocol")
        other = self.spec.get("pretrain_dataset")
        if other is None:
            dataset, dataset_code, data, pool = self.spec["dataset"], code["dataset"], self.spec.get("data"), graphs
        else:
            dataset, dataset_code, data = other, code["pretrain_dataset"], self.spec.get("pretrain_data")
            pool = "all"
            if train["pretrain_pool"] != "all":
                finetune = {"dataset": self.spec["dataset"], "code": code["dataset"], "data": self.spec.get("data")}
                pool = {"finetune": finetune, "graphs": graphs}
        return {
            "dataset": dataset,
            **{kind: self.spec[kind] for kind in kinds if kind != "protocol"},
            "pool": pool,
            "seed": self.seed,
            "train": {k: train[k] for k in STAGE_SETTINGS},
            "code": {"dataset": dataset_code, **{k: v for k, v in code.items() if k in kinds or k == "harness"}},
            "numerics": self.spec["numerics"],
            "data": data,
        }

    @property
    def stage_id(self) -> str | None:
        stage = self.stage_spec()
        return None if stage is None else content_hash(stage)
