"""Planning a grid: its studies expanded into run specs (plugins, parameters, training settings, seeds,
code fingerprints), validated once, with the runs it skips and why."""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbase.compute.runspec import RunSpec
from benchbase.compute.settings import (
    NUMERICS_SETTINGS,
    PRETRAINING_SETTINGS,
    PROFILES,
    TRAINING,
)
from benchbase.contract.errors import GridError, PluginError
from benchbase.contract.identity import canonical as _canonical
from benchbase.contract.identity import harness_distribution, numerics
from benchbase.contract.kinds import NO_PRETEXT, RUN_KINDS
from benchbase.contract.params import validate
from benchbase.contract.registry import Registry
from benchbase.running.data_keys import data_key
from benchbase.running.devices import device_type, placement
from benchbase.running.executors import check_executor
from benchbase.running.gridfile import (
    KIND_OF_AXIS,
    STUDY_KEYS,
    TOP_LEVEL_KEYS,
    Origins,
    _apply_sweep_value,
    _list_of,
    _merge_params,
    _sweep_points,
    read_grid_file,
)
from benchbase.running.skips import _check_buildable, _check_pretraining, _dataset, _skip_reason
from benchbase.running.specs import table_dataset


@dataclass(frozen=True)
class Skipped:
    label: str
    reason: str
    #: The dataset whose data is not on this machine, when that is why (the cost estimate names it).
    absent: str = ""


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
    #: ``[executor.<name>]`` tables: options of each executor (`benchbase.running.executors`).
    executor: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The ``[[study]]`` (1-based) each run comes from (the first that produced it).
    study_of: dict[str, int] = field(default_factory=dict)
    #: A study's ``metrics``: the tables (dataset, protocol) of its runs and the metrics it adds to
    #: them, as ``{"dataset", "protocol", "metrics"}`` each (the grid's ``[analysis] metrics``
    #: add to every table).
    table_metrics: list[dict[str, Any]] = field(default_factory=list)


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


#: Protocols whose splits planning makes, as each run would: `size` draws one boundary (``max_size``)
#: over every run of a dataset, which can leave its test region - or its training side - empty for
#: all of them. Its split needs only the graphs' sizes and labels; other protocols' splits fail only
#: on datasets too small to split, and are left to the runs rather than loading every dataset here.
SPLITS_MADE_AT_PLANNING = frozenset({"size"})


def _check_split(registry: Registry, spec: dict, dataset: Any, made: set, where: str) -> None:
    """A split that cannot be made (an empty test, train or valid slice) stops the grid at
    planning, with the protocol's reason, instead of failing every run of it."""
    protocol = spec["protocol"]
    if protocol["name"] not in SPLITS_MADE_AT_PLANNING:
        return
    key = (id(dataset), _canonical(protocol), spec["seed"])
    if key in made:
        return
    from benchbase.compute.pretraining import make_split  # torch: imported only when a split is made
    from benchbase.running.datalock import dataset_lock

    try:
        with dataset_lock(spec["dataset"]["name"], spec["dataset"]["params"]):  # featurised once, shared
            make_split(registry, spec, dataset)
    except PluginError as exc:
        said = str(exc)
        if f"protocol {protocol['name']!r}" not in said:  # `check_split`'s message names no protocol
            said = f"protocol {protocol['name']!r} with {protocol['params']}: {said}"
        raise GridError(f"{where}: dataset {spec['dataset']['name']!r}, seed {spec['seed']}: {said}") from None
    made.add(key)


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
    for name, options in grid.executor.items():  # every table, used or not: a misspelt name is no table
        try:
            check_executor(name, options, registry)
        except (GridError, PluginError) as exc:
            raise GridError(f"{where}: [executor.{name}]: {exc}") from None
    seen: set[str] = set()
    used_anywhere: set[tuple[str, str]] = set()
    datasets_cache: dict = {}
    data_keys: dict[str, str | None] = {}
    codes: dict[tuple[str, str], str] = {}
    finetuned: set = set()
    built: set = set()
    splits_made: set = set()
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
            for combo in itertools.product(*(axes[k] for k in RUN_KINDS)):
                chosen = dict(zip(RUN_KINDS, combo, strict=True))
                used |= set(chosen.items())
                for seed in seeds:
                    spec = make_spec(registry, chosen, point_params, train, seed, profile, here, point_origins, codes)
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
                    run = RunSpec(spec, device=placement(train["device"]))
                    run_id = run.run_id  # a hash of the spec: worked out once
                    if run_id in seen:
                        continue
                    seen.add(run_id)
                    if not isinstance(dataset, str):
                        _check_buildable(registry, spec, dataset, built, here)
                        _check_task_settings(spec, dataset, here)
                        if pretraining is not None and not isinstance(pretraining, str):
                            _check_pretraining(spec, dataset, pretraining, here)
                    reason = _skip_reason(registry, spec, dataset, pretraining)
                    if reason:
                        absent = _absent_dataset(spec, dataset, pretraining)
                        grid.skipped.append(Skipped(run.label(), reason, absent))
                    else:
                        _check_split(registry, spec, dataset, splits_made, here)
                        grid.runs.append(run)
                        grid.study_of[run_id] = number
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
    from benchbase.running.analysis import check_declarations

    # the fine-tuning datasets only: a dataset that is only pretrained on has no table to ask about
    check_declarations(registry, grid, raw, {key: datasets_cache[key] for key in finetuned})
    return grid


