"""Grid files: their TOML format, the built-in grids, and how parameters and sweeps merge.

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

    [analysis]                        # how leaderboards compare rows (see benchbase.reporting.findings)
    rope = { mae = 0.01 }             # region of practical equivalence per metric
    [[question]]                      # research questions answered in FINDINGS.md
    ...

Several ``[[study]]`` blocks are unioned (identical runs are kept once). Sweep keys are
``train.<setting>`` or ``<kind>.<name>.<parameter>`` with kind one of dataset, protocol, encoder,
pretext, rebalancer.

A run's spec is canonical JSON; its id is the spec's hash (`RunSpec.run_id`). Besides the plugins,
their parameters, the training settings and the seed, the spec holds the run's ``code``
fingerprints and ``numerics`` (see `benchbase.contract.identity`). Settings that only pretraining reads
(`PRETRAINING_SETTINGS`) are left out of the spec of a run without a pretext task, so changing them
never re-runs the runs they cannot affect.
"""

from __future__ import annotations

import copy
import itertools
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from benchbase.contract.errors import GridError
from benchbase.contract.kinds import RUN_KINDS

KIND_OF_AXIS = {
    "datasets": "dataset",
    "protocols": "protocol",
    "encoders": "encoder",
    "pretext": "pretext",
    "rebalancers": "rebalancer",
}


TOP_LEVEL_KEYS = {"name", "profile", "seeds", "train", "params", "study", "analysis", "question", "executor"}


STUDY_KEYS = set(KIND_OF_AXIS) | {"params", "sweep", "train", "metrics"}


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
        if kind not in RUN_KINDS:
            raise GridError(f"{where}: unknown plugin kind {kind!r}; use one of {list(RUN_KINDS)}")
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
    if head not in RUN_KINDS or not name or not param:
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


def _list_of(value: Any, what: str, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise GridError(f"{where}: {what} must be a non-empty list")
    return value
