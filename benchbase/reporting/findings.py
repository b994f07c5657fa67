"""Paired comparisons under each leaderboard table, and FINDINGS.md.

A *comparison* pits a row (a method) against the row that differs from it only in one *factor*,
where the other row holds the factor's *baseline* value: a pretext task against ``none``, a
rebalancer against ``none``, ``pretrain_pool = "all"`` against ``"train"``, a multi-task weighting
against a single-task one. The grid's ``[analysis]`` table declares extra baselines and the region
of practical equivalence (ROPE) per metric, in the metric's unit; where it declares none, a dataset's
task may (``TaskInfo.rope``, for errors in the task's unit)::

    [analysis]
    rope = { mae = 0.043, spearman = 0.02 }         # by metric name (or full column name)
    baselines = { "train.task_weights" = { propensity = 1.0, bond_motion = 0.0 } }
    until_decided = { round = 4, max_seeds = 30 }   # `benchbase run --until-decided` (optional)

A factor is a plugin kind (``pretext``, ``rebalancer``, ``encoder``: its name) or a dotted
setting (``train.<setting>``, ``<kind>.params.<parameter>``). Statistics: `benchbase.reporting.stats`.

*Questions* (``[[question]]`` in a grid file) are the suite's research questions, each answered in
FINDINGS.md from the stored runs; the comparisons of one question are one Holm family, and the
tables show them with the same numbers::

    [[question]]
    id = "a"
    title = "Does self-supervised pretraining help extrapolation beyond the training label range?"
    protocol = "extrapolation-threshold"
    factor = "pretext"
    baseline = "none"                    # or: ladder = ["node-masking", "graph-pattern", "motif"]
    metrics = ["test_mae", "test_spearman"]
    where = { "train.pretrain_pool" = "all" }   # optional filter on the method's settings

A sequential study (``until_decided``) is replayed look by look from the stored seeds (`evaluate`),
exactly as `benchbase run --until-decided` decided which comparisons receive more seeds. Where no
stored run answers a question, FINDINGS.md names the grid file to run.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import Any

import numpy as np
from tabulate import tabulate

from benchbase.compute.metrics import get_metric
from benchbase.compute.settings import PRETRAINING_SETTINGS
from benchbase.contract.api import Column, TaskInfo
from benchbase.contract.kinds import METHOD_KINDS
from benchbase.reporting.markdown import fmt
from benchbase.reporting.stats import (
    CROSSED,
    DECIDED,
    MIN_SEEDS,
    NESTED,
    VERDICTS,
    Comparison,
    compare,
    correct,
    shared_seed_means,
)
from benchbase.reporting.tables import HEADER, Row, Table
from benchbase.running.analysis import in_task_unit, load_declarations, rope_for
from benchbase.running.gridfile import builtin_grid_path
from benchbase.running.specs import flatten

#: Baselines every table is compared against, beside those of the grid's ``[analysis]``.
DEFAULT_BASELINES: dict[str, Any] = {"pretext": "none", "rebalancer": "none", "train.pretrain_pool": "train"}
BUILTIN_GRIDS = ("quick.toml", "glass.toml", "paper.toml")
#: Seeds added per round of `benchbase run --until-decided` when the grid does not say.
DEFAULT_ROUND = 4


# --- analysis settings -------------------------------------------------------------------------


def analyses_by_grid(store: Any) -> dict[str, dict[str, Any]]:
    """Grid name -> {"source", "analysis", "questions", "seeds"}: the built-in grids' declarations,
    replaced by what the store recorded for the grids that ran into it."""
    out: dict[str, dict[str, Any]] = {}
    for name in BUILTIN_GRIDS:
        path = builtin_grid_path(name)
        if path.is_file():
            raw = tomllib.loads(path.read_text())
            out[raw.get("name", name)] = {
                "source": f"grids/{name}",
                "analysis": raw.get("analysis", {}),
                "questions": raw.get("question", []),
                "seeds": raw.get("seeds", [0]),
            }
    for grid in store.grids():
        recorded = grid.get("analysis") or {}
        if not isinstance(recorded, dict):  # edited by hand, or written by another program
            recorded = {}
        source = grid.get("source") or grid["name"]
        # what a store recorded is read leniently: a bad declaration of an old grid is skipped with
        # a note, never allowed to break the leaderboards of another
        analysis, questions, problems = load_declarations(recorded.get("analysis"), recorded.get("questions"), source)
        seeds = recorded.get("seeds")
        if not (isinstance(seeds, list) and all(type(s) is int for s in seeds)):
            seeds = out.get(grid["name"], {}).get("seeds", [])
        out[grid["name"]] = {
            "source": source,
            "analysis": analysis,
            "questions": questions,
            "seeds": seeds,
            "problems": problems,
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


def rope_of(analysis: dict[str, Any], column: Column, task: TaskInfo | None = None) -> tuple[float, str]:
    """The ROPE of a column and where it comes from (`benchbase.running.analysis.rope_for`)."""
    return rope_for(analysis, column.name, column.metric, task, in_task_unit(column))


# --- matching rows -----------------------------------------------------------------------------


def _factor_key(factor: str) -> tuple[str, tuple[str, ...]]:
    """The flattened key holding a factor's value, and the key prefixes that belong to it (which
    may differ between a method and its baseline)."""
    if factor in METHOD_KINDS:
        owned: tuple[str, ...] = (f"{factor}.",)
        if factor == "pretext":  # without pretraining, the pretraining settings do not exist
            owned += tuple(f"train.{s}" for s in PRETRAINING_SETTINGS) + ("pretrain_dataset.",)
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


# --- comparing two rows ------------------------------------------------------------------------


@dataclass
class Candidate:
    """A pair of rows and a column to compare them on, before any look at the data."""

    table: Table
    method: Row
    baseline: Row
    column: Column
    rope: float
    rope_source: str

    def common_seeds(self, order: list[int]) -> list[int]:
        """The seeds both rows have, in the study's seed order (`SeedPlan.order`)."""
        both = set(self.method.seeds) & set(self.baseline.seeds)
        ranked = {seed: i for i, seed in enumerate(order)}
        return sorted(both, key=lambda s: (ranked.get(s, len(ranked)), s))


