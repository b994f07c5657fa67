"""The ``benchbase`` command line."""

from __future__ import annotations

import csv
import functools
import io
import json
import sqlite3
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from benchbase.contract.errors import GridError, PluginError
from benchbase.contract.kinds import RUN_KINDS
from benchbase.contract.registry import default_registry

# Python hides DeprecationWarnings raised outside __main__, so a plugin's user would never see that
# the plugin uses a form the next contract removes: show those of the contract once each.
warnings.filterwarnings("default", message=r".*removed in contract", category=DeprecationWarning)

app = typer.Typer(
    help="benchbase: which pretext task, encoder and rebalancing strategy helps a GNN extrapolate?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="List datasets, or prepare one (featurise and cache) for offline use.")
app.add_typer(datasets_app, name="datasets")


def friendly_errors(fn):
    """Bad input ends with one clear message and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PluginError as exc:
            typer.secho(f"error: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        except sqlite3.Error as exc:  # the store's disk is full, or its filesystem cannot lock
            typer.secho(f"error: the results store cannot be used: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        except OSError as exc:  # a full disk or a permission while writing outputs
            typer.secho(f"error: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None

    return wrapper


def _warn_failed_plugins() -> None:
    registry = default_registry()
    for failure in registry.failures:
        typer.secho(
            f"warning: plugin {failure.plugin!r} from {failure.distribution} {failure.version} failed to load: "
            f"{failure.error}",
            err=True,
            fg="yellow",
        )
    for kind, name in sorted(registry.conflicts):
        typer.secho(f"warning: {registry.conflict(kind, name)}", err=True, fg="yellow")
    for misnamed in registry.misnamed:
        typer.secho(f"warning: {misnamed.message()}", err=True, fg="yellow")


@app.command()
@friendly_errors
def plugins(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """Every registered dataset, encoder, pretext task, rebalancer and protocol, with its source."""
    from tabulate import tabulate

    registry = default_registry()
    rows = [e.info() for e in registry.listing()]
    for (kind, name), owners in sorted(registry.conflicts.items()):  # listed, so that the clash is visible
        description = "CONFLICT: registered by " + " and by ".join(owners)
        rows.append({"kind": kind, "name": name, "plugin": None, "distribution": " / ".join(owners),
                     "version": "", "description": description, "parameters": None, "conflict": owners})  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        _warn_failed_plugins()
        return
    table = [[r["kind"], r["name"], f"{r['distribution']} {r['version']}", r["description"][:70]] for r in rows]
    typer.echo(tabulate(table, headers=["kind", "name", "provided by", "description"], tablefmt="simple"))
    _warn_failed_plugins()


def _progress_printer() -> Any:
    start = time.perf_counter()

    def show(done: int, total: int, message: str) -> None:
        width = 24
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        typer.echo(f"[{bar}] {done}/{total} {time.perf_counter() - start:6.0f}s  {message}", err=True)

    return show


@app.command()
@friendly_errors
def run(
    file: Annotated[Path | None, typer.Argument(help="Grid file (TOML). Default: the built-in quick grid.")] = None,
    grid: Annotated[bool, typer.Option("--grid", help="Run a grid (the default grid when no FILE is given).")] = False,
    store: Annotated[Path, typer.Option(help="Results store directory.")] = Path("results"),
    shared_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where jobs write checkpoints, predictions and records: a directory every worker reaches "
            "(default: inside the store, which only the driver opens). Recorded in the store."
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(min=1, help="Runs in parallel, in separate processes. Default: one per CPU core.")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            help="Device of every run: cpu, cuda, cuda:N, or auto (cuda when available); overrides the grid's "
            "train.device setting. Models and batches move to it; the data stays in CPU arrays."
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="Where runs execute: a registered executor (`benchbase plugins` lists them; built in: local). "
            "Its options come from the grid's executor.NAME table and --executor-option."
        ),
    ] = "local",
    executor_option: Annotated[
        list[str] | None, typer.Option("--executor-option", help="An executor option key=value (repeatable).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run and what is skipped.")] = False,
    leaderboard_out: Annotated[Path, typer.Option(help="Where leaderboards are regenerated after the grid.")] = Path(
        "leaderboards"
    ),
    no_leaderboard: Annotated[bool, typer.Option("--no-leaderboard", help="Do not regenerate leaderboards.")] = False,
    until_decided: Annotated[
        bool,
        typer.Option(
            "--until-decided",
            help="After the grid, add rounds of seeds to the rows of every [[question]] comparison that is still "
            "undecided, until all are decided, max_seeds is reached or the budget is spent (the grid's "
            "[analysis] until_decided table sets round, max_seeds and budget; a grid with that table runs this "
            "way anyway). Looks are corrected for optional stopping (benchbase.reporting.stats).",
        ),
    ] = False,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Budget of --until-decided: a number of added runs (200) or a wall-clock duration (90s, 8m, 1.5h). "
            "Default: the grid's until_decided.budget, else until max_seeds."
        ),
    ] = None,
) -> None:
    """Run every combination of a grid file; finished runs are skipped, so a killed grid resumes.

    `benchbase run --grid` runs the built-in default grid (QM9 HOMO-LUMO gap, quick profile) offline.
    """
    from benchbase.reporting.publish import write_leaderboards
    from benchbase.running.analysis import Budget, parse_budget
    from benchbase.running.driver import GridRunner
    from benchbase.running.executors import check_executor, make_executor
    from benchbase.running.planning import load_grid
    from benchbase.running.store import Store

    _warn_failed_plugins()
    registry = default_registry()
    the_grid = load_grid(registry, file, device)
    options = {**the_grid.executor.get(executor, {}), **_parse_params(executor_option)}
    check_executor(executor, options)  # before the store is created: a typo leaves nothing behind
    if executor == "local" and any(run.spec["numerics"]["device"] == "cuda" for run in the_grid.runs):
        import torch

        if not torch.cuda.is_available():
            raise GridError("the grid asks for device cuda, but torch sees no CUDA device on this machine")
    if dry_run:  # lists what would be skipped and why, also when that is everything
        _print_dry_run(the_grid, store)
        return
    if not the_grid.runs:
        reasons = sorted({skipped.reason for skipped in the_grid.skipped})
        raise GridError("nothing to run: every combination is skipped:\n  " + "\n  ".join(reasons))
    sequential = until_decided or "until_decided" in the_grid.analysis
    budget_text = budget if budget is not None else (the_grid.analysis.get("until_decided") or {}).get("budget")
    the_budget = parse_budget(budget_text, "--budget") if budget_text is not None else Budget()
    if budget is not None and not sequential:
        raise GridError("--budget applies to --until-decided (or a grid with [analysis] until_decided)")
    results = Store(store, shared_dir)
    typer.echo(
        f"grid {the_grid.name!r} ({the_grid.source}): {len(the_grid.runs)} runs, "
        f"{len(the_grid.skipped)} skipped combinations; store {store}",
        err=True,
    )
    runner = None

    def run_once(grid: Any) -> Any:
        nonlocal runner
        the_executor = make_executor(executor, jobs, options, workdir=results.shared / "engines")
        runner = GridRunner(grid, results, the_executor, _progress_printer())
        return runner.run()

    try:
        if sequential:
            from benchbase.reporting.until_decided import run_until_decided

            summaries = run_until_decided(the_grid, results, run_once, the_budget, lambda m: typer.echo(m, err=True))
            summary = _total(summaries)
        else:
            summary = run_once(the_grid)
    except KeyboardInterrupt:
        if runner is None:
            raise typer.Exit(130) from None
        done = runner.summary
        left = done.total - done.already_finished - done.finished - done.failed - done.finished_elsewhere
        typer.echo(
            f"interrupted after {done.seconds:.0f}s: {done.finished} finished, {done.failed} failed; "
            f"{left} runs not finished will run with the same command",
            err=True,
        )
        raise typer.Exit(130) from None
    elsewhere = f", {summary.finished_elsewhere} by another invocation" if summary.finished_elsewhere else ""
    typer.echo(
        f"done in {summary.seconds:.1f}s: {summary.finished} finished, {summary.failed} failed, "
        f"{summary.already_finished} were already finished{elsewhere}; pretraining stages computed "
        f"{summary.stages_computed}, reused {summary.stages_reused}",
        err=True,
    )
    if not no_leaderboard:
        from benchbase.reporting.publish import foreign_tables

        # a run merges into a leaderboard folder it did not make (the committed one, when run from a
        # clone's root): tables it has no runs for, and the summaries over them, stay as they are
        before = foreign_tables(leaderboard_out, []) if leaderboard_out.is_dir() else []
        written = write_leaderboards(results, leaderboard_out, registry.code_fingerprints(), keep_foreign=True)
        kept = sorted(set(before) - {p.name for p in written})
        if kept:
            typer.echo(
                f"leaderboards: {len(written)} tables written to {leaderboard_out}/; {len(kept)} tables this store has "
                f"no runs for, the index and FINDINGS.md left as they were (benchbase leaderboard --store {store} "
                "--out DIR writes a complete folder from this store)",
                err=True,
            )
        else:
            typer.echo(f"leaderboards written to {leaderboard_out}/", err=True)
    if summary.failed:
        for label, error in summary.failures:
            typer.secho(f"failed: {label}: {error}", err=True, fg="red")
        raise typer.Exit(1)


def _total(summaries: list[Any]) -> Any:
    """One summary of a study's rounds."""
    from dataclasses import replace

    first = summaries[0]
    total = replace(first, failures=list(first.failures))
    for later in summaries[1:]:
        for name in (
            "finished",
            "failed",
            "stages_computed",
            "stages_reused",
            "seconds",
            "redone",
            "finished_elsewhere",
        ):
            setattr(total, name, getattr(total, name) + getattr(later, name))
        total.total += later.total
        total.already_finished += later.already_finished
        total.failures += later.failures
    return total


def _print_dry_run(the_grid, store: Path) -> None:
    from benchbase.running.cost import Estimator, summary_lines
    from benchbase.running.store import FINISHED, Store

    done, runs, stages, ready = {}, [], [], set()
    if (store / "benchbase.sqlite").exists():
        existing = Store(store)
        done = existing.status_of([r.run_id for r in the_grid.runs])
        runs, stages = existing.runs(), existing.stages()
        ready = {s["stage_id"] for s in stages if s["status"] == FINISHED}
    stages_needed = {r.stage_id for r in the_grid.runs if r.stage_id}
    typer.echo(f"grid {the_grid.name!r} from {the_grid.source}, profile {the_grid.profile!r}, seeds {the_grid.seeds}")
    typer.echo(f"will run ({len(the_grid.runs)} runs, {len(stages_needed)} shared pretraining stages):")
    for run in the_grid.runs:
        state = " (finished, will be skipped)" if done.get(run.run_id) == FINISHED else ""
        typer.echo(f"  {run.run_id}  {run.label()}{state}")
    typer.echo(f"skipped ({len(the_grid.skipped)}):")
    for skipped in the_grid.skipped:
        typer.echo(f"  {skipped.label}: {skipped.reason}")
    finished = {run_id for run_id, status in done.items() if status == FINISHED}
    typer.echo(f"total: {len(the_grid.runs)} runs ({len(finished)} already finished), {len(the_grid.skipped)} skipped")
    if len(finished) < len(the_grid.runs):
        typer.echo("estimated compute (upper bound: every run to its maximum epochs):")
        estimator = Estimator(default_registry(), runs)
        costs = estimator.study_costs(the_grid, finished, ready)
        for line in summary_lines(costs, estimator, the_grid):
            typer.echo(f"  {line}")


def _open_store(store: Path, allow_empty: bool = False) -> Any:
    from benchbase.running.store import Store

    if not (store / "benchbase.sqlite").exists():
        raise GridError(f"no results store at {store} (run a grid first, or pass --store)")
    return Store(store, allow_empty=allow_empty)


@app.command()
@friendly_errors
def results(
    store: Annotated[Path, typer.Option(help="Results store directory.")] = Path("results"),
    format: Annotated[str, typer.Option(help="jsonl or csv.")] = "jsonl",
    predictions: Annotated[
        Path | None,
        typer.Option(help="Also export each finished run's predictions to this directory (one .npz per run)."),
    ] = None,
    rejected: Annotated[
        Path | None,
        typer.Option(help="Also export the input rows the datasets rejected (dataset, id, why) to this CSV file."),
    ] = None,
) -> None:
    """Export every run (spec, status, metrics; `stale` when computed by other code) to standard output."""
    from benchbase.reporting.tables import export_rows

    the_store = _open_store(store)
    if format not in ("jsonl", "csv"):
        raise GridError(f"unknown format {format!r}; use jsonl or csv")
    runs = the_store.runs()
    rows = export_rows(runs, default_registry().code_fingerprints())
    if predictions is not None:
        _export_predictions(the_store, runs, predictions)
    if rejected is not None:
        _export_rejected(runs, rejected)
    if format == "jsonl":
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True, default=str))
        return
    flat = [_flat_row(row) for row in rows]
    columns = sorted(set().union(*flat)) if flat else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(flat)
    typer.echo(buffer.getvalue(), nl=False)


