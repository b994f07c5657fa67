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
    [study.train]                     # training settings for this study only
    pretrain_pool = "train"
    [study.params.encoder.gin]        # parameters for this study only
    layers = 3
    [study.sweep]                     # extra axes: dotted key -> list of values
    "encoder.gin.hidden" = [64, 128]
    "train.task_weights" = [{propensity = 0.4, bond_motion = 0.6}]

    [analysis]                        # how leaderboards compare rows (see benchbase.findings)
    rope = { mae = 0.01 }             # region of practical equivalence per metric
    [[question]]                      # research questions answered in FINDINGS.md
    ...

Several ``[[study]]`` blocks are unioned (identical runs are kept once). Sweep keys are
``train.<setting>`` or ``<kind>.<name>.<parameter>`` with kind one of dataset, protocol, encoder,
pretext, rebalancer.

A run's spec is canonical JSON; its id is the spec's hash (`RunSpec.run_id`). Besides the plugins,
their parameters, the training settings and the seed, the spec holds the run's ``code``
fingerprints and ``numerics`` (see `benchbase.identity`). Settings that only pretraining reads
(`PRETRAINING_SETTINGS`) are left out of the spec of a run without a pretext task, so changing them
never re-runs the runs they cannot affect.

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
   `Dataset.check_available`) is skipped, with the plugin's message saying how to obtain it;
6. a pretext task that reads labels (``reads_labels``) pretrains only with ``pretrain_pool =
   "train"``: on the whole dataset it would see the test labels.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchbase.errors import DataUnavailable, GridError, PluginError
from benchbase.identity import harness_distribution, numerics
from benchbase.params import Param, defaults_of, validate
from benchbase.registry import Registry

POOLS = ("all", "train")
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
        "all: pretraining sees every graph of the dataset, labels unseen; train: only the train and valid "
        "graphs of the run's split, so that the test region stays out of pretraining",
        choices=POOLS,
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
    "threads": Param(1, "int", "intra-op threads of each run, whatever --jobs is: results depend on it", min=1),
    "device": Param("cpu", "str", "where runs train: cpu, cuda, cuda:N, or auto (cuda when available)"),
}
PROFILES: dict[str, dict[str, Any]] = {
    # Sized for 2 CPU cores: small models, few epochs; tables made with it say "quick profile".
    "quick": defaults_of(TRAINING),
    # The literature's scale, meant for GPUs.
    "paper": {**defaults_of(TRAINING), "epochs": 200, "patience": 30, "batch_size": 256, "pretrain_epochs": 100},
}
#: Settings that only pretraining reads: absent from the spec of a run without a pretext task.
PRETRAINING_SETTINGS = ("pretrain_epochs", "pretrain_lr", "pretrain_pool")
#: Settings of the machine rather than the method: they go to the spec's ``numerics``.
NUMERICS_SETTINGS = ("threads", "device")
#: What a pretraining stage reads of the training settings.
STAGE_SETTINGS = ("pretrain_epochs", "pretrain_lr", "batch_size", "max_nodes", "grad_clip", "center_per_graph")

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
TOP_LEVEL_KEYS = {"name", "profile", "seeds", "train", "params", "study", "analysis", "question", "executor"}
STUDY_KEYS = set(KIND_OF_AXIS) | {"params", "sweep", "train"}


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

    @property
    def threads(self) -> int:
        return int(self.spec["numerics"]["threads"])

    def label(self) -> str:
        names = [self.spec[k]["name"] for k in PLUGIN_KINDS]
        pool = self.spec["train"].get("pretrain_pool")
        return " | ".join(names) + (f" (pool {pool})" if pool == "train" else "") + f" | seed {self.seed}"

    def stage_spec(self) -> dict[str, Any] | None:
        """The pretraining stage this run needs (None without a pretext task). Runs whose stage
        specs are equal share one checkpoint: the stage depends on the protocol only when its pool
        is the protocol's train split."""
        if self.spec["pretext"]["name"] == NO_PRETEXT:
            return None
        train = self.spec["train"]
        kinds = ["dataset", "encoder", "pretext", "rebalancer"]
        pool: Any = "all"
        if train["pretrain_pool"] == "train":
            pool = {"train_of": self.spec["protocol"], "seed": self.seed}
            kinds.append("protocol")
        return {
            **{kind: self.spec[kind] for kind in kinds if kind != "protocol"},
            "pool": pool,
            "seed": self.seed,
            "train": {k: train[k] for k in STAGE_SETTINGS},
            "code": {k: v for k, v in self.spec["code"].items() if k in kinds or k == "harness"},
            "numerics": self.spec["numerics"],
            "data": self.spec.get("data"),
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
    #: The ``[analysis]`` table and ``[[question]]`` blocks, kept for leaderboards and FINDINGS.md.
    analysis: dict[str, Any] = field(default_factory=dict)
    questions: list[dict[str, Any]] = field(default_factory=list)
    #: ``[executor.<name>]`` tables: options of each executor (`benchbase.executors`).
    executor: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The ``[[study]]`` (1-based) each run comes from (the first that produced it).
    study_of: dict[str, int] = field(default_factory=dict)


def default_grid_path() -> Path:
    return builtin_grid_path("quick.toml")


def builtin_grid_path(name: str) -> Path:
    return Path(str(resources.files("benchbase.grids").joinpath(name)))


def read_grid_file(path: Path | str | None) -> tuple[dict[str, Any], str]:
    """The grid's TOML and the name it is shown under. The built-in default is shown as
    ``grids/quick.toml`` wherever the package is installed, so that generated leaderboards do not
    depend on the install location."""
    source = f"grids/{default_grid_path().name}" if path is None else str(path)
    path = default_grid_path() if path is None else Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        return tomllib.loads(path.read_text()), source
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"grid file {path} is not valid TOML: {exc}") from None