@dataclass(frozen=True)
class SeedPlan:
    """How a study's seeds arrive: the grid's seeds first, then rounds of `round` new seeds
    (`benchbase run --until-decided`); `sequential` when the study looks after every round."""

    initial: tuple[int, ...]
    round: int = 0
    sequential: bool = False

    def order(self, seeds: set[int]) -> list[int]:
        first = [s for s in self.initial if s in seeds]
        return first + sorted(seeds - set(self.initial))

    def seeds_at(self, look: int) -> int:
        """Seeds a comparison has at look `look` (1-based)."""
        return len(self.initial) + (look - 1) * self.round


def compare_rows(candidate: Candidate, seeds: list[int], look: int = 1, sequential: bool = False) -> Comparison | None:
    """The paired comparison of a candidate on `seeds` (which both rows have)."""
    if not seeds:
        return None
    a = candidate.method.cells[candidate.column.name]
    b = candidate.baseline.cells[candidate.column.name]
    ia = [candidate.method.seeds.index(s) for s in seeds]
    ib = [candidate.baseline.seeds.index(s) for s in seeds]
    if not (np.isfinite(a.points[ia]).all() and np.isfinite(b.points[ib]).all()):
        return None
    shared = None
    if a.design == CROSSED and b.design == CROSSED:
        shared = shared_seed_means(a.replicates[ia] - b.replicates[ib])
    return compare(
        candidate.method.label,
        candidate.baseline.label,
        candidate.column.name,
        get_metric(candidate.column.metric).higher_is_better,
        a.points[ia],
        b.points[ib],
        shared,
        rope=candidate.rope,
        rope_source=candidate.rope_source,
        look=look,
        sequential=sequential,
    )