def _export_predictions(store: Any, runs: list[dict[str, Any]], out: Path) -> None:
    """Copy each finished run's verified predictions to `out`/<run id>.npz, with a manifest."""
    import shutil

    from benchbase.running.store import is_job_id

    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for run in runs:
        if run["status"] != "finished":
            continue
        if not store.has_verified_predictions(run):
            typer.secho(f"warning: predictions of run {run['run_id']} are missing or damaged", err=True, fg="yellow")
            continue
        if not is_job_id(run["run_id"]) or run.get("predictions") != f"predictions/{run['run_id']}.npz":
            # file names come from validated ids only: nothing is ever written outside `out`
            typer.secho(f"warning: run {run['run_id']!r} has no valid id or predictions path: skipped", err=True)
            continue
        shutil.copyfile(store.file(run["predictions"]), out / f"{run['run_id']}.npz")
        manifest.append({"run_id": run["run_id"], "file": f"{run['run_id']}.npz", "spec": run["spec"]})
    readme = (
        "Each <run id>.npz holds arrays '<slice>/<task>/<field>': y_true, y_pred, graph (dataset position of "
        "the row's graph) and graph_id (the dataset's native id). Node and edge tasks have one row per node "
        "or edge; the slice 'pretext' holds a pretext head's true and predicted class per held-out item.\n"
    )
    (out / "README.txt").write_text(readme)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    typer.echo(f"exported the predictions of {len(manifest)} runs to {out}/", err=True)


