"""The grid's analysis declarations: ``[analysis]`` and ``[[question]]``, typed and validated.

They say how `benchbase.reporting.findings` compares leaderboard rows and which research questions
FINDINGS.md answers. They are checked when the grid is planned (`check_declarations`, called by
`benchbase.running.planning.expand_grid`, so ``benchbase run --dry-run`` catches them), against the runs the grid
expands to: a misspelt metric, baseline or factor fails there with one line naming the file, the
table and the key, instead of answering nothing after the whole grid trained::

    [analysis]
    # region of practical equivalence (ROPE): metric name (``mae``) or full column name
    # (``test_mae``) -> a non-negative number, in the metric's units
    rope = { mae = 0.01, spearman = 0.01 }
    # extra baselines of the paired comparisons under each table: factor -> baseline value
    baselines = { "train.task_weights" = { propensity = 1.0, bond_motion = 0.0 } }
    # metrics added to every table of the grid, on the test slice, where they apply to the task
    # (a plugin's metric, say): registered metric names
    metrics = ["pearson"]
    # adding seeds until the comparisons are decided
    [analysis.until_decided]
    round = 2          # seeds added per round (an integer >= 1)
    max_seeds = 20     # seeds per row at most (an integer >= 1)
    budget = "8h"      # runs at most (an integer >= 1) or time (a number with s, m or h)

    [[question]]
    id = "a"                                # required, unique
    title = "Does pretraining help?"        # required
    protocol = "extrapolation-threshold"    # optional: a name or a list of names; so are
    dataset = "qm9/homo_lumo_gap"           #   dataset and task
    factor = "pretext"                      # required
    baseline = "none"                       # exactly one of baseline and ladder (>= 2 values)
    treatments = ["node-masking"]           # optional, with baseline: the methods compared
    metrics = ["test_mae", "test_spearman"] # required: column names of the question's tables
    where = { "train.pretrain_pool" = "train" }   # optional: dotted keys of a row's settings

A *factor* is a plugin kind (``encoder``, ``pretext``, ``rebalancer``: the plugin's name), a
training setting ``train.<setting>`` (one of `benchbase.compute.settings.TRAINING` that a run's configuration
holds), or a plugin parameter ``<kind>.params.<parameter>``. Against the runs: the question's
protocols and datasets are the grid's; its baseline, ladder and treatment values are values the
factor takes in the runs the question is about; its metrics are columns of their tables
(`benchbase.contract.api.Protocol.leaderboard_columns` of each protocol and task); a ``where`` key is a
setting of those runs and its value one they take. A ROPE's key is a metric or column of some
table of the grid. Where a dataset the check needs is not available on this machine (the grid
skips its runs), the checks against runs that could only fail for lack of its runs are left out.

Stores keep what each grid declared. Reading them back never fails: `load_declarations` keeps what
is well formed and says what it left out, so that a grid stored with bad declarations by older code
cannot break a later grid or ``benchbase leaderboard``.

ROPEs: the grid's ``[analysis] rope`` first, else the task's own (`benchbase.contract.api.TaskInfo.rope`, in
the task's unit, for error metrics only), else none (`rope_for`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from benchbase.contract.errors import GridError
from benchbase.contract.kinds import METHOD_KINDS
from benchbase.contract.types import Column, TaskInfo

ANALYSIS_KEYS = ("rope", "baselines", "until_decided", "metrics")
UNTIL_DECIDED_KEYS = ("round", "max_seeds", "budget")
QUESTION_KEYS = (
    "id",
    "title",
    "protocol",
    "dataset",
    "task",
    "factor",
    "baseline",
    "ladder",
    "treatments",
    "metrics",
    "where",
)
#: Plugin kinds a factor may name (the protocol is the table, the dataset its data).
FACTOR_FORMS = "a plugin kind (encoder, pretext, rebalancer), 'train.<setting>' or '<kind>.params.<parameter>'"
#: Metrics whose values are in the task's unit (errors): a task's own ROPE applies to them.
ERROR_METRICS = ("mae", "rmse")

ROPE_FROM_GRID = "grid [analysis] rope"
ROPE_NONE = "none declared"


# --- budgets -----------------------------------------------------------------------------------

_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh])\s*")
_RUNS = re.compile(r"\s*(\d+)\s*")
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
BUDGET_FORMS = (
    "a number of runs (an integer >= 1, e.g. 200) or a duration (a number with s, m or h, e.g. 90s, 8m, 1.5h)"
)


@dataclass(frozen=True)
class Budget:
    """How much more a grid may spend: a number of runs or wall-clock seconds; neither set: no limit."""

    seconds: float | None = None
    runs: int | None = None

    def __str__(self) -> str:
        if self.runs is not None:
            return f"{self.runs} runs"
        seconds = float(self.seconds or 0.0)
        for unit, size in (("h", 3600.0), ("m", 60.0)):
            if seconds >= size and seconds % size == 0:
                return f"{seconds / size:g}{unit}"
        return f"{seconds:g}s"


def parse_budget(text: str | int, where: str = "budget") -> Budget:
    """A budget from a grid's ``until_decided.budget`` or the ``--budget`` option: an integer is a
    number of runs (``200``, ``"200"``), a number with ``s``, ``m`` or ``h`` a duration (``"90s"``,
    ``"8m"``, ``"1.5h"``). Anything else raises a `GridError` that names `where` and the forms."""
    problem = f"{where} must be {BUDGET_FORMS}, got {text!r}"
    if isinstance(text, bool):
        raise GridError(problem)
    if isinstance(text, int):
        if text < 1:
            raise GridError(problem)
        return Budget(runs=text)
    if not isinstance(text, str):
        raise GridError(problem)
    runs = _RUNS.fullmatch(text)
    if runs:
        if int(runs.group(1)) < 1:
            raise GridError(problem)
        return Budget(runs=int(runs.group(1)))
    duration = _DURATION.fullmatch(text.lower())
    if not duration:
        raise GridError(problem)
    seconds = float(duration.group(1)) * _SECONDS[duration.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise GridError(problem)
    return Budget(seconds=seconds)


# --- ROPEs -------------------------------------------------------------------------------------


def in_task_unit(column: Column) -> bool:
    """Whether a column's values are in its task's unit: an error metric (MAE, RMSE) on a slice,
    not a ratio of two slices."""
    return column.per is None and column.metric in ERROR_METRICS


def _rope_value(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def rope_for(
    analysis: dict[str, Any],
    column_name: str,
    metric_name: str,
    task: TaskInfo | None,
    metric_unit_is_task_unit: bool,
) -> tuple[float, str]:
    """The region of practical equivalence of one column and where it comes from.

    The grid's ``[analysis] rope`` by full column name, then by metric name (``"grid [analysis]
    rope"``); a rope keyed by a metric name does not apply to the ratio column of that metric
    (``mae_ratio``: a ratio, not the metric's unit), which takes only a rope keyed by its own name.
    Else, for a metric in the task's unit (`in_task_unit`), the task's own ROPE
    (``"dataset default (<reason>)"``, e.g. chemical accuracy for a QM9 energy). Else 0.0,
    ``"none declared"``. Malformed stored values are passed over, never raised."""
    ropes = analysis.get("rope") if isinstance(analysis, dict) else None
    if isinstance(ropes, dict):
        value = _rope_value(ropes.get(column_name))
        if value is not None:
            return value, ROPE_FROM_GRID
        if column_name != f"{metric_name}_ratio":
            value = _rope_value(ropes.get(metric_name))
            if value is not None:
                return value, ROPE_FROM_GRID
    if metric_unit_is_task_unit and task is not None:
        value = _rope_value(getattr(task, "rope", None))
        if value is not None:
            reason = getattr(task, "rope_reason", "") or "declared by the dataset"
            return value, f"dataset default ({reason})"
    return 0.0, ROPE_NONE


# --- the shape of the declarations (no runs needed) --------------------------------------------


class _Problems:
    """Raise the first problem (planning a grid), or collect them (reading a store back)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.items: list[str] = []

    def add(self, message: str) -> None:
        if self.strict:
            raise GridError(message)
        self.items.append(message)


def _canon(value: Any) -> str:
    """Equality of settings as `benchbase.reporting.findings` matches them (1 and 1.0 differ)."""
    return json.dumps(value, sort_keys=True, default=str)


def _show(values: Iterable[Any], limit: int = 40) -> str:
    shown = sorted({_canon(v) for v in values})
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return "[" + ", ".join(shown[:limit]) + "]" + more


def _int_at_least_one(value: Any) -> bool:
    return type(value) is int and value >= 1


def _factor_problem(factor: Any) -> str | None:
    """What is wrong with a factor's form (None: well formed). Parameters are checked against runs."""
    from benchbase.compute.settings import NUMERICS_SETTINGS, TRAINING

    if not isinstance(factor, str) or not factor:
        return f"must be {FACTOR_FORMS}, got {factor!r}"
    if factor in METHOD_KINDS:
        return None
    head, _, rest = factor.partition(".")
    if head == "train":
        if rest not in TRAINING:
            known = sorted(set(TRAINING) - set(NUMERICS_SETTINGS))
            return f"{factor!r}: unknown training setting {rest!r}; known: {known}"
        if rest in NUMERICS_SETTINGS:
            return (
                f"{factor!r} is a setting of the machine, not of a run's configuration, so rows never differ "
                f"in it; settings: {sorted(set(TRAINING) - set(NUMERICS_SETTINGS))}"
            )
        return None
    kind, _, parameter = factor.partition(".params.")
    if kind in METHOD_KINDS and parameter and "." not in parameter:
        return None
    return f"must be {FACTOR_FORMS}, got {factor!r}"


def _check_rope(rope: Any, here: str, problems: _Problems) -> dict[str, float]:
    if not isinstance(rope, dict):
        problems.add(
            f"{here}: rope must be a table of metric or column name -> non-negative number in the metric's "
            f"units, e.g. rope = {{ mae = 0.01 }}; got {rope!r}"
        )
        return {}
    out = {}
    for key, value in rope.items():
        number = _rope_value(value)
        if number is None:
            problems.add(f"{here}: rope.{key} must be a non-negative number (in the metric's units), got {value!r}")
            continue
        out[key] = value
    return out


def _check_baselines(baselines: Any, here: str, problems: _Problems) -> dict[str, Any]:
    if not isinstance(baselines, dict):
        problems.add(f"{here}: baselines must be a table of factor -> baseline value, got {baselines!r}")
        return {}
    out = {}
    for factor, value in baselines.items():
        problem = _factor_problem(factor)
        if problem:
            problems.add(f'{here}: baselines."{factor}": the factor {problem}')
            continue
        out[factor] = value
    return out


def _check_until_decided(table: Any, here: str, problems: _Problems) -> dict[str, Any] | None:
    if not isinstance(table, dict):
        problems.add(f"{here}: until_decided must be a table with keys {list(UNTIL_DECIDED_KEYS)}, got {table!r}")
        return None
    unknown = sorted(set(table) - set(UNTIL_DECIDED_KEYS))
    if unknown:
        problems.add(f"{here}: until_decided: unknown key(s) {unknown}; known: {list(UNTIL_DECIDED_KEYS)}")
        return None
    for key in ("round", "max_seeds"):
        if key in table and not _int_at_least_one(table[key]):
            what = "seeds added per round" if key == "round" else "seeds per row at most"
            problems.add(f"{here}: until_decided.{key} ({what}) must be an integer >= 1, got {table[key]!r}")
            return None
    if "budget" in table:
        try:
            parse_budget(table["budget"], "until_decided.budget")
        except GridError as exc:
            problems.add(f"{here}: {exc}")
            return None
    return dict(table)


def _check_analysis(raw: Any, here: str, problems: _Problems) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.add(f"{here} must be a table with keys {list(ANALYSIS_KEYS)}, got {raw!r}")
        return {}
    out: dict[str, Any] = {}
    unknown = sorted(set(raw) - set(ANALYSIS_KEYS))
    if unknown:
        problems.add(f"{here}: unknown key(s) {unknown}; known: {list(ANALYSIS_KEYS)}")
    if "rope" in raw:
        out["rope"] = _check_rope(raw["rope"], here, problems)
    if "baselines" in raw:
        out["baselines"] = _check_baselines(raw["baselines"], here, problems)
    if "until_decided" in raw:
        table = _check_until_decided(raw["until_decided"], here, problems)
        if table is not None:
            out["until_decided"] = table
    if "metrics" in raw:
        names = _names(raw["metrics"])
        if names is None:
            problems.add(f"{here}: metrics must be a metric name or a list of them, got {raw['metrics']!r}")
        else:
            out["metrics"] = list(dict.fromkeys(names))
    return out


def _names(value: Any) -> list[str] | None:
    """A name or a non-empty list of names as a list; None when it is neither."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    return None


def _question_label(number: int, question: Any) -> str:
    qid = question.get("id") if isinstance(question, dict) else None
    return f"[[question]] {number}" + (f" (id {qid!r})" if isinstance(qid, str) and qid else "")


def _question_problem(question: Any) -> str | None:
    """What is wrong with one question's form (None: well formed)."""
    if not isinstance(question, dict):
        return f"must be a table, got {question!r}"
    unknown = sorted(set(question) - set(QUESTION_KEYS))
    if unknown:
        return f"unknown key(s) {unknown}; known: {list(QUESTION_KEYS)}"
    for key in ("id", "title"):
        if key not in question:
            return f"{key} is missing (a question needs id, title, factor, metrics, and baseline or ladder)"
        if not isinstance(question[key], str) or not question[key].strip():
            return f"{key} must be a non-empty string, got {question[key]!r}"
    for key in ("protocol", "dataset", "task"):
        if key in question and _names(question[key]) is None:
            return f"{key} must be a name or a non-empty list of names, got {question[key]!r}"
    if "factor" not in question:
        return f"factor is missing: the setting the question varies, {FACTOR_FORMS}"
    problem = _factor_problem(question["factor"])
    if problem:
        return f"factor {problem}"
    has_baseline, has_ladder = "baseline" in question, "ladder" in question
    if has_baseline == has_ladder:
        return (
            "needs exactly one of baseline (the factor's value every method is compared with) and ladder "
            "(a list of >= 2 values, each compared with the one before)"
        )
    if has_ladder:
        ladder = question["ladder"]
        if not isinstance(ladder, list) or len(ladder) < 2:
            return f"ladder must be a list of at least 2 values of the factor, got {ladder!r}"
        if len({_canon(v) for v in ladder}) != len(ladder):
            return f"ladder repeats a value: {ladder!r}"
        if "treatments" in question:
            return "treatments go with baseline, not with ladder (a ladder compares each step with the one before)"
    if "treatments" in question:
        treatments = question["treatments"]
        if not isinstance(treatments, list) or not treatments:
            return f"treatments must be a non-empty list of values of the factor, got {treatments!r}"
        if any(_canon(t) == _canon(question["baseline"]) for t in treatments):
            return f"treatments include the baseline {question['baseline']!r}"
    if "metrics" not in question:
        return "metrics is missing: a non-empty list of column names, e.g. metrics = ['test_mae']"
    metrics = question["metrics"]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) and m for m in metrics):
        return f"metrics must be a non-empty list of column names, e.g. ['test_mae'], got {metrics!r}"
    if "where" in question:
        where = question["where"]
        if not isinstance(where, dict):
            return f"where must be a table of dotted setting keys -> values, got {where!r}"
        for key in where:
            if "." not in key:
                return f"where: {key!r} is not a dotted setting key such as 'train.pretrain_pool' or 'encoder.name'"
    return None