def evaluate(candidates: list[Candidate], plan: SeedPlan) -> list[Comparison | None]:
    """Every candidate's comparison, Holm-corrected as one family.

    Looked at once, each candidate uses all its paired seeds. A sequential study is replayed look by
    look, as `benchbase run --until-decided` saw it: at look k every open comparison uses its first
    ``plan.seeds_at(k)`` paired seeds at α_k; a decided one keeps the verdict of its deciding look
    and the seeds it had then; the rest go on while they have seeds for a next look."""
    orders = [c.common_seeds(plan.order(set(c.method.seeds) | set(c.baseline.seeds))) for c in candidates]
    if not plan.sequential:
        out = [compare_rows(c, seeds) for c, seeds in zip(candidates, orders, strict=True)]
        correct([c for c in out if c is not None])
        return out
    frozen: dict[int, Comparison] = {}
    current: list[Comparison | None] = [None] * len(candidates)
    look = 1
    while True:
        for i, candidate in enumerate(candidates):
            if i not in frozen:
                current[i] = compare_rows(candidate, orders[i][: plan.seeds_at(look)], look, True)
        _correct_open([c for c in current if c is not None], {id(c) for c in frozen.values()})
        for i, comparison in enumerate(current):
            if comparison is not None and i not in frozen and comparison.decided:
                frozen[i] = comparison
        # only a complete next look counts: a round cut short by a kill is finished before it is used
        going_on = [i for i in range(len(candidates)) if i not in frozen and len(orders[i]) >= plan.seeds_at(look + 1)]
        if not going_on or plan.round <= 0:
            return current
        look += 1


def _correct_open(comparisons: list[Comparison], frozen: set[int]) -> None:
    """Holm over the whole family; comparisons decided at an earlier look keep their values."""
    kept = {id(c): (c.p_holm, c.p_equivalence_holm, c.family_size) for c in comparisons if id(c) in frozen}
    correct(comparisons)
    for comparison in comparisons:
        if id(comparison) in kept:
            comparison.p_holm, comparison.p_equivalence_holm, comparison.family_size = kept[id(comparison)]


# --- questions ---------------------------------------------------------------------------------


def _matches(table: Table, question: dict[str, Any]) -> bool:
    for key, attribute in (("dataset", table.dataset), ("protocol", table.protocol), ("task", table.task.name)):
        wanted = question.get(key)
        if wanted is not None and attribute not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def _where(row: Row, where: dict[str, Any]) -> bool:
    flat = flatten(row.config)
    return all(k in flat and _canon(flat[k]) == _canon(v) for k, v in where.items())


def _steps(question: dict[str, Any]) -> list[tuple[Any, list[Any] | None]]:
    if "ladder" in question:
        ladder = question["ladder"]
        return [(ladder[i], [ladder[i + 1]]) for i in range(len(ladder) - 1)]
    return [(question["baseline"], question.get("treatments"))]


def question_candidates(question: dict[str, Any], tables: list[Table], analysis: dict[str, Any]) -> list[Candidate]:
    """The row pairs and columns that answer one question, in a stable order."""
    out = []
    for table in tables:
        if not _matches(table, question):
            continue
        columns = {c.name: c for c in table.columns}
        for metric in question["metrics"]:
            column = columns.get(metric)
            if column is None:
                continue
            rope, source = rope_of(analysis, column, table.task)
            for baseline, treatments in _steps(question):
                for method, base in pairs(table, question["factor"], baseline, treatments):
                    if _where(method, question.get("where", {})):
                        out.append(Candidate(table, method, base, column, rope, source))
    return out


@dataclass
class Answer:
    """One question's comparisons (one Holm family) and where each comes from."""

    grid: str
    source: str
    question: dict[str, Any]
    candidates: list[Candidate]
    comparisons: list[Comparison | None]
    plan: SeedPlan

    def answered(self) -> list[tuple[Candidate, Comparison]]:
        return [(c, x) for c, x in zip(self.candidates, self.comparisons, strict=True) if x is not None]


def seed_plan(info: dict[str, Any]) -> SeedPlan:
    """A grid's seed plan from its recorded declarations."""
    until = (info.get("analysis") or {}).get("until_decided")
    seeds = tuple(info.get("seeds") or ())
    if not until or not seeds:
        return SeedPlan(seeds)
    return SeedPlan(seeds, int(until.get("round", DEFAULT_ROUND)), sequential=True)