def _export_rejected(runs: list[dict[str, Any]], out: Path) -> None:
    """The rows each dataset could not use, as listed in its runs' records, once per dataset and id."""
    from benchbase.compute.adapters import dataset_label

    found: dict[tuple[str, str], str] = {}
    short: dict[str, int] = {}  # dataset -> rejected rows its records count but do not list
    for run in runs:
        details = run.get("details") or {}
        examples = details.get("skipped_examples") or []
        if not examples:
            continue
        dataset = dataset_label(run["spec"]["dataset"]["name"], run["spec"]["dataset"]["params"])
        for native_id, why in examples:
            found.setdefault((dataset, str(native_id)), str(why))
        missing = int(details.get("skipped_inputs", len(examples))) - len(examples)
        short[dataset] = max(short.get(dataset, 0), missing)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "id", "reason"])
        writer.writerows([dataset, native_id, why] for (dataset, native_id), why in sorted(found.items()))
    typer.echo(f"exported {len(found)} rejected rows to {out}", err=True)
    for dataset, missing in sorted(short.items()):
        if missing > 0:  # a record keeps the first rejected rows only: say so rather than look complete
            typer.secho(f"warning: {dataset}: {missing} more rejected rows are counted but not listed", err=True)


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("run_id", "status", "error", "n_params", "seconds", "hardware", "git_commit")}
    spec = row["spec"]
    for kind in RUN_KINDS:
        out[kind] = spec[kind]["name"]
        out[f"{kind}_params"] = json.dumps(spec[kind]["params"], sort_keys=True)
    out["seed"] = spec["seed"]
    for task, metrics in (row["metrics"] or {}).items():
        for key, value in metrics.items():
            out[f"{task}/{key}"] = value
    return out


