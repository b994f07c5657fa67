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
6. a pretext task that reads labels (``reads_labels``) pretrains only on graphs whose labels are
   not tested: with ``pretrain_pool = "train"``, or on another dataset alone (``pretrain_dataset``
   with ``pretrain_pool = "all"``); on the whole fine-tuning dataset it would see the test labels;
7. a pretext task or encoder whose ``requires`` the pretraining dataset does not provide is skipped
   (the encoder must also fit the fine-tuning dataset, rule 1), and a pretraining dataset whose data
   is not available skips its runs (rule 5).

Pretraining on another dataset. ``pretrain_dataset`` (a training setting; unset: the fine-tuning
dataset) names a registered dataset to pretrain on - a large unlabeled pool such as ``qm9`` before a
small measured dataset such as ``freesolv/expt`` (Hu et al. 2020). Its parameters are those the
grid gives that dataset name, ``[params.dataset."<name>"]`` (or a study's, or a sweep's
``dataset.<name>.<parameter>``): one dataset name means one configuration throughout a grid.
``pretrain_pool`` then says which graphs pretraining sees:

- ``all``: the pretraining dataset's graphs alone;
- ``all+finetune``: those and every graph of the fine-tuning dataset;
- ``train``: those and the train and valid graphs of the run's split (the test region stays unseen).