def answers(tables: list[Table], analyses: dict[str, dict[str, Any]]) -> list[Answer]:
    """Every question of every grid, answered from its grid's tables."""
    out = []
    for grid_name, info in sorted(analyses.items()):
        grid_tables = [t for t in tables if grid_name in t.grids]
        analysis = analysis_for(analyses, [grid_name])
        plan = seed_plan(info)
        for question in info.get("questions", []):
            candidates = question_candidates(question, grid_tables, analysis)
            out.append(Answer(grid_name, info["source"], question, candidates, evaluate(candidates, plan), plan))
    return out


def table_comparisons(
    table: Table, analysis: dict[str, Any], from_questions: list[tuple[str, Candidate, Comparison]]
) -> list[tuple[str, Comparison]]:
    """The comparisons shown under a table: those of the questions (with their question's Holm
    family, exactly as in FINDINGS.md), then each other method against its default baseline on the
    headline column, as one more family."""
    shown = [(family, comparison) for family, candidate, comparison in from_questions if candidate.table is table]
    covered = {
        (candidate.method.key, candidate.baseline.key, candidate.column.name)
        for _, candidate, _ in from_questions
        if candidate.table is table
    }
    column = table.headline
    rope, source = rope_of(analysis, column, table.task)
    extra = []
    for factor, baseline in analysis["baselines"].items():
        for method, base in pairs(table, factor, baseline):
            if (method.key, base.key, column.name) not in covered:
                extra.append(Candidate(table, method, base, column, rope, source))
    for comparison in evaluate(extra, SeedPlan(())):
        if comparison is not None:
            shown.append(("other", comparison))
    return shown


# --- rendering ---------------------------------------------------------------------------------


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _seeds_text(comparison: Comparison, plan: SeedPlan) -> str:
    text = str(comparison.seeds) + (" ⚑" if comparison.flagged else "")
    if plan.sequential:
        text += f" (look {comparison.look}{', decided' if comparison.decided else ''})"
    return text


def _verdict_text(comparison: Comparison) -> str:
    verdict = comparison.verdict
    return f"**{verdict}**" if verdict in DECIDED else verdict


def comparison_row(comparison: Comparison, plan: SeedPlan, lead: list[Any]) -> list[Any]:
    low, high = comparison.interval
    return [
        *lead,
        f"{comparison.difference:+.4f}",
        f"[{fmt(low)}, {fmt(high)}] ({comparison.level:.1%})",
        _p(comparison.p_value),
        _p(comparison.p_holm),
        _p(comparison.p_equivalence_holm),
        fmt(comparison.probability_of_improvement, 2),
        _seeds_text(comparison, plan),
        _verdict_text(comparison),
        comparison.explanation() or "-",
    ]


COMPARISON_HEADERS = [
    "Δ (method − baseline)",
    "CI (level)",
    "p",
    "p (Holm)",
    "p equivalent (Holm)",
    "P(improvement)",
    "seeds",
    "verdict",
    "what would decide it",
]
METHODS = (
    "Δ: mean paired difference over the seeds both rows have. CI and p come from one t statistic: a "
    "seed-level t-interval, plus the variance of the test set where every seed shares it (crossed design; "
    "`benchbase.reporting.stats`). p: two-sided test of no difference; p equivalent: TOST against the region of "
    "practical equivalence (ROPE); both Holm-corrected over the family. Verdicts: **better**/**worse**: a difference, "
    "with the CI wholly beyond the ROPE; **real but smaller than the ROPE**: a difference, and equivalence "
    "shown; **equivalent**: equivalence shown, no difference; inconclusive: neither, with the smallest "
    "difference its seeds detect at 80% power (MDE) and the seeds the observed spread would need. "
    "P(improvement): share of paired seeds where the method wins (ties half). "
    f"⚑: fewer than {MIN_SEEDS} paired seeds."
)