Origins = dict[tuple[str, str, str], str]


def _merge_params(base: dict, override: Any, where: str, origins: Origins) -> dict:
    """`override` (``{kind: {name: {key: value}}}`` from table `where`) over `base`; records in
    `origins` which table each value came from, for error messages."""
    out = copy.deepcopy(base)
    if not isinstance(override, dict):
        raise GridError(f"{where} must be a table of plugin kinds")
    for kind, by_name in override.items():
        if kind not in PLUGIN_KINDS:
            raise GridError(f"{where}: unknown plugin kind {kind!r}; use one of {list(PLUGIN_KINDS)}")
        if not isinstance(by_name, dict) or not all(isinstance(p, dict) for p in by_name.values()):
            raise GridError(f"{where}.{kind} must hold one table of parameters per {kind} name")
        for name, params in by_name.items():
            out.setdefault(kind, {}).setdefault(name, {}).update(params)
            for key in params:
                origins[(kind, name, key)] = f'{where}.{kind}."{name}"]'
    return out


def _apply_sweep_value(params: dict, train: dict, key: str, value: Any, where: str, origins: Origins) -> None:
    head, _, rest = key.partition(".")
    if head == "train":
        train[rest] = value
        return
    name, _, param = rest.rpartition(".")
    if head not in PLUGIN_KINDS or not name or not param:
        raise GridError(f"{where}: sweep key {key!r} must be 'train.<setting>' or '<kind>.<name>.<parameter>'")
    params.setdefault(head, {}).setdefault(name, {})[param] = value
    origins[(head, name, param)] = f'{where} "{key}"'


def _sweep_points(sweep: Any, where: str) -> list[dict[str, Any]]:
    if not sweep:
        return [{}]
    if not isinstance(sweep, dict):
        raise GridError(f"{where} must be a table of dotted keys to lists of values")
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"{where}: {key!r} must be a non-empty list of values")
    keys = sorted(sweep)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweep[k] for k in keys))]


def _plugin_params(registry: Registry, kind: str, name: str, given: dict, where: str, origins: Origins) -> dict:
    """Defaults filled in; unknown keys, wrong types and values out of range rejected, naming the
    table each value came from - a typo is an error, never a silent no-op."""
    by_key = {key: origins.get((kind, name, key), where) for key in given}
    return validate(registry.get(kind, name).param_spec, given, f"{where}: {kind} {name!r}", by_key)


def _check_train(train: dict, where: str) -> None:
    validate(TRAINING, train, where)
    device = train.get("device", "cpu")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise GridError(f"{where}: device must be auto, cpu, cuda or cuda:N, got {device!r}")


