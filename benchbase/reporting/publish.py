"""The leaderboard directory, written from a store: every table with its comparisons and plots,
the index, FINDINGS.md and ``results.jsonl``.

This module sits above the three it assembles - tables (`benchbase.reporting.tables`), comparisons and
findings (`benchbase.reporting.findings`) and plots (`benchbase.reporting.plots`) - so that none of them imports another
upwards. Output is a pure function of the store's records and predictions: regenerating from the
same results gives byte-identical files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tabulate import tabulate

from benchbase.compute.cache import atomic_path, file_sha256
from benchbase.contract.identity import content_hash
from benchbase.reporting import findings, plots
from benchbase.reporting.markdown import cell_text, render_table
from benchbase.reporting.tables import HEADER, Table, build_tables, export_rows
from benchbase.running.merge import Merged
from benchbase.running.store import FINISHED, Store


def foreign_tables(out: Path, tables: list[Table]) -> list[str]:
    """Generated tables in `out` that none of `tables` replaces: results this store has no runs for
    (the committed leaderboards of another, larger store, say)."""
    names = {t.name for t in tables}
    return sorted(
        p.name for p in Path(out).glob("*.md") if p.stem not in names and p.name not in ("README.md", "FINDINGS.md")
        and p.read_text().startswith(HEADER)
    )  # fmt: skip


def write_leaderboards(
    store: Store | Merged,
    out: Path | str,
    current_code: dict[str, set[str]] | None = None,
    keep_foreign: bool = False,
) -> list[Path]:
    """Regenerate every table, the index, the plots, FINDINGS.md and ``results.jsonl``.

    From a `Merged` (a store and others' exports, `benchbase.running.merge`), every table says where
    each row's runs come from and whether they were reproduced here, the index lists the sources
    and the conflicts, and each record of ``results.jsonl`` keeps its ``provenance``.

    With `keep_foreign` (after ``benchbase run``), a directory that already holds tables this store
    has no runs for is merged into, never pruned: only the store's own tables and their plots are
    written, and the index, FINDINGS.md and ``results.jsonl`` - which summarise every table there -
    are left as they are (`benchbase leaderboard` regenerates a directory from one store)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = store.runs()
    digest = source_digest(store, runs, current_code)
    if _up_to_date(out, digest):
        return sorted(p for p in out.glob("*.md") if p.name not in ("README.md", "FINDINGS.md"))
    tables = build_tables(store, runs)
    if keep_foreign and foreign_tables(out, tables):
        return _write_tables(store, out, tables)
    analyses = findings.analyses_by_grid(store)
    answered = findings.answers(tables, analyses)
    from_questions, families = _question_families(answered)
    written = []
    keep = {"README.md", "FINDINGS.md"}
    plot_dir = out / "plots"
    sources = {source.id: source for source in store.sources} if isinstance(store, Merged) else None
    for table in tables:
        analysis = findings.analysis_for(analyses, table.grids)
        shown = findings.table_comparisons(table, analysis, from_questions)
        table_plots = plots.table_plots(table, plot_dir)
        path = out / f"{table.name}.md"
        _write(path, render_table(table, findings.render_comparisons(table, shown, families), table_plots, sources))
        keep.add(path.name)
        written.append(path)
    for old in out.glob("*.md"):
        if old.name not in keep and old.read_text().startswith(HEADER):
            old.unlink()  # a table no longer backed by results
    plots.remove_stale(plot_dir, tables)
    problems = [p for info in analyses.values() for p in info.get("problems", [])]
    _write(out / "FINDINGS.md", findings.render_findings(tables, answered, problems))
    exported = export_rows([r for r in runs if r["status"] in (FINISHED, "failed")], current_code)
    _write(out / "results.jsonl", "".join(json.dumps(row, sort_keys=True, default=str) + "\n" for row in exported))
    # Last: the marker vouches for the files above only once they are all complete under their names.
    body = _index(tables, runs) + (_merge_section(store) if isinstance(store, Merged) else "")
    _write(out / "README.md", _marker(digest, _outputs_digest(out, body)) + body)
    return written


def _write_tables(store: Store, out: Path, tables: list[Table]) -> list[Path]:
    """The store's own tables and their plots, nothing else touched."""
    analyses = findings.analyses_by_grid(store)
    from_questions, families = _question_families(findings.answers(tables, analyses))
    written = []
    for table in tables:
        shown = findings.table_comparisons(table, findings.analysis_for(analyses, table.grids), from_questions)
        table_plots = plots.table_plots(table, out / "plots")
        path = out / f"{table.name}.md"
        _write(path, render_table(table, findings.render_comparisons(table, shown, families), table_plots))
        written.append(path)
    return written


def _write(path: Path, text: str) -> None:
    """Write `text` under a temporary name and rename it: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


_MARKER = re.compile(r"^<!-- source: (?P<source>[0-9a-f]+); outputs: (?P<outputs>[0-9a-f]+) -->$", re.MULTILINE)


def _marker(digest: str, outputs: str) -> str:
    return f"{HEADER}<!-- source: {digest}; outputs: {outputs} -->\n"


def _generated(out: Path) -> list[Path]:
    """The files a generation leaves in `out` besides the index: tables (recognised by their header),
    FINDINGS.md, results.jsonl and the plots. A table that lost its header drops out of the list and
    so changes the outputs digest too."""
    tables = [p for p in out.glob("*.md") if p.name not in ("README.md", "FINDINGS.md") and _is_table(p)]
    fixed = [out / "FINDINGS.md", out / "results.jsonl"]
    return sorted(tables + fixed + list((out / "plots").glob("*.png")))


def _is_table(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HEADER.encode())) == HEADER.encode()
    except OSError:
        return False


def _outputs_digest(out: Path, index_body: str) -> str:
    """Digest of the bytes of every generated file (a missing one counts as such) and of the
    index's own text below its marker."""
    files = [(str(p.relative_to(out)), file_sha256(p) if p.is_file() else None) for p in _generated(out)]
    return content_hash([files, index_body], 16)


def _question_families(answered: list[Any]) -> tuple[list[tuple[str, Any, Any]], dict[str, int]]:
    """Each question's comparisons labelled by the question's id (with its grid where two grids use
    one id), and the size of each family."""
    ids = [a.question.get("id", "?") for a in answered]
    from_questions, families = [], {}
    for answer, question_id in zip(answered, ids, strict=True):
        label = question_id if ids.count(question_id) == 1 else f"{answer.grid}:{question_id}"
        pairs = answer.answered()
        families[label] = len(pairs)
        from_questions += [(label, candidate, comparison) for candidate, comparison in pairs]
    return from_questions, families


def source_digest(store: Store | Merged, runs: list[dict[str, Any]], current_code: dict[str, set[str]] | None) -> str:
    """What the leaderboards are made from: every run's state and predictions, the grids' analysis
    settings, and the code that renders them (this module's distribution)."""
    from benchbase.contract.identity import distribution_fingerprint, harness_distribution

    state = [(r["run_id"], r["status"], r.get("updated_at"), r.get("predictions_sha256")) for r in runs]
    grids = [(g["name"], g.get("analysis")) for g in store.grids()]
    code = sorted((k, sorted(v)) for k, v in (current_code or {}).items())
    parts = [state, grids, code, distribution_fingerprint(harness_distribution())]
    if isinstance(store, Merged):  # imported records have no update time: their content counts
        # and so does whether their predictions are beside them (cells are recomputed from them).
        merged = [(r["run_id"], r.get("metrics"), r["provenance"], store.has_verified_predictions(r)) for r in runs]
        parts.append([merged, [vars(s) for s in store.sources], [vars(c) for c in store.conflicts]])
    return content_hash(parts, 16)


def _up_to_date(out: Path, digest: str) -> bool:
    """True when `out` was generated from exactly this source (a re-run that trained nothing) and
    every generated file still has the bytes it was written with."""
    try:
        text = (out / "README.md").read_text()
    except (OSError, UnicodeDecodeError):
        return False
    found = _MARKER.search(text)
    if found is None or found["source"] != digest or not text.startswith(HEADER):
        return False
    body = text[found.end() + 1 :]
    return found["outputs"] == _outputs_digest(out, body)


def _index(tables: list[Table], runs: list[dict[str, Any]]) -> str:
    index = []
    for table in tables:
        best = table.rows[0]
        index.append(
            [
                f"[{table.dataset}]({table.name}.md)",
                table.task.name,
                table.protocol,
                len(table.rows),
                table.headline.name,
                f"{best.label}: {cell_text(best.cells[table.headline.name])}",
            ]
        )
    n_finished = sum(1 for r in runs if r["status"] == FINISHED)
    n_failed = sum(1 for r in runs if r["status"] == "failed")
    text = "# benchbase leaderboards\n\n"
    text += f"Made from {n_finished} finished runs ({n_failed} failed) exported in `results.jsonl`; "
    text += "the research questions are answered in [FINDINGS.md](FINDINGS.md).\n"
    text += "Each cell: mean ± unbiased std over seeds [95% CI]; best first. A first place is not a finding: "
    text += "see each table's paired comparisons.\n\n"
    headers = ["dataset", "task", "protocol", "rows", "headline", "first row (mean ± std [95% CI])"]
    return text + tabulate(index, headers=headers, tablefmt="github", disable_numparse=True) + "\n"


def _merge_section(merged: Merged) -> str:
    """The sources of a merged leaderboard and the run ids they disagree on."""
    text = "\n## Sources\n\n"
    text += "Merged by run id (the hash of a run's spec, code and data included) with `benchbase leaderboard --from`. "
    text += "A run is *imported* unless the local store holds it with the same numbers (computed here, or re-run "
    text += "with `benchbase reproduce --from EXPORT --store STORE`); each table says which rows are.\n\n"
    for source in merged.sources:
        of = [r for r in merged.runs(FINISHED) if any(s["id"] == source.id for s in r["provenance"]["sources"])]
        here = sum(1 for r in of if r["provenance"]["reproduced_here"])
        text += f"- {source.text()}: {len(of)} finished run(s), {here} computed or reproduced here\n"
    if not merged.conflicts:
        return text
    text += "\n## Conflicts\n\n"
    text += "One run id, different numbers: the local store's record is used where it holds the run; "
    text += "otherwise the run is left out of every table.\n\n"
    sources = {source.id: source for source in merged.sources}
    return text + "".join(f"- {conflict.line(sources)}\n" for conflict in merged.conflicts)