Without ``pretrain_dataset`` they mean what they always did (``all+finetune`` is ``all``), and naming
the fine-tuning dataset itself is the same as leaving it unset. With ``all``, a stage does not depend
on the fine-tuning dataset or protocol at all: the freesolv and solubility runs of one encoder,
pretext task, rebalancer and seed share one QM9-pretrained stage - the same stage as QM9's own runs
with ``pretrain_pool = "all"``. The encoder is built from the dataset's `FeatureSpec` in both stages,
so the two datasets' features must be equal: a grid where they differ is rejected at planning,
naming both datasets and the difference (QM9 provides 3D positions unless ``positions = false``).
Benchbase does not look for graphs that both datasets hold: pretraining on ``freesolv`` (the same
molecules) before fine-tuning ``freesolv/expt`` shows pretraining the test molecules.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from benchbase.errors import DataUnavailable, GridError, PluginError
from benchbase.identity import canonical as _canonical
from benchbase.identity import content_hash, harness_distribution, numerics
from benchbase.params import validate
from benchbase.registry import Registry
from benchbase.settings import (  # noqa: F401  (re-exported: the settings schema's old home)
    NUMERICS_SETTINGS,
    POOLS,
    PRETRAINING_SETTINGS,
    PROFILES,
    STAGE_SETTINGS,
    TRAINING,
)
from benchbase.specs import table_dataset
from benchbase.types import SMILES

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
STUDY_KEYS = set(KIND_OF_AXIS) | {"params", "sweep", "train", "metrics"}


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
        kinds = ["encoder", "pretext", "rebalancer"]
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
    #: A study's ``metrics``: the tables (dataset, protocol) of its runs and the metrics it adds to
    #: them, as ``{"dataset", "protocol", "metrics"}`` each (the grid's ``[analysis] metrics``
    #: add to every table).
    table_metrics: list[dict[str, Any]] = field(default_factory=list)


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
    if path.is_dir():
        raise GridError(f"grid file {path} is a directory; give the .toml file itself")
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")  # TOML is UTF-8 whatever the locale says
    except UnicodeDecodeError as exc:
        raise GridError(f"grid file {path} is not UTF-8 text (byte {exc.start}): is it a TOML grid file?") from None
    except OSError as exc:
        raise GridError(f"grid file {path} cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(text), source
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


def _check_train(train: Any, where: str, registry: Registry | None = None) -> None:
    if not isinstance(train, dict):
        raise GridError(f"{where} must be a table of training settings, got {type(train).__name__} {train!r}")
    validate(TRAINING, train, where)
    _check_few_label(train.get("few_label"), where)
    weights = train.get("task_weights")
    if weights is not None and not all(
        isinstance(w, int | float) and not isinstance(w, bool) and w >= 0 for w in weights.values()
    ):
        raise GridError(f"{where}: task_weights must map task names to non-negative numbers, got {weights!r}")
    device = train.get("device", "cpu")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(device)):
        raise GridError(f"{where}: device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if registry is not None and train.get("pretrain_dataset") is not None:
        try:
            registry.get("dataset", train["pretrain_dataset"])  # an unknown name lists the known ones
        except GridError as exc:
            raise GridError(f"{where}: pretrain_dataset: {exc}") from None


def _check_few_label(few: Any, where: str) -> None:
    if few is None:
        return
    k = few.get("k")
    if set(few) != {"task", "k"} or not isinstance(few["task"], str) or type(k) is not int or k < 1:
        raise GridError(f'{where}: few_label must be {{task = "<task name>", k = <positive integer>}}, got {few!r}')


def _check_task_settings(spec: dict, dataset: Any, where: str) -> None:
    """`task_weights` and `few_label` name tasks of the dataset: checked at planning, where the
    dataset's tasks are known, rather than failing every run."""
    tasks = {t.name: t for t in dataset.tasks}
    train = spec["train"]
    unknown = set(train.get("task_weights") or {}) - set(tasks)
    if unknown:
        raise GridError(
            f"{where}: task_weights name unknown task(s) {sorted(unknown)}; {dataset.name!r} has {sorted(tasks)}"
        )
    few = train.get("few_label")
    if few:
        task = tasks.get(few["task"])
        if task is None or task.level != "graph":
            graph_level = sorted(n for n, t in tasks.items() if t.level == "graph")
            raise GridError(
                f"{where}: few_label task {few['task']!r} is not a graph-level task of {dataset.name!r}: {graph_level}"
            )


def _check_params_used(declared: Origins, used: set[tuple[str, str]], where: str) -> None:
    """Parameters for a plugin name that no run uses are a typo (``[params.encoder.gni]``) or a
    forgotten study: an error, not a grid that silently runs with the defaults."""
    for kind, name, key in sorted(declared):
        if (kind, name) not in used:
            names = sorted(n for k, n in used if k == kind)
            raise GridError(
                f"{declared[(kind, name, key)]}: {kind} {name!r} is in no study here, so {key!r} would be ignored; "
                f"the {kind}s used: {names}"
            )


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


log = logging.getLogger("benchbase")

#: Paths already warned about as impossible to hash, so that a grid of many runs warns once each.
_UNHASHABLE_WARNED: set[str] = set()


def _path_parameters(registry: Registry, name: str, params: dict[str, Any]) -> list[str]:
    """The parameters of dataset `name` that name files or directories: those declared with the
    ``"path"`` type, and - for plugins written before that type existed - one called ``path`` that
    takes a string."""
    try:
        spec = registry.get("dataset", name).param_spec or {}
    except (GridError, PluginError):
        return []
    keys = [k for k, p in spec.items() if p.type == "path" or (k == "path" and p.type in ("str", "any"))]
    if spec == {} and isinstance(params.get("path"), str):  # a factory that takes anything
        keys = ["path"]
    return sorted(k for k in keys if isinstance(params.get(k), str))


def _hash_path(path: Path) -> str:
    """A digest of a file's bytes, or of a directory's files (their relative names and bytes)."""
    from benchbase.cache import content_digest

    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return content_hash([[str(p.relative_to(path)), content_digest(p)] for p in files])
    return content_digest(path)


def data_key(
    registry: Registry, component: dict[str, Any], dataset: Any, memo: dict[str, str | None] | None = None
) -> str | None:
    """What enters a run's identity for its data: the plugin's `content_key()` when it gives one;
    else a hash of every file or directory its path parameters name, so that a third-party dataset
    whose file is edited in place never passes for the one already run (None when it has neither).
    A path that cannot be read is warned about once and left out of the key. `memo` keeps the keys
    of one grid's expansion: every combination and seed of a dataset shares them."""
    if isinstance(dataset, str):
        return None  # not available here: its runs are skipped, saying why
    if memo is not None:
        at = _canonical([component["name"], component["params"]])
        if at not in memo:
            memo[at] = data_key(registry, component, dataset)
        return memo[at]
    key = dataset.content_key()
    if key is not None:
        return key
    name, params = component["name"], component["params"]
    hashed = {}
    for parameter in _path_parameters(registry, name, params):
        path = Path(params[parameter]).expanduser()
        try:
            hashed[parameter] = _hash_path(path)
        except OSError as exc:
            shown = str(path.absolute())
            if shown not in _UNHASHABLE_WARNED:
                _UNHASHABLE_WARNED.add(shown)
                log.warning(
                    "dataset %r: cannot hash %s (parameter %s): %s; its runs' identity does not cover this data",
                    name,
                    shown,
                    parameter,
                    exc.strerror or exc,
                )
    return content_hash(hashed) if hashed else None


def _dataset(registry: Registry, spec: dict, datasets_cache: dict, where: str, kind: str = "dataset") -> Any:
    """The run's dataset (`kind` ``pretrain_dataset``: the one it pretrains on), or the reason it is
    not available on this machine (a `DataUnavailable` from the plugin). Any other error of the
    plugin stops the grid with its message."""
    from benchbase.loading import build_dataset

    dname, dparams = spec[kind]["name"], spec[kind]["params"]
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


def _pretraining_datasets(spec: dict, dataset: Any, pretraining: Any) -> list[Any]:
    """The datasets whose graphs a run's pretraining pool holds (none without a pretext task)."""
    if spec["pretext"]["name"] == NO_PRETEXT:
        return []
    if pretraining is None:
        return [dataset]
    return [pretraining] if spec["train"]["pretrain_pool"] == "all" else [pretraining, dataset]


def _check_pretraining(spec: dict, dataset: Any, pretraining: Any, where: str) -> None:
    """What makes pretraining on another dataset impossible stops the grid: features that differ
    (the encoder is built from them in both stages) or, for a pool that adds the fine-tuning graphs,
    datasets that augment their batches differently (one batch holds graphs of both)."""
    pname, dname = spec["pretrain_dataset"]["name"], spec["dataset"]["name"]
    ours, theirs = pretraining.features, dataset.features
    if ours != theirs:
        differences = "; ".join(
            f"{f.name} {getattr(ours, f.name)!r} vs {getattr(theirs, f.name)!r}"
            for f in dataclasses.fields(ours)
            if getattr(ours, f.name) != getattr(theirs, f.name)
        )
        raise GridError(
            f"{where}: pretraining dataset {pname!r} and dataset {dname!r} have different features ({differences}): "
            f"an encoder pretrained on one does not fit the other; give {pname!r} parameters under which they agree "
            f'([params.dataset."{pname}"]) or pretrain on another dataset'
        )
    if spec["train"]["pretrain_pool"] != "all" and type(pretraining).augment is not type(dataset).augment:
        raise GridError(
            f"{where}: pretraining dataset {pname!r} and dataset {dname!r} augment their batches differently, so "
            f"their graphs cannot share a pool (pretrain_pool = {spec['train']['pretrain_pool']!r}); use 'all'"
        )


def _study_metrics(registry: Registry, value: Any, where: str) -> list[str]:
    """A study's ``metrics``: registered metric names its tables add (a plugin's, say)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GridError(f"{where}: metrics must be a list of metric names, got {value!r}")
    for name in value:
        if name not in registry.names("metric"):
            raise GridError(f"{where}: metrics: unknown metric {name!r}; registered: {registry.names('metric')}")
    return list(dict.fromkeys(value))


def _capabilities(dataset: Any) -> set[str]:
    """What `dataset` provides, as far as it can be used: 'smiles' only with a ``smiles()`` method
    (older datasets declared the capability without one), so that a task needing it is skipped at
    planning rather than failing every run."""
    provides = set(dataset.provides)
    if SMILES in provides and not callable(getattr(dataset, "smiles", None)):
        provides.discard(SMILES)
    return provides


def _pretext_is_multilabel(registry: Registry, spec: dict) -> bool:
    from benchbase import loading

    try:
        return bool(loading.build_pretext(registry, spec["pretext"]["name"], spec["pretext"]["params"]).is_multilabel())
    except Exception:  # noqa: BLE001 - not buildable: `_check_buildable` reports it
        return False


def _skip_reason(registry: Registry, spec: dict, dataset: Any, pretraining: Any = None) -> str | None:
    if isinstance(dataset, str):
        return dataset
    if isinstance(pretraining, str):
        return f"pretraining {pretraining}"
    dname = spec["dataset"]["name"]
    provides = set(dataset.provides)
    pool = _pretraining_datasets(spec, dataset, pretraining)
    pname = spec.get("pretrain_dataset", {}).get("name")
    for kind, datasets in (("encoder", [dataset, *(d for d in pool if d is not dataset)]), ("pretext", pool)):
        name = spec[kind]["name"]
        for data in datasets:  # the encoder runs on both datasets, the pretext task on its pool
            needed = set(getattr(registry.get(kind, name).obj, "requires", ()))
            missing = needed - _capabilities(data)
            if missing:
                which = f"dataset {dname!r}" if data is dataset else f"pretraining dataset {pname!r}"
                if missing == {SMILES} & needed and SMILES in data.provides:
                    return f"{kind} {name!r} needs smiles(), which {which} declares ('smiles') but does not define"
                return f"{kind} {name!r} needs {sorted(missing)}, which {which} does not provide"
    encoder_cls = registry.get("encoder", spec["encoder"]["name"]).obj
    pretext_name = spec["pretext"]["name"]
    if pretext_name != NO_PRETEXT and not getattr(encoder_cls, "supports_pretext", True):
        return f"encoder {encoder_cls.name!r} never sees the corrupted input, so pretext tasks cannot train it"
    if pretext_name != NO_PRETEXT and getattr(registry.get("pretext", pretext_name).obj, "reads_labels", False):
        mode = spec["train"]["pretrain_pool"]
        if mode == "all+finetune" or (mode == "all" and pretraining is None):
            return (
                f"pretext {pretext_name!r} reads labels, so it pretrains only with pretrain_pool = 'train' "
                "(or 'all' with a pretrain_dataset): with this pool it would see the test labels"
            )
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
        if not getattr(rebalancer_cls, "supports_multilabel", True):
            # classification tasks train through one multi-label loss; so does a multi-label pretext task
            if classification:
                return (
                    f"rebalancer {rebalancer_cls.name!r} does not support multi-label losses, which the "
                    f"classification tasks of dataset {dname!r} use"
                )
            if labelled_pretext and _pretext_is_multilabel(registry, spec):
                why = f"does not support multi-label losses, which pretext {pretext_name!r} uses"
                return f"rebalancer {rebalancer_cls.name!r} {why}"
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
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and 0 <= s < 2**32 for s in seeds):
        # numpy's and torch's generators take seeds below 2**32: a larger one fails every run
        raise GridError(f"{where}: seeds must be a non-empty list of integers in [0, 2**32), got {seeds!r}")
    if not isinstance(raw.get("name", "grid"), str):
        raise GridError(f"{where}: name must be a string")
    _check_train(raw.get("train", {}), f"{where} [train]", registry)
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
    used_anywhere: set[tuple[str, str]] = set()
    datasets_cache: dict = {}
    data_keys: dict[str, str | None] = {}
    finetuned: set = set()
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
        added = _study_metrics(registry, study.get("metrics"), here)
        study_origins = dict(origins)
        params = _merge_params(base_params, study.get("params", {}), f"{here} [study.params", study_origins)
        used: set[tuple[str, str]] = set()
        declared_here: Origins = {}
        _check_train(study.get("train", {}), f"{here} [study.train]", registry)
        study_train = {**base_train, **study.get("train", {})}
        for point in _sweep_points(study.get("sweep", {}), f"{here} [study.sweep]"):
            point_params, train, point_origins = copy.deepcopy(params), dict(study_train), dict(study_origins)
            for key, value in point.items():
                _apply_sweep_value(point_params, train, key, value, f"{here} [study.sweep]", point_origins)
            _check_train(train, f"{here} [study.sweep]", registry)
            declared_here |= {k: v for k, v in point_origins.items() if v != origins.get(k)}
            if train.get("pretrain_dataset") is not None:
                used.add(("dataset", train["pretrain_dataset"]))
            for combo in itertools.product(*(axes[k] for k in PLUGIN_KINDS)):
                chosen = dict(zip(PLUGIN_KINDS, combo, strict=True))
                used |= set(chosen.items())
                for seed in seeds:
                    spec = make_spec(registry, chosen, point_params, train, seed, profile, here, point_origins)
                    dataset = _dataset(registry, spec, datasets_cache, here)
                    finetuned.add((spec["dataset"]["name"], _canonical(spec["dataset"]["params"])))
                    key = data_key(registry, spec["dataset"], dataset, data_keys)
                    if key is not None:
                        spec["data"] = key
                    pretraining = None
                    if "pretrain_dataset" in spec:
                        pretraining = _dataset(registry, spec, datasets_cache, here, "pretrain_dataset")
                        key = data_key(registry, spec["pretrain_dataset"], pretraining, data_keys)
                        if key is not None:
                            spec["pretrain_data"] = key
                    run = RunSpec(spec)
                    if run.run_id in seen:
                        continue
                    seen.add(run.run_id)
                    if not isinstance(dataset, str):
                        _check_buildable(registry, spec, dataset, built, here)
                        _check_task_settings(spec, dataset, here)
                        if pretraining is not None and not isinstance(pretraining, str):
                            _check_pretraining(spec, dataset, pretraining, here)
                    reason = _skip_reason(registry, spec, dataset, pretraining)
                    if reason:
                        grid.skipped.append(Skipped(run.label(), reason))
                    else:
                        grid.runs.append(run)
                        grid.study_of[run.run_id] = number
                        if added:
                            scope = {
                                "dataset": table_dataset(spec),
                                "protocol": spec["protocol"]["name"],
                                "metrics": added,
                            }
                            if scope not in grid.table_metrics:
                                grid.table_metrics.append(scope)
        _check_params_used(declared_here, used, here)
        used_anywhere |= used
    _check_params_used(origins, used_anywhere, where)
    from benchbase.analysis import check_declarations  # [analysis] and [[question]], against the runs

    # the fine-tuning datasets only: a dataset that is only pretrained on has no table to ask about
    check_declarations(registry, grid, raw, {key: datasets_cache[key] for key in finetuned})
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
    and the identity parts (code fingerprints and numerics). A run that pretrains on another dataset
    also holds ``pretrain_dataset`` (its name and full parameters, from ``params["dataset"]``) and
    its code fingerprint ``code.pretrain_dataset``; the caller adds its data key, ``pretrain_data``,
    as it adds ``data``."""
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
    other = settings.get("pretrain_dataset")
    if other is None or other == chosen["dataset"] or chosen["pretext"] == NO_PRETEXT:
        # Unset, or the fine-tuning dataset itself: left out, as in specs made before the setting.
        settings.pop("pretrain_dataset", None)
        if settings.get("pretrain_pool") == "all+finetune":
            settings["pretrain_pool"] = "all"  # the fine-tuning dataset's graphs are all of them
    else:
        try:
            entry = registry.get("dataset", other)
        except GridError as exc:
            raise GridError(f"{where}: pretrain_dataset: {exc}") from None
        given = params.get("dataset", {}).get(other, {})
        spec["pretrain_dataset"] = {
            "name": other,
            "params": _plugin_params(registry, "dataset", other, given, where, origins or {}),
        }
        code["pretrain_dataset"] = f"{entry.distribution} {entry.fingerprint}"
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
    if "pretrain_dataset" in spec:
        params["dataset"][spec["pretrain_dataset"]["name"]] = spec["pretrain_dataset"]["params"]
    fresh = make_spec(registry, chosen, params, train, int(spec["seed"]), spec["profile"])
    from benchbase.loading import build_dataset

    for kind, data in (("dataset", "data"), ("pretrain_dataset", "pretrain_data")):
        if kind in fresh:
            key = data_key(registry, fresh[kind], build_dataset(registry, *RunSpec(fresh).component(kind)))
            if key is not None:
                fresh[data] = key
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