def resolve_device(device: str) -> str:
    """The device type a run's identity holds: ``auto`` becomes cuda where torch sees a GPU, else
    cpu; ``cuda:N`` is cuda (which GPU of a node runs it does not change its numbers), and N is
    passed to local jobs through ``BENCHBASE_CUDA_DEVICE``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda:"):
        os.environ["BENCHBASE_CUDA_DEVICE"] = device.split(":", 1)[1]
        return "cuda"
    return device


def _dataset(registry: Registry, spec: dict, datasets_cache: dict, where: str) -> Any:
    """The run's dataset, or the reason it is not available on this machine (a `DataUnavailable`
    from the plugin). Any other error of the plugin stops the grid with its message."""
    from benchbase.loading import build_dataset

    dname, dparams = spec["dataset"]["name"], spec["dataset"]["params"]
    key = (dname, _canonical(dparams))
    if key not in datasets_cache:
        try:
            datasets_cache[key] = build_dataset(registry, dname, dparams)
            datasets_cache[key].check_available()
        except DataUnavailable as exc:  # data not on this machine: skip its runs, say why
            datasets_cache[key] = f"dataset {dname!r} is not available: {exc}"
        except GridError:
            raise
        except PluginError as exc:
            raise GridError(f"{where}: dataset {dname!r}: {exc}") from None
    return datasets_cache[key]


def _check_buildable(registry: Registry, spec: dict, dataset: Any, built: set, where: str) -> None:
    """Build each distinct plugin configuration once, so that what only its constructor checks
    (a width that must divide by the heads, r1 <= k < r2) fails at planning, not as failed runs."""
    from benchbase import loading

    for kind in ("protocol", "encoder", "pretext", "rebalancer"):
        name, params = spec[kind]["name"], spec[kind]["params"]
        if name == NO_PRETEXT and kind in ("pretext", "rebalancer"):
            continue
        key = (kind, name, _canonical(params), repr(dataset.features) if kind == "encoder" else "")
        if key in built:
            continue
        try:
            if kind == "encoder":
                loading.build_encoder(registry, name, params, dataset.features)
            else:
                getattr(loading, f"build_{kind}")(registry, name, params)
        except GridError:
            raise
        except PluginError as exc:  # plugins name themselves in their messages
            raise GridError(f"{where}: {exc}") from None
        except Exception as exc:  # a value its declaration let through, which the plugin cannot take
            raise GridError(
                f"{where}: {kind} {name!r} cannot be built with {params}: {type(exc).__name__}: {exc}"
            ) from None
        built.add(key)


def _skip_reason(registry: Registry, spec: dict, dataset: Any) -> str | None:
    if isinstance(dataset, str):
        return dataset
    dname = spec["dataset"]["name"]
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
    pretext_name = spec["pretext"]["name"]
    if pretext_name != NO_PRETEXT and not getattr(encoder_cls, "supports_pretext", True):
        return f"encoder {encoder_cls.name!r} never sees the corrupted input, so pretext tasks cannot train it"
    if pretext_name != NO_PRETEXT and getattr(registry.get("pretext", pretext_name).obj, "reads_labels", False):
        if spec["train"]["pretrain_pool"] != "train":
            return f"pretext {pretext_name!r} reads labels, so it pretrains only with pretrain_pool = 'train'"
    protocol_cls = registry.get("protocol", spec["protocol"]["name"]).obj
    missing = set(protocol_cls.requires) - provides
    if missing:
        return f"protocol {protocol_cls.name!r} needs {sorted(missing)}, which dataset {dname!r} does not provide"
    reason = protocol_cls(**spec["protocol"]["params"]).incompatibility(dataset)
    if reason:
        return reason
    if spec["rebalancer"]["name"] != NO_REBALANCER:
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


def _list_of(value: Any, what: str, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise GridError(f"{where}: {what} must be a non-empty list")
    return value


def expand_grid(registry: Registry, raw: dict[str, Any], source: str = "") -> Grid:
    """Expand a parsed grid file into run specs and skipped combinations; every value is checked
    here, so that a bad grid fails at ``--dry-run`` with one line naming the file, table and key."""
    where = source or "grid"
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise GridError(f"{where}: unknown top-level key(s) {sorted(unknown)}; known: {sorted(TOP_LEVEL_KEYS)}")
    profile = raw.get("profile", "quick")
    if profile not in PROFILES:
        raise GridError(f"{where}: profile must be one of {sorted(PROFILES)}, got {profile!r}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise GridError(f"{where}: seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    if not isinstance(raw.get("name", "grid"), str):
        raise GridError(f"{where}: name must be a string")
    _check_train(raw.get("train", {}), f"{where} [train]")
    base_train = {**PROFILES[profile], **raw.get("train", {})}
    origins: Origins = {}
    base_params = _merge_params({}, raw.get("params", {}), f"{where} [params", origins)
    studies = raw.get("study", [])
    if not studies or not isinstance(studies, list):
        raise GridError(f"{where}: the grid has no [[study]] block")
    grid = Grid(
        name=raw.get("name", "grid"),
        profile=profile,
        seeds=seeds,
        source=source,
        analysis=raw.get("analysis", {}),
        questions=raw.get("question", []),
        executor=raw.get("executor", {}),
    )
    if not isinstance(grid.executor, dict) or not all(isinstance(v, dict) for v in grid.executor.values()):
        raise GridError(f"{where}: [executor] must hold one table of options per executor name")
    seen: set[str] = set()
    datasets_cache: dict = {}
    built: set = set()
    for number, study in enumerate(studies, 1):
        here = f"{where} [[study]] {number}"
        if not isinstance(study, dict):
            raise GridError(f"{here} must be a table")
        unknown = set(study) - STUDY_KEYS
        if unknown:
            raise GridError(f"{here}: unknown key(s) {sorted(unknown)}; known: {sorted(STUDY_KEYS)}")
        axes = {}
        for axis, kind in KIND_OF_AXIS.items():
            values = _list_of(study.get(axis, ["none"] if kind in ("pretext", "rebalancer") else None), axis, here)
            for value in values:
                if not (kind == "pretext" and value == NO_PRETEXT):
                    try:
                        registry.get(kind, value)  # unknown names are errors, listing what exists
                    except GridError as exc:
                        raise GridError(f"{here} {axis}: {exc}") from None
            axes[kind] = values
        study_origins = dict(origins)
        params = _merge_params(base_params, study.get("params", {}), f"{here} [study.params", study_origins)
        _check_train(study.get("train", {}), f"{here} [study.train]")
        study_train = {**base_train, **study.get("train", {})}
        for point in _sweep_points(study.get("sweep", {}), f"{here} [study.sweep]"):
            point_params, train, point_origins = copy.deepcopy(params), dict(study_train), dict(study_origins)
            for key, value in point.items():
                _apply_sweep_value(point_params, train, key, value, f"{here} [study.sweep]", point_origins)
            _check_train(train, f"{here} [study.sweep]")
            for combo in itertools.product(*(axes[k] for k in PLUGIN_KINDS)):
                chosen = dict(zip(PLUGIN_KINDS, combo, strict=True))
                for seed in seeds:
                    spec = make_spec(registry, chosen, point_params, train, seed, profile, here, point_origins)
                    dataset = _dataset(registry, spec, datasets_cache, here)
                    if not isinstance(dataset, str) and dataset.content_key() is not None:
                        spec["data"] = dataset.content_key()
                    run = RunSpec(spec)
                    if run.run_id in seen:
                        continue
                    seen.add(run.run_id)
                    if not isinstance(dataset, str):
                        _check_buildable(registry, spec, dataset, built, here)
                    reason = _skip_reason(registry, spec, dataset)
                    if reason:
                        grid.skipped.append(Skipped(run.label(), reason))
                    else:
                        grid.runs.append(run)
                        grid.study_of[run.run_id] = number
    return grid


def make_spec(
    registry: Registry,
    chosen: dict,
    params: dict,
    train: dict,
    seed: int,
    profile: str,
    where: str = "run",
    origins: Origins | None = None,
) -> dict:
    """The canonical spec of one run: plugins with their full parameters, training settings, seed,
    and the identity parts (code fingerprints and numerics)."""
    spec: dict[str, Any] = {}
    code = {"harness": f"{harness_distribution()} {registry.harness_fingerprint()}"}
    for kind, name in chosen.items():
        if kind == "pretext" and name == NO_PRETEXT:  # "no pretraining" is not a plugin
            spec[kind] = {"name": name, "params": {}}
            continue
        given = params.get(kind, {}).get(name, {})
        spec[kind] = {"name": name, "params": _plugin_params(registry, kind, name, given, where, origins or {})}
        entry = registry.get(kind, name)
        code[kind] = f"{entry.distribution} {entry.fingerprint}"
    settings = {k: v for k, v in train.items() if k not in NUMERICS_SETTINGS}
    if chosen["pretext"] == NO_PRETEXT:
        settings = {k: v for k, v in settings.items() if k not in PRETRAINING_SETTINGS}
    spec["train"] = dict(sorted(settings.items()))
    spec["seed"] = seed
    spec["profile"] = profile
    spec["code"] = dict(sorted(code.items()))
    spec["numerics"] = numerics(resolve_device(train["device"]), train["threads"])
    return spec


def respec(registry: Registry, spec: dict[str, Any]) -> dict[str, Any]:
    """The same run under the code and numerics of this process (for `benchbase reproduce`)."""
    chosen = {kind: spec[kind]["name"] for kind in PLUGIN_KINDS}
    params = {kind: {spec[kind]["name"]: spec[kind]["params"]} for kind in PLUGIN_KINDS}
    train = {**PROFILES[spec["profile"]], **spec["train"]}
    train.update({k: spec["numerics"][k] for k in NUMERICS_SETTINGS})
    fresh = make_spec(registry, chosen, params, train, int(spec["seed"]), spec["profile"])
    from benchbase.loading import build_dataset

    key = build_dataset(registry, *RunSpec(fresh).component("dataset")).content_key()
    if key is not None:
        fresh["data"] = key
    return fresh


def load_grid(registry: Registry, path: Path | str | None, device: str | None = None) -> Grid:
    """A grid file expanded; `device` (from ``--device``) overrides every study's ``train.device``."""
    raw, source = read_grid_file(path)
    if device is not None:
        raw = {**raw, "train": {**raw.get("train", {}), "device": device}}
        for study in raw.get("study", []):
            if isinstance(study, dict) and isinstance(study.get("train"), dict):
                study["train"].pop("device", None)
            if isinstance(study, dict) and isinstance(study.get("sweep"), dict):
                study["sweep"].pop("train.device", None)
    return expand_grid(registry, raw, source)