@app.command()
@friendly_errors
def leaderboard(
    store: Annotated[
        Path | None, typer.Option(help="Results store directory (default: results; optional with --from).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("leaderboards"),
    from_: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            help="Also merge this export (a results.jsonl, or a folder holding one and maybe predictions/); "
            "repeatable. Rows keep their provenance; conflicting records of one run are reported.",
        ),
    ] = None,
) -> None:
    """Regenerate leaderboards, plots, FINDINGS.md and results.jsonl from the store and any exports."""
    from benchbase.reporting.publish import write_leaderboards

    if not from_:
        written = write_leaderboards(_open_store(store or Path("results")), out, default_registry().code_fingerprints())
        typer.echo(f"wrote {len(written)} tables, {out}/README.md and {out}/FINDINGS.md")
        return
    from benchbase.running.merge import Merged

    # Only an explicitly named store must exist: `--from` alone merges exports without one.
    local = store or Path("results")
    the_store = _open_store(local) if store is not None or (local / "benchbase.sqlite").exists() else None
    merged = Merged.of(the_store, str(local), from_)
    sources = {source.id: source for source in merged.sources}
    for conflict in merged.conflicts:
        typer.secho(f"conflict: {conflict.line(sources)}", err=True, fg="yellow")
    written = write_leaderboards(merged, out, default_registry().code_fingerprints())
    typer.echo(merged.summary())
    typer.echo(f"wrote {len(written)} tables, {out}/README.md and {out}/FINDINGS.md")


