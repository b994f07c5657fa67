"""Reading a run's spec: what tells two leaderboard rows apart, as flat dotted settings, which data
set a run's tables are about, and whether the installed code still computes it. Shared by planning
(`benchbase.running.analysis`), the tables (`benchbase.reporting.tables`), the comparisons
(`benchbase.reporting.findings`), `benchbase.reporting.until_decided` and `benchbase.running.doctor`."""

from __future__ import annotations

import json
from typing import Any

from benchbase.compute.adapters import dataset_label
from benchbase.contract.kinds import METHOD_KINDS


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys down to single settings; a setting's value stays whole even when it is a table
    (``train.task_weights``), so that it reads as one setting in the table."""
    out: dict[str, Any] = {}
    for section, value in config.items():
        if section in METHOD_KINDS:
            out[f"{section}.name"] = value["name"]
            out.update({f"{section}.params.{k}": v for k, v in value["params"].items()})
        else:
            out.update({f"{section}.{k}": v for k, v in value.items()})
    return out


def config_of(spec: dict[str, Any]) -> dict[str, Any]:
    """What distinguishes a row: everything but the seed and the identity (the protocol is the table)."""
    config = {
        "dataset": spec["dataset"]["params"],
        "encoder": spec["encoder"],
        "pretext": spec["pretext"],
        "rebalancer": spec["rebalancer"],
        "train": spec["train"],
    }
    if "pretrain_dataset" in spec:  # its parameters tell two transfer rows apart (its name is a setting)
        config["pretrain_dataset"] = spec["pretrain_dataset"]["params"]
    return config


def build_of(spec: dict[str, Any]) -> dict[str, str]:
    """The code and numerics of a run: the fingerprint of each part that computes it (the harness,
    and each plugin by kind and name: one distribution holds plugins of several fingerprints) plus
    ``numerics``."""
    build = {}
    for kind, value in (spec.get("code") or {}).items():
        build[kind if kind == "harness" else f"{kind} {spec[kind]['name']}"] = value
    build["numerics"] = json.dumps(spec.get("numerics"), sort_keys=True)
    return build


def table_dataset(spec: dict[str, Any]) -> str:
    """The data set a run's tables are about: its registered name, and for an adapter that serves
    many data sets under one name (``csv``, ``pyg``) which one (`benchbase.compute.adapters.dataset_label`)."""
    return dataset_label(spec["dataset"]["name"], spec["dataset"]["params"])


def is_stale(spec: dict[str, Any], current_code: dict[str, set[str]]) -> bool:
    """Whether a run was computed by code other than what is installed now."""
    if "code" not in spec:
        return True
    for value in spec["code"].values():
        distribution, _, fingerprint = value.partition(" ")
        if fingerprint not in current_code.get(distribution, {fingerprint}):
            return True
    return False