def render_comparisons(table: Table, shown: list[tuple[str, Comparison]], families: dict[str, int]) -> str:
    if not shown:
        return ""
    text = "## Paired comparisons\n\n" + METHODS + "\n\n"
    text += (
        "Family: the question of FINDINGS.md whose Holm correction applies (the same numbers as there); "
        "`other`: the table's remaining comparisons against a default baseline, corrected together.\n\n"
    )
    headers = ["family", "method", "baseline", "metric", "ROPE", *COMPARISON_HEADERS]
    rows = []
    for family, c in shown:
        label = f"({family}), {families.get(family, 0)} comparisons" if family != "other" else "other"
        rows.append(
            comparison_row(
                c, SeedPlan((), sequential=c.sequential), [label, c.method, c.baseline, c.metric, f"±{c.rope:g}"]
            )
        )
    return text + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + "\n"


def _summary(comparisons: list[Comparison]) -> str:
    by_metric: dict[str, list[str]] = {}
    for c in comparisons:
        by_metric.setdefault(c.metric, []).append(c.verdict)
    parts = []
    for metric, verdicts in by_metric.items():
        counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if verdicts.count(v))
        parts.append(f"`{metric}`: {counts} (of {len(verdicts)})")
    return "; ".join(parts)


def _ropes(answered: list[tuple[Candidate, Comparison]]) -> str:
    seen = {}
    for candidate, comparison in answered:
        seen.setdefault(comparison.metric, f"`{comparison.metric}` ±{comparison.rope:g} ({candidate.rope_source})")
    return ", ".join(seen.values())


def _designs(answered: list[tuple[Candidate, Comparison]]) -> str:
    designs = sorted({comparison.design for _, comparison in answered})
    words = {
        CROSSED: "crossed (every seed scored on the same test graphs: their noise is added to the seed spread)",
        NESTED: "nested (each seed has its own test set)",
    }
    return "; ".join(words[d] for d in designs)


def _sequential_text(answer: Answer) -> str:
    if not answer.plan.sequential:
        return "Looked at once, at α = 0.05.\n\n"
    plan = answer.plan
    text = (
        f"Sequential: {len(plan.initial)} seeds, then rounds of {plan.round}; look k spends α/(k(k+1)), so that "
        "stopping when decided keeps the error rates (`benchbase.reporting.stats`).\n\n"
    )
    for _, comparison in answer.answered():
        state = (
            f"decided ({comparison.verdict}) after {comparison.seeds} seeds"
            if comparison.decided
            else f"open after {comparison.seeds} seeds, when the study stopped; MDE {comparison.detectable:.4g}"
        )
        text += f"- {comparison.method} vs {comparison.baseline}, `{comparison.metric}`: {state}\n"
    return text + "\n"


def render_findings(tables: list[Table], answered: list[Answer], problems: list[str] | None = None) -> str:
    text = HEADER + "# Findings\n\n"
    text += "The suite's research questions, answered from the stored runs by paired comparisons. " + METHODS + "\n"
    if problems:
        text += "\nDeclarations recorded in the store that were skipped:\n\n" + "".join(f"- {p}\n" for p in problems)
    for answer in answered:
        question = answer.question
        title = question.get("title", question.get("id", "?"))
        text += f"\n## ({question.get('id', '?')}) {title}\n\n"
        pairs_ = answer.answered()
        if not pairs_:
            text += f"No stored runs answer this yet: run `benchbase run --grid {answer.source}`.\n"
            continue
        comparisons = [c for _, c in pairs_]
        text += f"From grid `{answer.source}`; ROPE: {_ropes(pairs_)}. Design: {_designs(pairs_)}. "
        text += f"Holm family: these {len(comparisons)} comparisons.\n\n"
        text += f"**Answer**: {_summary(comparisons)}.\n\n"
        text += _sequential_text(answer)
        headers = ["table", "method", "baseline", "metric", *COMPARISON_HEADERS]
        rows = [
            comparison_row(c, answer.plan, [f"[{k.table.name}]({k.table.name}.md)", c.method, c.baseline, c.metric])
            for k, c in pairs_
        ]
        text += tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
    return text