def _absent_dataset(spec: dict, dataset: Any, pretraining: Any) -> str:
    """The dataset a run is skipped for because its data is not here ('' when it is not that):
    `_dataset` gives a reason string instead of a dataset then."""
    if isinstance(dataset, str):
        return spec["dataset"]["name"]
    if isinstance(pretraining, str):
        return spec["pretrain_dataset"]["name"]
    return ""


def make_spec(
    registry: Registry,
    chosen: dict,
    params: dict,
    train: dict,
    seed: int,
    profile: str,
    where: str = "run",
    origins: Origins | None = None,
    codes: dict[tuple[str, str], str] | None = None,
) -> dict:
    """The canonical spec of one run: plugins with their full parameters, training settings, seed,
    and the identity parts (code fingerprints and numerics). A run that pretrains on another dataset
    also holds ``pretrain_dataset`` (its name and full parameters, from ``params["dataset"]``) and
    its code fingerprint ``code.pretrain_dataset``; the caller adds its data key, ``pretrain_data``,
    as it adds ``data``. `codes` keeps the code fingerprints of one grid's expansion (the same for
    every run of a plugin; working them out is most of planning's time otherwise)."""
    codes = {} if codes is None else codes

    def code_of(kind: str, name: str) -> str:
        if (kind, name) not in codes:
            if kind == "harness":
                codes[kind, name] = f"{harness_distribution()} {registry.harness_fingerprint()}"
            else:
                entry = registry.get(kind, name)
                codes[kind, name] = f"{entry.distribution} {entry.fingerprint}"
        return codes[kind, name]

    spec: dict[str, Any] = {}
    code = {"harness": code_of("harness", "")}
    for kind, name in chosen.items():
        if kind == "pretext" and name == NO_PRETEXT:  # "no pretraining" is not a plugin
            spec[kind] = {"name": name, "params": {}}
            continue
        given = params.get(kind, {}).get(name, {})
        spec[kind] = {"name": name, "params": _plugin_params(registry, kind, name, given, where, origins or {})}
        code[kind] = code_of(kind, name)
    settings = {k: v for k, v in train.items() if k not in NUMERICS_SETTINGS}
    other = settings.get("pretrain_dataset")
    if other is None or other == chosen["dataset"] or chosen["pretext"] == NO_PRETEXT:
        # Unset, or the fine-tuning dataset itself: left out, as in specs made before the setting.
        settings.pop("pretrain_dataset", None)
        if settings.get("pretrain_pool") == "all+finetune":
            settings["pretrain_pool"] = "all"  # the fine-tuning dataset's graphs are all of them
    else:
        try:
            registry.get("dataset", other)
        except GridError as exc:
            raise GridError(f"{where}: pretrain_dataset: {exc}") from None
        given = params.get("dataset", {}).get(other, {})
        spec["pretrain_dataset"] = {
            "name": other,
            "params": _plugin_params(registry, "dataset", other, given, where, origins or {}),
        }
        code["pretrain_dataset"] = code_of("dataset", other)
    if chosen["pretext"] == NO_PRETEXT:
        settings = {k: v for k, v in settings.items() if k not in PRETRAINING_SETTINGS}
    spec["train"] = dict(sorted(settings.items()))
    spec["seed"] = seed
    spec["profile"] = profile
    spec["code"] = dict(sorted(code.items()))
    spec["numerics"] = numerics(device_type(train["device"]), train["threads"])
    return spec


def respec(registry: Registry, spec: dict[str, Any]) -> dict[str, Any]:
    """The same run under the code and numerics of this process (for `benchbase reproduce`)."""
    chosen = {kind: spec[kind]["name"] for kind in RUN_KINDS}
    params = {kind: {spec[kind]["name"]: spec[kind]["params"]} for kind in RUN_KINDS}
    train = {**PROFILES[spec["profile"]], **spec["train"]}
    train.update({k: spec["numerics"][k] for k in NUMERICS_SETTINGS})
    if "pretrain_dataset" in spec:
        params["dataset"][spec["pretrain_dataset"]["name"]] = spec["pretrain_dataset"]["params"]
    fresh = make_spec(registry, chosen, params, train, int(spec["seed"]), spec["profile"])
    from benchbase.compute.loading import build_dataset

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
