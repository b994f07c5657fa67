"""Grid files -> run specifications.

A grid file is TOML::

    name = "smoke"
    profile = "quick"                 # a preset of training settings (see PROFILES)
    seeds = [0, 1]

    [train]                           # overrides of the profile's training settings
    epochs = 20

    [params.dataset."qm9/homo_lumo_gap"]   # plugin parameters, by kind and name
    subset = 3000
    [params.encoder.gin]
    hidden = 64

    [[study]]                         # the cartesian product of its axes
    datasets = ["qm9/homo_lumo_gap"]
    protocols = ["iid", "extrapolation-threshold"]
    encoders = ["gin"]
    pretext = ["none", "node-masking"]
    rebalancers = ["none", "inverse-frequency"]
    [study.params.encoder.gin]        # parameters for this study only
    layers = 3
    [study.sweep]                     # extra axes: dotted key -> list of values
    "encoder.gin.hidden" = [64, 128]
    "train.task_weights" = [{propensity = 0.4, bond_motion = 0.6}]

Several ``[[study]]`` blocks are unioned (identical runs are kept once). Sweep keys are
``train.<setting>`` or ``<kind>.<name>.<parameter>`` with kind one of dataset, protocol, encoder,
pretext, rebalancer.

Combinations that make no sense are skipped, with the reason, by these rules:
1. an encoder or pretext task whose ``requires`` a dataset does not ``provide`` is skipped;
2. a protocol whose ``requires`` (graph properties) the dataset does not provide, or which
   declares the dataset's task incompatible (`Protocol.incompatibility`), is skipped;
3. a rebalancer other than ``none`` needs a class-labelled loss to act on: a class-labelled
   pretext task, or a classification task in the dataset; otherwise the run is skipped
   (it would be identical to ``none``). A data-side rebalancer (``data_side``, which acts only by
   choosing what to corrupt) needs a pretext task that ``uses_selection_weights``;
4. an encoder with ``supports_pretext = False`` (it never sees the corrupted batch) runs with
   pretext ``none`` only;
5. a dataset whose data is not available (its plugin raises a `PluginError` when built or from
   `Dataset.check_available`) is skipped, with the plugin's message saying how to obtain it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchbase.api import PluginError
from benchbase.registry import Registry

PROFILES: dict[str, dict[str, Any]] = {
    # Sized for 2 CPU cores: small models, few epochs; tables made with it say "quick profile".
    "quick": {
        "epochs": 30,
        "patience": 6,
        "batch_size": 128,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "pretrain_epochs": 5,
        "pretrain_lr": 1e-3,
        "max_nodes": None,
        "task_weights": None,
        "few_label": None,
        "head_hidden": None,
    },
    # The literature's scale, meant for GPUs.
    "paper": {
        "epochs": 200,
        "patience": 30,
        "batch_size": 256,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "pretrain_epochs": 100,
        "pretrain_lr": 1e-3,
        "max_nodes": None,
        "task_weights": None,
        "few_label": None,
        "head_hidden": None,
    },
}
KIND_OF_AXIS = {
    "datasets": "dataset",
    "protocols": "protocol",
    "encoders": "encoder",
    "pretext": "pretext",
    "rebalancers": "rebalancer",
}
PLUGIN_KINDS = ("dataset", "protocol", "encoder", "pretext", "rebalancer")
NO_PRETEXT = "none"
NO_REBALANCER = "none"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(value: Any, length: int = 16) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:length]


@dataclass(frozen=True)
class RunSpec:
    """One grid point. `spec` is canonical JSON-able data; the run id is its hash."""

    spec: dict[str, Any]

    @property
    def run_id(self) -> str:
        return content_hash(self.spec)

    def component(self, kind: str) -> tuple[str, dict[str, Any]]:
        part = self.spec[kind]
        return part["name"], part["params"]

    @property
    def seed(self) -> int:
        return int(self.spec["seed"])

    @property
    def train(self) -> dict[str, Any]:
        return self.spec["train"]

    def label(self) -> str:
        names = [self.spec[k]["name"] for k in PLUGIN_KINDS]
        return " | ".join(names) + f" | seed {self.seed}"

    def stage_spec(self) -> dict[str, Any] | None:
        """The pretraining stage this run needs (None without a pretext task). Runs whose stage
        specs are equal share one checkpoint."""
        if self.spec["pretext"]["name"] == NO_PRETEXT:
            return None
        protocol = self.spec["protocol"]
        pool = "all"
        if protocol["params"].get("pretrain_pool") == "train":
            # The pool is the train+valid part of this protocol's split, which is a function of
            # (dataset, protocol, parameters, seed).
            pool = {"train_of": protocol, "seed": self.seed}
        train = self.spec["train"]
        return {
            "dataset": self.spec["dataset"],
            "encoder": self.spec["encoder"],
            "pretext": self.spec["pretext"],
            "rebalancer": self.spec["rebalancer"],
            "pool": pool,
            "seed": self.seed,
            "train": {k: train[k] for k in ("pretrain_epochs", "pretrain_lr", "batch_size", "max_nodes")},
            "versions": {k: v for k, v in self.spec["versions"].items() if k != "protocol"},
        }

    @property
    def stage_id(self) -> str | None:
        stage = self.stage_spec()
        return None if stage is None else content_hash(stage)


@dataclass(frozen=True)
class Skipped:
    label: str
    reason: str


@dataclass
class Grid:
    name: str
    profile: str
    seeds: list[int]
    runs: list[RunSpec] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    source: str = ""


def default_grid_path() -> Path:
    return Path(str(resources.files("benchbase.grids").joinpath("quick.toml")))


def read_grid_file(path: Path | str | None) -> tuple[dict[str, Any], str]:
    path = default_grid_path() if path is None else Path(path)
    if not path.is_file():
        raise PluginError(f"grid file {path} does not exist")
    try:
        return tomllib.loads(path.read_text()), str(path)
    except tomllib.TOMLDecodeError as exc:
        raise PluginError(f"grid file {path} is not valid TOML: {exc}") from None


def _merge_params(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for kind, by_name in (override or {}).items():
        if kind not in PLUGIN_KINDS:
            raise PluginError(f"unknown params kind {kind!r}; use one of {PLUGIN_KINDS}")
        for name, params in by_name.items():
            out.setdefault(kind, {}).setdefault(name, {}).update(params)
    return out


def _apply_sweep_value(params: dict, train: dict, key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head == "train":
        train[rest] = value
        return
    name, _, param = rest.rpartition(".")
    if head not in PLUGIN_KINDS or not name or not param:
        raise PluginError(f"sweep key {key!r} must be 'train.<setting>' or '<kind>.<name>.<parameter>'")
    params.setdefault(head, {}).setdefault(name, {})[param] = value


def _sweep_points(sweep: dict[str, list]) -> list[dict[str, Any]]:
    if not sweep:
        return [{}]
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise PluginError(f"sweep {key!r} must be a non-empty list of values")
    keys = sorted(sweep)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweep[k] for k in keys))]


def _plugin_params(registry: Registry, kind: str, name: str, given: dict) -> dict:
    """Defaults filled in and unknown keys rejected, so a typo is an error, not a silent no-op."""
    entry = registry.get(kind, name)
    defaults = getattr(entry.obj, "defaults", None)
    if defaults is None:  # dataset factories take whatever their plugin documents
        return dict(sorted(given.items()))
    unknown = set(given) - set(defaults)
    if unknown:
        raise PluginError(f"{kind} {name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return dict(sorted({**defaults, **given}.items()))


def _skip_reason(registry: Registry, spec: dict, datasets_cache: dict) -> str | None:
    from benchbase.loading import build_dataset

    dname, dparams = spec["dataset"]["name"], spec["dataset"]["params"]
    key = (dname, _canonical(dparams))
    if key not in datasets_cache:
        try:
            datasets_cache[key] = build_dataset(registry, dname, dparams)
            datasets_cache[key].check_available()
        except PluginError as exc:  # data not on this machine: skip its runs, say why
            datasets_cache[key] = f"dataset {dname!r} is not available: {exc}"
    dataset = datasets_cache[key]
    if isinstance(dataset, str):
        return dataset
    provides = set(dataset.provides)
    for kind in ("encoder", "pretext"):
        name = spec[kind]["name"]
        if kind == "pretext" and name == NO_PRETEXT:
            continue
        cls = registry.get(kind, name).obj
        missing = set(getattr(cls, "requires", ())) - provides
        if missing:
            return f"{kind} {name!r} needs {sorted(missing)}, which dataset {dname!r} does not provide"
    encoder_cls = registry.get("encoder", spec["encoder"]["name"]).obj
    if spec["pretext"]["name"] != NO_PRETEXT and not getattr(encoder_cls, "supports_pretext", True):
        return f"encoder {encoder_cls.name!r} never sees the corrupted input, so pretext tasks cannot train it"
    protocol_cls = registry.get("protocol", spec["protocol"]["name"]).obj
    missing = set(protocol_cls.requires) - provides
    if missing:
        return f"protocol {protocol_cls.name!r} needs {sorted(missing)}, which dataset {dname!r} does not provide"
    reason = protocol_cls(**spec["protocol"]["params"]).incompatibility(dataset)
    if reason:
        return reason
    if spec["rebalancer"]["name"] != NO_REBALANCER:
        pretext_name = spec["pretext"]["name"]
        labelled_pretext = pretext_name != NO_PRETEXT and registry.get("pretext", pretext_name).obj.class_labelled
        classification = any(t.kind == "classification" for t in dataset.tasks)
        if not (labelled_pretext or classification):
            why = "pretext 'none'" if pretext_name == NO_PRETEXT else f"pretext {pretext_name!r} has no class labels"
            return f"rebalancer has no class-labelled loss to act on ({why}, and every task is regression)"
        rebalancer_cls = registry.get("rebalancer", spec["rebalancer"]["name"]).obj
        if getattr(rebalancer_cls, "data_side", False):
            chooses = pretext_name != NO_PRETEXT and registry.get("pretext", pretext_name).obj.uses_selection_weights
            if not chooses:
                return f"data-side rebalancer {rebalancer_cls.name!r} needs a pretext task that chooses what to corrupt"
    return None


def expand_grid(registry: Registry, raw: dict[str, Any], source: str = "") -> Grid:
    """Expand a parsed grid file into run specs and skipped combinations."""
    profile = raw.get("profile", "quick")
    if profile not in PROFILES:
        raise PluginError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise PluginError("'seeds' must be a non-empty list of integers")
    unknown_train = set(raw.get("train", {})) - set(PROFILES[profile])
    if unknown_train:
        raise PluginError(f"unknown [train] setting(s) {sorted(unknown_train)}; known: {sorted(PROFILES[profile])}")
    base_train = {**PROFILES[profile], **raw.get("train", {})}
    base_params = _merge_params({}, raw.get("params", {}))
    studies = raw.get("study", [])
    if not studies:
        raise PluginError("the grid has no [[study]] block")
    grid = Grid(name=raw.get("name", "grid"), profile=profile, seeds=seeds, source=source)
    seen: set[str] = set()
    datasets_cache: dict = {}
    for number, study in enumerate(studies, 1):
        axes = {}
        for axis, kind in KIND_OF_AXIS.items():
            values = study.get(axis, ["none"] if kind in ("pretext", "rebalancer") else None)
            if not values:
                raise PluginError(f"study {number} lists no {axis}")
            for value in values:
                if not (kind == "pretext" and value == NO_PRETEXT):
                    registry.get(kind, value)  # unknown names are errors, listing what exists
            axes[kind] = values
        params = _merge_params(base_params, study.get("params", {}))
        for point in _sweep_points(study.get("sweep", {})):
            point_params, train = copy.deepcopy(params), dict(base_train)
            for key, value in point.items():
                _apply_sweep_value(point_params, train, key, value)
            unknown_train = set(train) - set(PROFILES[profile])
            if unknown_train:
                raise PluginError(f"unknown train setting(s) {sorted(unknown_train)} in sweep")
            for combo in itertools.product(*(axes[k] for k in PLUGIN_KINDS)):
                chosen = dict(zip(PLUGIN_KINDS, combo, strict=True))
                for seed in seeds:
                    spec = _make_spec(registry, chosen, point_params, train, seed, profile)
                    run = RunSpec(spec)
                    if run.run_id in seen:
                        continue
                    seen.add(run.run_id)
                    reason = _skip_reason(registry, spec, datasets_cache)
                    if reason:
                        grid.skipped.append(Skipped(run.label(), reason))
                    else:
                        grid.runs.append(run)
    return grid


def _make_spec(registry: Registry, chosen: dict, params: dict, train: dict, seed: int, profile: str) -> dict:
    spec: dict[str, Any] = {}
    versions = {}
    for kind, name in chosen.items():
        if kind == "pretext" and name == NO_PRETEXT:  # "no pretraining" is not a plugin
            spec[kind] = {"name": name, "params": {}}
            versions[kind] = "benchbase"
            continue
        given = params.get(kind, {}).get(name, {})
        spec[kind] = {"name": name, "params": _plugin_params(registry, kind, name, given)}
        versions[kind] = registry.version_of(kind, name)
    spec["train"] = dict(sorted(train.items()))
    spec["seed"] = seed
    spec["profile"] = profile
    spec["versions"] = versions
    return spec


def load_grid(registry: Registry, path: Path | str | None) -> Grid:
    raw, source = read_grid_file(path)
    return expand_grid(registry, raw, source)
