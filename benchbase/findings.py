"""Paired comparisons under each leaderboard table, and FINDINGS.md.

A *comparison* pits a row (a method) against the row that differs from it only in one *factor*,
where the other row holds the factor's *baseline* value: a pretext task against ``none``, a
rebalancer against ``none``, ``pretrain_pool = "all"`` against ``"train"``, a multi-task weighting
against a single-task one. The grid's ``[analysis]`` table declares extra baselines and the region
of practical equivalence (ROPE) per metric::

    [analysis]
    rope = { mae = 0.01, spearman = 0.02 }          # by metric name (or full column name)
    baselines = { "train.task_weights" = { propensity = 1.0, bond_motion = 0.0 } }

A factor is a plugin kind (``pretext``, ``rebalancer``, ``encoder``: its name) or a dotted
setting (``train.<setting>``, ``<kind>.params.<parameter>``). Statistics: `benchbase.stats`.

*Questions* (``[[question]]`` in a grid file) are the suite's research questions, each answered in
FINDINGS.md from the stored runs with these comparisons::

    [[question]]
    id = "a"
    title = "Does self-supervised pretraining help extrapolation beyond the training label range?"
    protocol = "extrapolation-threshold"
    factor = "pretext"
    baseline = "none"                    # or: ladder = ["node-masking", "graph-pattern", "motif"]
    metrics = ["test_mae", "test_spearman"]
    where = { "train.pretrain_pool" = "all" }   # optional filter on the method's settings

Where no stored run answers a question, FINDINGS.md names the grid file to run.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import numpy as np
from tabulate import tabulate

from benchbase.api import Column
from benchbase.grid import PRETRAINING_SETTINGS, builtin_grid_path
from benchbase.leaderboard import HEADER, IDENTITY_KINDS, Row, Table, flatten, fmt
from benchbase.metrics import get_metric
from benchbase.stats import MIN_SEEDS, Comparison, compare, correct, rng_for

#: Baselines every table is compared against, beside those of the grid's ``[analysis]``.
DEFAULT_BASELINES: dict[str, Any] = {"pretext": "none", "rebalancer": "none", "train.pretrain_pool": "train"}
BUILTIN_GRIDS = ("quick.toml", "glass.toml", "paper.toml")


# --- analysis settings -------------------------------------------------------------------------


def analyses_by_grid(store: Any) -> dict[str, dict[str, Any]]:
    """Grid name -> {"source", "analysis", "questions"}: the built-in grids' declarations, replaced
    by what the store recorded for the grids that ran into it."""
    out: dict[str, dict[str, Any]] = {}
    for name in BUILTIN_GRIDS:
        path = builtin_grid_path(name)
        if path.is_file():
            raw = tomllib.loads(path.read_text())
            out[raw.get("name", name)] = {
                "source": f"grids/{name}",
                "analysis": raw.get("analysis", {}),
                "questions": raw.get("question", []),
            }
    for grid in store.grids():
        recorded = grid.get("analysis") or {}
        out[grid["name"]] = {
            "source": grid.get("source") or grid["name"],
            "analysis": recorded.get("analysis", {}),
            "questions": recorded.get("questions", []),
        }
    return out


def analysis_for(analyses: dict[str, dict[str, Any]], grids: list[str]) -> dict[str, Any]:
    """The ``[analysis]`` settings that apply to a table made of runs of these grids."""
    merged: dict[str, Any] = {"rope": {}, "baselines": dict(DEFAULT_BASELINES)}
    for name in grids:
        analysis = analyses.get(name, {}).get("analysis", {})
        merged["rope"].update(analysis.get("rope", {}))
        merged["baselines"].update(analysis.get("baselines", {}))
    return merged


def rope_of(analysis: dict[str, Any], column: Column) -> float:
    ropes = analysis.get("rope", {})
    return float(ropes.get(column.name, ropes.get(column.metric, 0.0)))


# --- matching rows -----------------------------------------------------------------------------


def _factor_key(factor: str) -> tuple[str, tuple[str, ...]]:
    """The flattened key holding a factor's value, and the key prefixes that belong to it (which
    may differ between a method and its baseline)."""
    if factor in IDENTITY_KINDS:
        owned: tuple[str, ...] = (f"{factor}.",)
        if factor == "pretext":  # without pretraining, the pretraining settings do not exist
            owned += tuple(f"train.{s}" for s in PRETRAINING_SETTINGS)
        return f"{factor}.name", owned
    return factor, (factor,)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _rest(row: Row, owned: tuple[str, ...]) -> str:
    flat = flatten(row.config)
    return _canon({k: v for k, v in flat.items() if not k.startswith(owned)})


def pairs(table: Table, factor: str, baseline: Any, treatments: list[Any] | None = None) -> list[tuple[Row, Row]]:
    """(method row, baseline row) pairs that differ only in `factor`, the baseline holding `baseline`."""
    key, owned = _factor_key(factor)
    baselines = {}
    for row in table.rows:
        flat = flatten(row.config)
        if key in flat and _canon(flat[key]) == _canon(baseline):
            baselines[_rest(row, owned)] = row
    out = []
    for row in table.rows:
        flat = flat_row = flatten(row.config)
        if key not in flat_row or _canon(flat[key]) == _canon(baseline):
            continue
        if treatments is not None and not any(_canon(flat[key]) == _canon(t) for t in treatments):
            continue
        match = baselines.get(_rest(row, owned))
        if match is not None:
            out.append((row, match))
    return out


def compare_rows(table: Table, method: Row, baseline: Row, column: Column, rope: float) -> Comparison | None:
    seeds = sorted(set(method.seeds) & set(baseline.seeds))
    if not seeds:
        return None
    a, b = method.cells[column.name], baseline.cells[column.name]
    ia = [method.seeds.index(s) for s in seeds]
    ib = [baseline.seeds.index(s) for s in seeds]
    if not (np.isfinite(a.points[ia]).all() and np.isfinite(b.points[ib]).all()):
        return None
    return compare(
        method.label,
        baseline.label,
        column.name,
        get_metric(column.metric).higher_is_better,
        a.points[ia],
        b.points[ib],
        a.replicates[ia],
        b.replicates[ib],
        rng_for(table.name, method.key, baseline.key, column.name),
        rope,
    )


def table_comparisons(table: Table, analysis: dict[str, Any]) -> list[Comparison]:
    """Each method against its baseline on the headline column, Holm-corrected over the table."""
    column = table.headline
    out = []
    for factor, baseline in analysis["baselines"].items():
        for method, base in pairs(table, factor, baseline):
            comparison = compare_rows(table, method, base, column, rope_of(analysis, column))
            if comparison is not None:
                out.append(comparison)
    correct(out)
    return out


# --- rendering ---------------------------------------------------------------------------------


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def comparison_rows(comparisons: list[Comparison], with_table: dict[int, str] | None = None) -> list[list[Any]]:
    rows = []
    for i, c in enumerate(comparisons):
        line = [with_table[i]] if with_table is not None else []
        line += [c.method, c.baseline]
        if with_table is not None:
            line.append(c.metric)
        line += [
            f"{c.difference:+.4f}",
            f"[{fmt(c.low)}, {fmt(c.high)}]",
            _p(c.p_value),
            _p(c.p_holm),
            fmt(c.probability_of_improvement, 2),
            f"{c.seeds}{' ⚑' if c.flagged else ''}",
            f"**{c.verdict}**" if c.verdict != "no detectable difference" else c.verdict,
        ]
        rows.append(line)
    return rows


COMPARISON_HEADERS = ["Δ (method − baseline)", "95% CI", "p", "p (Holm)", "P(improvement)", "seeds", "verdict"]


def render_comparisons(table: Table, comparisons: list[Comparison]) -> str:
    if not comparisons:
        return ""
    column = table.headline
    rope = comparisons[0].rope
    text = f"## Paired comparisons (`{column.name}`)\n\n"
    text += (
        f"Each method against the row that differs only in the compared factor, on the seeds both have. "
        f"p: two-sided paired t-test across seeds; Holm-corrected over the {len(comparisons)} comparisons of "
        f'this table. Verdict "better"/"worse" needs p (Holm) < 0.05 and a 95% CI of the difference '
        f"beyond the region of practical equivalence ±{rope:g}. ⚑: fewer than {MIN_SEEDS} paired seeds.\n\n"
    )
    headers = ["method", "baseline", *COMPARISON_HEADERS]
    return (
        text + tabulate(comparison_rows(comparisons), headers=headers, tablefmt="github", disable_numparse=True) + "\n"
    )


def _matches(table: Table, question: dict[str, Any]) -> bool:
    for key, attribute in (("dataset", table.dataset), ("protocol", table.protocol), ("task", table.task.name)):
        wanted = question.get(key)
        if wanted is not None and attribute not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def _where(row: Row, where: dict[str, Any]) -> bool:
    flat = flatten(row.config)
    return all(k in flat and _canon(flat[k]) == _canon(v) for k, v in where.items())


def answer(
    question: dict[str, Any], tables: list[Table], analysis: dict[str, Any]
) -> tuple[list[Comparison], list[str]]:
    """The comparisons that answer one question (Holm-corrected together) and their tables."""
    factor = question["factor"]
    steps: list[tuple[Any, list[Any] | None]]
    if "ladder" in question:
        ladder = question["ladder"]
        steps = [(ladder[i], [ladder[i + 1]]) for i in range(len(ladder) - 1)]
    else:
        steps = [(question["baseline"], question.get("treatments"))]
    comparisons, where_from = [], []
    for table in tables:
        if not _matches(table, question):
            continue
        columns = {c.name: c for c in table.columns}
        for metric in question["metrics"]:
            column = columns.get(metric)
            if column is None:
                continue
            for baseline, treatments in steps:
                for method, base in pairs(table, factor, baseline, treatments):
                    if not _where(method, question.get("where", {})):
                        continue
                    comparison = compare_rows(table, method, base, column, rope_of(analysis, column))
                    if comparison is not None:
                        comparisons.append(comparison)
                        where_from.append(table.name)
    correct(comparisons)
    return comparisons, where_from


def _summary(comparisons: list[Comparison]) -> str:
    by_metric: dict[str, list[str]] = {}
    for c in comparisons:
        by_metric.setdefault(c.metric, []).append(c.verdict)
    parts = []
    for metric, verdicts in by_metric.items():
        counts = {v: verdicts.count(v) for v in ("better", "worse", "no detectable difference")}
        parts.append(
            f"`{metric}`: {counts['better']} better, {counts['worse']} worse, "
            f"{counts['no detectable difference']} no detectable difference (of {len(verdicts)})"
        )
    return "; ".join(parts)


def render_findings(store: Any, tables: list[Table], analyses: dict[str, dict[str, Any]]) -> str:
    text = HEADER + "# Findings\n\n"
    text += (
        "The suite's research questions, answered from the stored runs by paired comparisons "
        "(`benchbase.stats`): the difference of each method to its baseline on the same seeds and splits, "
        "its 95% CI (hierarchical bootstrap over seeds and test graphs), a paired t-test across seeds, "
        "Holm's correction over the comparisons of each question, the probability of improvement, and a "
        'verdict. "better"/"worse" needs the corrected p < 0.05 and a CI beyond the region of practical '
        f"equivalence (ROPE) declared in the grid; ⚑ marks fewer than {MIN_SEEDS} paired seeds. "
        "A difference smaller than its interval is not a finding.\n"
    )
    for grid_name, info in sorted(analyses.items()):
        for question in info.get("questions", []):
            title = question.get("title", question.get("id", "?"))
            text += f"\n## ({question.get('id', '?')}) {title}\n\n"
            grid_tables = [t for t in tables if grid_name in t.grids]
            analysis = analysis_for(analyses, [grid_name])
            comparisons, where = answer(question, grid_tables, analysis)
            if not comparisons:
                text += f"No stored runs answer this yet: run `benchbase run --grid {info['source']}`.\n"
                continue
            ropes = sorted({f"{c.metric} ±{c.rope:g}" for c in comparisons})
            text += f"From grid `{info['source']}`; ROPE: {', '.join(ropes)}.\n\n"
            text += f"**Answer**: {_summary(comparisons)}.\n\n"
            headers = ["table", "method", "baseline", "metric", *COMPARISON_HEADERS]
            links = {i: f"[{name}]({name}.md)" for i, name in enumerate(where)}
            rows = comparison_rows(comparisons, links)
            text += tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
    return text