def _check_questions(raw: Any, prefix: str, problems: _Problems) -> list[dict[str, Any]]:
    """The well-formed questions; `prefix` (the file and a space, or nothing) starts each message."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add(f"{prefix}[[question]] must be an array of tables ([[question]] blocks), got {raw!r}")
        return []
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, question in enumerate(raw, 1):
        here = f"{prefix}{_question_label(number, question)}"
        problem = _question_problem(question)
        if problem is None and question["id"] in seen:
            problem = (
                f"id {question['id']!r} is already the id of [[question]] {seen[question['id']]}; ids must be unique"
            )
        if problem is not None:
            problems.add(f"{here}: {problem}")
            continue
        seen[question["id"]] = number
        out.append(dict(question))
    return out


def load_declarations(
    raw_analysis: Any, raw_questions: Any, source: str = ""
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """Declarations read back from a store (or a grid file) without failing: the well-formed
    ``[analysis]`` settings, the well-formed questions, and one line per thing left out (prefixed
    with `source`, the grid's name or file). Checks the form only: the runs are not at hand."""
    prefix = f"{source} " if source else ""
    problems = _Problems(strict=False)
    analysis = _check_analysis(raw_analysis, f"{prefix}[analysis]", problems)
    questions = _check_questions(raw_questions, prefix, problems)
    return analysis, questions, problems.items


# --- against the grid's runs -------------------------------------------------------------------


@dataclass
class _Run:
    protocol: str
    protocol_params: dict[str, Any]
    dataset: str  # the table's dataset (`benchbase.running.specs.table_dataset`)
    data: Any  # the built dataset
    flat: dict[str, Any]  # the row's settings (`benchbase.running.specs.flatten`)


class _Scope:
    """The runs a declaration is about, with what their tables would show."""

    def __init__(self, runs: list[_Run], columns_of: Callable[[_Run, TaskInfo], list[Column]], partial: bool):
        self.runs = runs
        self.columns_of = columns_of
        #: Some dataset of this scope is not available here: its runs are missing from `runs`.
        self.partial = partial

    def tasks(self) -> dict[str, TaskInfo]:
        return {t.name: t for run in self.runs for t in run.data.tasks}

    def columns(self, tasks: list[str] | None = None) -> list[Column]:
        out: dict[str, Column] = {}
        for run in self.runs:
            for task in run.data.tasks:
                if tasks is None or task.name in tasks:
                    out.update((c.name, c) for c in self.columns_of(run, task))
        return list(out.values())

    def values(self, key: str) -> dict[str, Any]:
        return {_canon(run.flat[key]): run.flat[key] for run in self.runs if key in run.flat}

    def keys(self) -> set[str]:
        return {key for run in self.runs for key in run.flat}


def _factor_key(factor: str) -> str:
    return f"{factor}.name" if factor in METHOD_KINDS else factor


def _check_value(scope: _Scope, factor: str, value: Any, what: str, none_of: str) -> str | None:
    """What is wrong with `value` as a value of `factor` in the runs of `scope` (None: it is one);
    `none_of` says which runs, as in "no run of the grid"."""
    key = _factor_key(factor)
    values = scope.values(key)
    if scope.partial:  # runs of an unavailable dataset are missing: a value may be theirs
        return None
    if not values:
        if ".params." in factor:
            kind, _, parameter = factor.partition(".params.")
            params = sorted({k.partition(".params.")[2] for k in scope.keys() if k.startswith(f"{kind}.params.")})
            return f"factor: {none_of} has {kind} parameter {parameter!r}; {kind} parameters there: {params}"
        return f"factor: {none_of} has the setting {factor!r}"
    if _canon(value) not in values:
        return f"{what}: {none_of} has {factor} = {_canon(value)}; its values there: {_show(values.values())}"
    return None


def _check_question_runs(question: dict[str, Any], scope: _Scope, none_of: str) -> str | None:
    factor = question["factor"]
    if "ladder" in question:
        checks = [("ladder", v) for v in question["ladder"]]
    else:
        checks = [("baseline", question["baseline"])]
        checks += [("treatments", t) for t in question.get("treatments", [])]
    for what, value in checks:
        problem = _check_value(scope, factor, value, what, none_of)
        if problem:
            return problem
    if scope.partial:
        return None
    tasks = _names(question.get("task"))
    if tasks is not None:
        known = scope.tasks()
        unknown = [t for t in tasks if t not in known]
        if unknown:
            return f"task: {unknown[0]!r} is not a task of its datasets; tasks: {sorted(known)}"
    columns = {c.name for c in scope.columns(tasks)}
    for metric in question["metrics"]:
        if metric not in columns:
            return (
                f"metrics: {metric!r} is not a column of its tables (a question's metrics are full column "
                f"names); columns: {sorted(columns)}"
            )
    keys = scope.keys()
    for key, value in (question.get("where") or {}).items():
        if key not in keys:
            return f"where: {none_of} has the setting {key!r}; settings there: {sorted(keys)}"
        values = scope.values(key)
        if _canon(value) not in values:
            return f"where: {none_of} has {key} = {_canon(value)}; its values there: {_show(values.values())}"
    return None


def _study_names(raw: dict[str, Any], axis: str) -> list[str]:
    out: list[str] = []
    for study in raw.get("study") or []:
        if isinstance(study, dict) and isinstance(study.get(axis), list):
            out += [n for n in study[axis] if isinstance(n, str) and n not in out]
    return out


def check_declarations(registry: Any, grid: Any, raw: dict[str, Any], datasets: dict[Any, Any]) -> None:
    """Validate the grid file's ``[analysis]`` and ``[[question]]`` (`raw`) against the runs of the
    expanded `grid` and store the validated declarations on it (``grid.analysis``,
    ``grid.questions``). `datasets` is the expansion's cache of built datasets (a string where a
    dataset is not available). Raises a `GridError` naming the file, the table and the key."""
    from benchbase.compute.adapters import dataset_label
    from benchbase.contract.identity import canonical as _canonical
    from benchbase.running.specs import config_of, flatten, table_dataset

    where = grid.source or "grid"
    problems = _Problems(strict=True)
    analysis = _check_analysis(raw.get("analysis"), f"{where} [analysis]", problems)
    questions = _check_questions(raw.get("question"), f"{where} ", problems)
    grid.analysis, grid.questions = analysis, questions
    if not analysis and not questions:
        return

    runs: list[_Run] = []
    rows: set[str] = set()
    for spec in (run.spec for run in grid.runs):
        data = datasets.get((spec["dataset"]["name"], _canonical(spec["dataset"]["params"])))
        row = _canonical([spec["protocol"], spec["dataset"], config_of(spec)])
        if data is None or isinstance(data, str) or row in rows:  # another seed of a row already seen
            continue
        rows.add(row)
        protocol = spec["protocol"]
        runs.append(_Run(protocol["name"], protocol["params"], table_dataset(spec), data, flatten(config_of(spec))))
    # the tables' datasets, planned or not (`benchbase.running.specs.table_dataset`)
    label_of = {key: dataset_label(key[0], json.loads(key[1])) for key in datasets}
    labels = sorted(set(label_of.values()))
    unavailable = {label_of[key] for key, data in datasets.items() if isinstance(data, str)}
    columns_cache: dict[tuple, list[Column]] = {}

    def columns_of(run: _Run, task: TaskInfo) -> list[Column]:
        key = (run.protocol, _canonical(run.protocol_params), _canonical(task.__dict__))
        if key not in columns_cache:
            try:
                protocol = registry.get("protocol", run.protocol).obj(**run.protocol_params)
                columns_cache[key] = list(protocol.leaderboard_columns(task))
            except Exception:  # as `benchbase.reporting.tables` does: the headline only
                columns_cache[key] = [Column("test", task.metric)]
        return columns_cache[key]

    whole = _Scope(runs, columns_of, partial=bool(unavailable))
    here = f"{where} [analysis]"
    for name in analysis.get("metrics", []):
        if name not in registry.names("metric"):
            problems.add(f"{here}: metrics: unknown metric {name!r}; registered: {registry.names('metric')}")
    if "rope" in analysis and runs:
        columns = whole.columns()
        known = {c.metric for c in columns} | {c.name for c in columns}
        for key in analysis["rope"]:
            if key not in known and not whole.partial:
                problems.add(
                    f"{here}: rope.{key}: {key!r} is neither a metric nor a column of the grid's tables; "
                    f"metrics: {sorted({c.metric for c in columns})}; columns: {sorted({c.name for c in columns})}"
                )
    for factor, value in (analysis.get("baselines") or {}).items():
        if runs:
            problem = _check_value(whole, factor, value, "baseline", "no run of the grid")
            if problem:
                problems.add(f'{here}: baselines."{factor}": {problem}')

    protocols = _study_names(raw, "protocols")
    for number, question in enumerate(questions, 1):
        here = f"{where} {_question_label(number, question)}"
        wanted_protocols, wanted_datasets = _names(question.get("protocol")), _names(question.get("dataset"))
        for key, wanted, known in (("protocol", wanted_protocols, protocols), ("dataset", wanted_datasets, labels)):
            for name in wanted or []:
                if name not in known:
                    problems.add(f"{here}: {key}: {name!r} is not a {key} of the grid's studies; {key}s: {known}")
        in_scope = [
            run
            for run in runs
            if (wanted_protocols is None or run.protocol in wanted_protocols)
            and (wanted_datasets is None or run.dataset in wanted_datasets)
        ]
        partial = bool(unavailable if wanted_datasets is None else unavailable & set(wanted_datasets))
        about = [f"protocol {' or '.join(map(repr, wanted_protocols))}"] if wanted_protocols else []
        about += [f"dataset {' or '.join(map(repr, wanted_datasets))}"] if wanted_datasets else []
        none_of = "no run the question is about" + (f" ({', '.join(about)})" if about else "")
        if not in_scope:
            if not partial:
                problems.add(f"{here}: {none_of} is planned: it would answer nothing")
            continue
        problem = _check_question_runs(question, _Scope(in_scope, columns_of, partial), none_of)
        if problem:
            problems.add(f"{here}: {problem}")
