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
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchbase.errors import GridError, PluginError
from benchbase.identity import harness_distribution, numerics
from benchbase.registry import Registry

_COMMON: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "pretrain_lr": 1e-3,
    # "all": pretraining sees every graph of the dataset, labels unseen; "train": only the train and
    # valid graphs of the run's split, so that the test region stays out of pretraining.
    "pretrain_pool": "all",
    "max_nodes": None,
    "task_weights": None,
    "few_label": None,
    "head_hidden": None,
    "grad_clip": None,
    "threads": 1,  # intra-op threads of each run, whatever --jobs is: results depend on it
    "device": "cpu",
}
PROFILES: dict[str, dict[str, Any]] = {
    # Sized for 2 CPU cores: small models, few epochs; tables made with it say "quick profile".
    "quick": {**_COMMON, "epochs": 30, "patience": 6, "batch_size": 128, "pretrain_epochs": 5},
    # The literature's scale, meant for GPUs.
    "paper": {**_COMMON, "epochs": 200, "patience": 30, "batch_size": 256, "pretrain_epochs": 100},
}
#: Settings that only pretraining reads: absent from the spec of a run without a pretext task.
PRETRAINING_SETTINGS = ("pretrain_epochs", "pretrain_lr", "pretrain_pool")
#: Settings of the machine rather than the method: they go to the spec's ``numerics``.
NUMERICS_SETTINGS = ("threads", "device")
#: What a pretraining stage reads of the training settings.
STAGE_SETTINGS = ("pretrain_epochs", "pretrain_lr", "batch_size", "max_nodes", "grad_clip")
POOLS = ("all", "train")

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


def default_grid_path() -> Path:
    return builtin_grid_path("quick.toml")


def builtin_grid_path(name: str) -> Path:
    return Path(str(resources.files("benchbase.grids").joinpath(name)))


def read_grid_file(path: Path | str | None) -> tuple[dict[str, Any], str]:
    path = default_grid_path() if path is None else Path(path)
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        return tomllib.loads(path.read_text()), str(path)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"grid file {path} is not valid TOML: {exc}") from None


def _merge_params(base: dict, override: dict, where: str) -> dict:
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
    return out


