"""Studies that run until they decide: ``benchbase run --until-decided``.

The grid runs as usual; then every ``[[question]]`` is answered from the store
(`benchbase.reporting.findings`, replaying the looks of a sequential study) and each comparison still
undecided gives both of its rows the next round of seeds. A decided comparison (better, worse,
equivalent, real but smaller than the ROPE) receives none, and neither does a futile one: one whose
observed spread says that even ``max_seeds`` seeds would not decide it at the next look's error
rate. Rounds go on until every comparison is decided or futile, a row reaches ``max_seeds``, or the
budget is spent: a number of added runs, or a wall-clock duration checked before each round (a round
is started whole or not at all, so its seeds stay paired).

Nothing here is state of its own: the store's runs are the study. A killed study is resumed by the
same command, which replays the looks from the stored seeds, finishes the round that was cut short
and goes on; the added runs are ordinary runs (resume, ``--jobs``, executors and ``reproduce`` treat
them like any other). A runs budget gives the same study on every machine; a duration does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from benchbase.compute.runspec import RunSpec
from benchbase.contract.identity import content_hash
from benchbase.reporting.findings import DEFAULT_ROUND
from benchbase.reporting.stats import look_alpha
from benchbase.reporting.tables import build_tables
from benchbase.running.analysis import Budget
from benchbase.running.planning import Grid
from benchbase.running.specs import config_of
from benchbase.running.store import FINISHED, Store

#: Seeds a row gets at most, when ``[analysis] until_decided`` does not say.
DEFAULT_MAX_SEEDS = 30


@dataclass
class Round:
    """What one look decided: the runs it adds and the comparisons still open."""

    runs: list[RunSpec]
    open_comparisons: int
    decided: int
    futile: int = 0  # open, but more seeds than max_seeds would be needed (or none would do)


def settings(grid: Grid) -> dict[str, Any]:
    """The grid's ``until_decided`` settings with defaults filled in."""
    declared = dict(grid.analysis.get("until_decided") or {})
    declared.setdefault("round", DEFAULT_ROUND)
    declared.setdefault("max_seeds", DEFAULT_MAX_SEEDS)
    return declared


def sequential_grid(grid: Grid) -> Grid:
    """The grid marked as a sequential study, so that FINDINGS.md replays its looks."""
    analysis = {**grid.analysis, "until_decided": settings(grid)}
    return replace(grid, analysis=analysis)


def next_round(grid: Grid, store: Store) -> Round:
    """The runs the next round adds: for each open comparison, both rows up to the seeds of its
    next look (at most ``max_seeds``)."""
    from benchbase.reporting.findings import analyses_by_grid, answers

    options = settings(grid)
    analyses = analyses_by_grid(store)
    analyses = {grid.name: analyses[grid.name]} if grid.name in analyses else {}
    tables = [t for t in build_tables(store, store.runs()) if grid.name in t.grids]
    wanted: dict[str, int] = {}  # row key -> seeds it should have
    open_count = decided = futile = 0
    max_seeds = int(options["max_seeds"])
    for answer in answers(tables, analyses):
        for candidate, comparison in answer.answered():
            if comparison.decided:
                decided += 1
                continue
            open_count += 1
            # Futility: seeds go only where the observed spread says max_seeds could decide at the
            # next look's error rate. Stopping for futility never raises the false-finding rate.
            next_alpha = look_alpha(comparison.look + 1, True) / max(comparison.family_size, 1)
            needed = comparison.estimate.seeds_needed(comparison.rope, next_alpha)
            if needed is None or needed > max_seeds:
                futile += 1
                continue
            target = min(answer.plan.seeds_at(comparison.look + 1), max_seeds)
            for row in (candidate.method, candidate.baseline):
                wanted[row.key] = max(wanted.get(row.key, 0), target)
    order = _seed_order(grid, options)
    templates = _templates(grid)
    runs = []
    for key, target in sorted(wanted.items()):
        template = templates.get(key)
        if template is None:  # a row of another grid's runs: not this study's to extend
            continue
        for seed in order[:target]:
            spec = {**template.spec, "seed": seed}
            runs.append(RunSpec(spec))
    finished = store.status_of([r.run_id for r in runs])
    todo = [r for r in runs if finished.get(r.run_id) != FINISHED]
    return Round(todo, open_count, decided, futile)


def _seed_order(grid: Grid, options: dict[str, Any]) -> list[int]:
    """The grid's seeds, then new seeds counting up from the largest."""
    start = max(grid.seeds) + 1
    extra = max(0, int(options["max_seeds"]) - len(grid.seeds))
    return list(grid.seeds) + list(range(start, start + extra))


def _templates(grid: Grid) -> dict[str, RunSpec]:
    """Row key (`benchbase.running.specs.config_of`) -> one of the grid's runs of that row."""
    out: dict[str, RunSpec] = {}
    for run in grid.runs:
        out.setdefault(content_hash(config_of(run.spec)), run)
    return out


def added_runs(grid: Grid, store: Store) -> int:
    """Finished runs of the grid's rows on seeds beyond the grid's own: what the budget counts."""
    keys = set(_templates(grid))
    initial = set(grid.seeds)
    return sum(
        1
        for run in store.runs()
        if run["status"] == FINISHED
        and int(run["spec"]["seed"]) not in initial
        and content_hash(config_of(run["spec"])) in keys
    )


def run_until_decided(
    grid: Grid,
    store: Store,
    run_grid: Callable[[Grid], Any],
    budget: Budget,
    say: Callable[[str], None],
) -> list[Any]:
    """Run `grid`, then rounds of seeds until decided or out of budget; returns each round's
    summary. `run_grid` runs one grid to the end (a fresh executor each time)."""
    grid = sequential_grid(grid)
    started = time.monotonic()
    summaries = [run_grid(grid)]
    look = 1
    while True:
        step = next_round(grid, store)
        if not step.runs:
            if step.open_comparisons == 0:
                why = "every comparison is decided"
            else:
                why = (
                    f"{step.open_comparisons} open: {step.futile} would need more than max_seeds = "
                    f"{settings(grid)['max_seeds']} seeds (or cannot be decided by seeds), the rest reached it"
                )
            say(f"until-decided: stopping after look {look}: {step.decided} decided, {why}")
            return summaries
        spent = added_runs(grid, store)
        if budget.runs is not None and spent + len(step.runs) > budget.runs:
            say(
                f"until-decided: budget of {budget.runs} added runs would be exceeded ({spent} spent, the next "
                f"round needs {len(step.runs)}); {step.open_comparisons} comparison(s) stay open"
            )
            return summaries
        if budget.seconds is not None and time.monotonic() - started >= budget.seconds:
            say(f"until-decided: time budget spent; {step.open_comparisons} comparison(s) stay open")
            return summaries
        look += 1
        say(
            f"until-decided: look {look - 1}: {step.decided} decided, {step.open_comparisons} open; "
            f"adding {len(step.runs)} runs"
        )
        summaries.append(run_grid(replace(grid, runs=step.runs, study_of={})))