@app.command()
@friendly_errors
def reproduce(
    run_ids: Annotated[list[str] | None, typer.Argument(help="Run ids to re-run (default: a sample).")] = None,
    from_: Annotated[
        Path, typer.Option("--from", help="The export to check: a results.jsonl, or a folder holding one.")
    ] = Path("leaderboards/results.jsonl"),
    sample: Annotated[int, typer.Option(min=1, help="How many runs to sample (one pretrained, one not).")] = 2,
    store: Annotated[
        Path | None, typer.Option(help="Store for the re-runs (default: a fresh temporary directory).")
    ] = None,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Largest absolute difference allowed.")] = 0.0,
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="Sample only runs of this dataset (repeatable), e.g. where only its data is at hand."),
    ] = None,
) -> None:
    """Re-run runs of an export with the code installed now; exit 1 if any metric differs."""
    import tempfile

    from benchbase.running.reproduce import choose, of_datasets, read_export
    from benchbase.running.reproduce import reproduce as run_reproduce
    from benchbase.running.store import Store

    rows = choose(of_datasets(read_export(from_), dataset or []), run_ids or [], sample)
    registry = default_registry()
    with tempfile.TemporaryDirectory(prefix="benchbase-reproduce-") as tmp:
        the_store = Store(store or tmp)
        typer.echo(f"re-running {len(rows)} run(s) of {from_} into {the_store.root}", err=True)
        outcomes = run_reproduce(registry, rows, the_store, tolerance, _progress_printer())
    failed = 0
    for outcome in outcomes:
        identity = "" if outcome.same_identity else f" (now {outcome.new_run_id}: other code or numerics)"
        if outcome.ok:
            typer.echo(f"{outcome.run_id} {outcome.label}: identical{identity}")
            continue
        failed += 1
        if outcome.error:
            typer.echo(f"{outcome.run_id} {outcome.label}: FAILED{identity}: {outcome.error}")
            continue
        typer.echo(f"{outcome.run_id} {outcome.label}: {len(outcome.differences)} metric(s) differ{identity}")
        for key, old, new in outcome.differences[:10]:
            typer.echo(f"    {key}: recorded {old!r}, now {new!r}")
    typer.echo(f"{len(outcomes) - failed} of {len(outcomes)} run(s) reproduced within {tolerance:g}")
    if failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def doctor(
    store: Annotated[Path, typer.Option(help="Results store directory.")] = Path("results"),
    repair: Annotated[bool, typer.Option("--repair", help="Apply the repairs it lists.")] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="Move the database aside and recreate it from the job records on disk."),
    ] = False,
) -> None:
    """Check a store (integrity, damaged or orphaned files, stale claims, unfinished and stale runs)
    and say what would be repaired; --repair does it. Exit 1 while problems remain."""
    from benchbase.running import doctor as checks

    if rebuild:
        if not store.is_dir():
            raise GridError(f"no results store at {store}")
        moved, loaded = checks.rebuild(store)
        aside = f"the old one kept as {moved}; " if moved else ""
        typer.echo(f"{store}/benchbase.sqlite recreated: {aside}{loaded} job record(s) loaded")
    try:
        the_store = _open_store(store, allow_empty=True)
    except sqlite3.DatabaseError as exc:  # not even its header: nothing else can be examined
        typer.echo(f"{store}/benchbase.sqlite cannot be read ({exc}) -> none here: benchbase doctor --rebuild")
        raise typer.Exit(1) from None
    if not rebuild:
        try:
            the_store._refuse_lost_database()
        except PluginError as exc:
            typer.echo(f"{exc} -> none here: benchbase doctor --rebuild")
            raise typer.Exit(1) from None
    findings = checks.examine(the_store, default_registry().code_fingerprints())
    if not findings:
        typer.echo(f"{store}: healthy (schema version {the_store.schema_version()})")
        return
    for finding in findings:
        action = "repaired" if repair and finding.fix else "would repair" if finding.fix else "note"
        typer.echo(f"{finding.problem} -> {action}: {finding.repair}")
    if repair:
        applied = checks.repair(findings)
        typer.echo(f"{applied} repair(s) applied")
    remaining = [f for f in findings if (f.fix is not None and not repair) or f.repair.startswith("none here")]
    if remaining:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def collect(store: Annotated[Path, typer.Option(help="Results store directory.")] = Path("results")) -> None:
    """Load job records that never reached the database (the driver was killed, or detached)."""
    from benchbase.running.collect import collect_records, refused

    the_store = _open_store(store, allow_empty=True)  # an emptied database is what collecting fixes
    loaded = collect_records(the_store)
    typer.echo(f"loaded {loaded} record(s) into {store}/benchbase.sqlite")
    bad = refused(the_store)
    for path, problem in bad:
        typer.secho(f"refused {path}: {problem}", err=True, fg="red")
    if bad:
        typer.secho(f"{len(bad)} record(s) refused: delete them if no job of yours wrote them", err=True, fg="red")
        raise typer.Exit(1)