def _apply_sweep_value(params: dict, train: dict, key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head == "train":
        train[rest] = value
        return
    name, _, param = rest.rpartition(".")
    if head not in PLUGIN_KINDS or not name or not param:
        raise GridError(f"sweep key {key!r} must be 'train.<setting>' or '<kind>.<name>.<parameter>'")
    params.setdefault(head, {}).setdefault(name, {})[param] = value


def _sweep_points(sweep: dict[str, list]) -> list[dict[str, Any]]:
    if not sweep:
        return [{}]
    for key, values in sweep.items():
        if not isinstance(values, list) or not values:
            raise GridError(f"sweep {key!r} must be a non-empty list of values")
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
        raise GridError(f"{kind} {name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return dict(sorted({**defaults, **given}.items()))


def _check_train(train: dict, known: dict, where: str) -> None:
    unknown = set(train) - set(known)
    if unknown:
        raise GridError(f"{where}: unknown training setting(s) {sorted(unknown)}; known: {sorted(known)}")
    if train.get("pretrain_pool", "all") not in POOLS:
        raise GridError(f"{where}: pretrain_pool must be one of {list(POOLS)}, got {train['pretrain_pool']!r}")
    if not isinstance(train.get("threads", 1), int) or train.get("threads", 1) < 1:
        raise GridError(f"{where}: threads must be a positive integer, got {train['threads']!r}")


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


def expand_grid(registry: Registry, raw: dict[str, Any], source: str = "") -> Grid:
    """Expand a parsed grid file into run specs and skipped combinations."""
    where = source or "grid"
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise GridError(f"{where}: unknown top-level key(s) {sorted(unknown)}; known: {sorted(TOP_LEVEL_KEYS)}")
    profile = raw.get("profile", "quick")
    if profile not in PROFILES:
        raise GridError(f"{where}: unknown profile {profile!r}; known: {sorted(PROFILES)}")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise GridError(f"{where}: 'seeds' must be a non-empty list of non-negative integers")
    _check_train(raw.get("train", {}), PROFILES[profile], f"{where} [train]")
    base_train = {**PROFILES[profile], **raw.get("train", {})}
    base_params = _merge_params({}, raw.get("params", {}), f"{where} [params]")
    studies = raw.get("study", [])
    if not studies:
        raise GridError(f"{where}: the grid has no [[study]] block")
    grid = Grid(
        name=raw.get("name", "grid"),
        profile=profile,
        seeds=seeds,
        source=source,
        analysis=raw.get("analysis", {}),
        questions=raw.get("question", []),
    )
    seen: set[str] = set()
    datasets_cache: dict = {}
    for number, study in enumerate(studies, 1):
        here = f"{where} [[study]] {number}"
        unknown = set(study) - STUDY_KEYS
        if unknown:
            raise GridError(f"{here}: unknown key(s) {sorted(unknown)}; known: {sorted(STUDY_KEYS)}")
        axes = {}
        for axis, kind in KIND_OF_AXIS.items():
            values = study.get(axis, ["none"] if kind in ("pretext", "rebalancer") else None)
            if not values or not isinstance(values, list):
                raise GridError(f"{here} lists no {axis}")
            for value in values:
                if not (kind == "pretext" and value == NO_PRETEXT):
                    registry.get(kind, value)  # unknown names are errors, listing what exists
            axes[kind] = values
        params = _merge_params(base_params, study.get("params", {}), f"{here} params")
        _check_train(study.get("train", {}), PROFILES[profile], f"{here} train")
        study_train = {**base_train, **study.get("train", {})}
        for point in _sweep_points(study.get("sweep", {})):
            point_params, train = copy.deepcopy(params), dict(study_train)
            for key, value in point.items():
                _apply_sweep_value(point_params, train, key, value)
            _check_train(train, PROFILES[profile], f"{here} sweep")
            for combo in itertools.product(*(axes[k] for k in PLUGIN_KINDS)):
                chosen = dict(zip(PLUGIN_KINDS, combo, strict=True))
                for seed in seeds:
                    spec = make_spec(registry, chosen, point_params, train, seed, profile)
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


def make_spec(registry: Registry, chosen: dict, params: dict, train: dict, seed: int, profile: str) -> dict:
    """The canonical spec of one run: plugins with their full parameters, training settings, seed,
    and the identity parts (code fingerprints and numerics)."""
    spec: dict[str, Any] = {}
    code = {"harness": f"{harness_distribution()} {registry.harness_fingerprint()}"}
    for kind, name in chosen.items():
        if kind == "pretext" and name == NO_PRETEXT:  # "no pretraining" is not a plugin
            spec[kind] = {"name": name, "params": {}}
            continue
        given = params.get(kind, {}).get(name, {})
        spec[kind] = {"name": name, "params": _plugin_params(registry, kind, name, given)}
        entry = registry.get(kind, name)
        code[kind] = f"{entry.distribution} {entry.fingerprint}"
    settings = {k: v for k, v in train.items() if k not in NUMERICS_SETTINGS}
    if chosen["pretext"] == NO_PRETEXT:
        settings = {k: v for k, v in settings.items() if k not in PRETRAINING_SETTINGS}
    spec["train"] = dict(sorted(settings.items()))
    spec["seed"] = seed
    spec["profile"] = profile
    spec["code"] = dict(sorted(code.items()))
    spec["numerics"] = numerics(train["device"], train["threads"])
    return spec


def respec(registry: Registry, spec: dict[str, Any]) -> dict[str, Any]:
    """The same run under the code and numerics of this process (for `benchbase reproduce`)."""
    chosen = {kind: spec[kind]["name"] for kind in PLUGIN_KINDS}
    params = {kind: {spec[kind]["name"]: spec[kind]["params"]} for kind in PLUGIN_KINDS}
    train = {**PROFILES[spec["profile"]], **spec["train"]}
    train.update({k: spec["numerics"][k] for k in NUMERICS_SETTINGS})
    return make_spec(registry, chosen, params, train, int(spec["seed"]), spec["profile"])


def load_grid(registry: Registry, path: Path | str | None) -> Grid:
    raw, source = read_grid_file(path)
    return expand_grid(registry, raw, source)