@datasets_app.callback(invoke_without_command=True)
@friendly_errors
def datasets(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False
) -> None:
    """List datasets with their tasks, size (when known) and whether their data is available locally."""
    if ctx.invoked_subcommand is not None:
        return
    from tabulate import tabulate

    registry = default_registry()
    rows = []
    for name in registry.names("dataset"):
        entry = registry.get("dataset", name)
        try:
            info = entry.obj().describe()
        except Exception as exc:  # one broken dataset must not hide the others
            info = {"error": f"{type(exc).__name__}: {exc}"}
        rows.append({"name": name, "distribution": entry.distribution, "description": entry.description, **info})
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = [
        [
            r["name"],
            ", ".join(r.get("tasks", []))[:40],
            _units_text(r.get("units")),
            r.get("size", "?"),
            r.get("available", "?"),
            str(r.get("source", ""))[:60],
        ]
        for r in rows
    ]
    headers = ["dataset", "tasks", "units", "graphs", "available locally", "source"]
    typer.echo(tabulate(table, headers=headers, tablefmt="simple"))
    typer.echo("(references and descriptions: benchbase datasets --json)")


def _units_text(units: Any) -> str:
    """One unit when every task shares it, else the first few task=unit pairs."""
    if not isinstance(units, dict) or not units:
        return ""
    distinct = sorted({str(u) for u in units.values() if u})
    if len(distinct) == 1:
        return distinct[0]
    return ", ".join(f"{task}={unit}" for task, unit in list(units.items())[:3] if unit)[:40]


@datasets_app.command("prepare")
@friendly_errors
def datasets_prepare(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. qm9/homo_lumo_gap.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="Dataset parameter key=value.")] = None,
) -> None:
    """Featurise and cache a dataset so that later runs load it offline in seconds."""
    from benchbase.compute.loading import build_dataset

    dataset = build_dataset(default_registry(), name, _parse_params(param))
    dataset.prepare(progress=True)
    typer.echo(f"{name}: ready ({dataset.arrays().num_graphs} graphs)")


def _parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GridError(f"parameter {item!r} must look like key=value")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value  # a bare string
    return params


@app.command()
@friendly_errors
def protocols(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """Every protocol with its parameters and their defaults."""
    from benchbase.compute.splits import protocol_table

    table = protocol_table(default_registry())
    if as_json:
        typer.echo(json.dumps(table, indent=2, default=str))
        return
    for row in table:
        typer.echo(f"{row['name']}: {row['description']}")
        for key, info in row["parameters"].items():
            typer.echo(f"    {key} = {json.dumps(info['default'], default=str)}  ({info['allowed']}) {info['help']}")


@app.command()
@friendly_errors
def split(
    dataset: Annotated[str, typer.Argument(help="Dataset name.")],
    protocol: Annotated[str, typer.Option(help="Protocol name (see `benchbase protocols`).")],
    out: Annotated[Path, typer.Option(help="Output JSON file.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="Protocol parameter key=value.")] = None,
    dataset_param: Annotated[list[str] | None, typer.Option("--dataset-param", help="Dataset parameter.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random parts of the split.", min=0, max=2**32 - 1)] = 0,
) -> None:
    """Write a protocol's split as native dataset ids: {"train": [...], "valid": [...], "test": [...]}."""
    from benchbase.compute.loading import build_dataset, build_protocol
    from benchbase.compute.splits import split_to_native

    registry = default_registry()
    the_dataset = build_dataset(registry, dataset, _parse_params(dataset_param))
    the_protocol = build_protocol(registry, protocol, _parse_params(param))
    parts = the_protocol.split(the_dataset, the_protocol.task_of(the_dataset), seed)
    payload = split_to_native(parts, the_dataset.ids())
    out.write_text(json.dumps(payload))
    typer.echo(", ".join(f"{name}: {len(v)}" for name, v in payload.items()) + f" -> {out}")


# --- benchbase new-plugin ------------------------------------------------------------------------


@app.command("new-plugin")
@friendly_errors
def new_plugin(
    name: Annotated[str, typer.Argument(help="Short name, e.g. acme: package benchbase_acme, names acme-...")],
    kinds: Annotated[
        str, typer.Option(help="Comma-separated kinds: dataset,encoder,pretext,rebalancer,protocol,metric, or all.")
    ] = "all",
    dest: Annotated[Path | None, typer.Option(help="Directory to write (default: ./benchbase-NAME).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory.")] = False,
) -> None:
    """Start a plugin: a pip-installable distribution with one working example of each kind and tests."""
    from benchbase.scaffold import parse_kinds, write_plugin

    written = write_plugin(name, parse_kinds(kinds), dest, force)
    typer.echo(
        f"wrote {written}/: `pip install -e {written}` and `benchbase plugins` lists its contributions; "
        f"its tests: `cd {written} && python -m pytest -q`"
    )


def _add_plugin_commands() -> None:
    """Plugins may add sub-commands (``benchbase glass simulate``); a failing hook is a warning."""
    registry = default_registry()
    if registry.manager is None:
        return
    for impl in registry.manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(app=app)
        except Exception as exc:
            typer.secho(f"warning: plugin {impl.plugin_name!r} could not add commands: {exc}", err=True, fg="yellow")


_add_plugin_commands()


def main() -> None:
    """The `benchbase` command. A mistyped option or value ends like any other bad input: one line
    and exit code 2 (click would print a usage box of five lines)."""
    from typer.exceptions import TyperException  # the base of click's errors, as typer ships them

    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # Ctrl-C, or the end of input at a prompt
        sys.exit(130)
    except TyperException as exc:
        if not exc.format_message():  # `benchbase` alone: the help is printed, there is nothing to add
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        typer.secho(f"error: {where}{exc.format_message()} (see --help)", err=True, fg="red")
        sys.exit(2)  # every error click reports is about the command line: bad input
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
