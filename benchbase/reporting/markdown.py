"""Leaderboard tables as markdown: cells, the code line, the per-class section and the page of one
table."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
from tabulate import tabulate

from benchbase.compute.metrics import get_metric
from benchbase.contract.kinds import METHOD_KINDS
from benchbase.reporting.tables import HEADER, Cell, Table, short_params
from benchbase.running.merge import Source
from benchbase.running.specs import flatten


def fmt(value: float, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def cell_text(cell: Cell) -> str:
    if not np.isfinite(cell.points).any():
        return "-"
    text = fmt(cell.mean)
    if math.isfinite(cell.std):
        text += f" ± {fmt(cell.std)}"
    if math.isfinite(cell.low):
        text += f" [{fmt(cell.low, 3)}, {fmt(cell.high, 3)}]"
    return text


def _code_line(build: dict[str, Any], runs: list[dict]) -> str:
    parts = build.get("code") or []
    commits = sorted({(r.get("git_commit") or "?")[:12] for r in runs})
    numerics = build.get("numerics") or {}
    machine = ", ".join(f"{k}={v}" for k, v in sorted(numerics.items()))
    return f"- code: {'; '.join(parts)} (commit {', '.join(commits)}); numerics: {machine}\n"


#: Per-class metrics a protocol reports (``<prefix>n_<class>`` items scored, ``<prefix>acc_<class>``
#: accuracy, ``<prefix>excluded_<class>`` too few items to be averaged), by slice prefix.
_CLASS_COUNT = re.compile(r"^(?P<prefix>.*)n_(?P<cls>[^_]+)$")


def render_classes(table: Table) -> str:
    """Per row and class: the items scored (mean over seeds), the accuracy and how many seeds left
    the class out as too rare, from the runs' stored metrics - so that every per-class accuracy is
    read beside the count it rests on."""
    lines, classes = [], set()
    for row in table.rows:
        metrics = [(run.get("metrics") or {}).get(table.task.name, {}) for run in row.runs.values()]
        # Every class any seed scored: a rare class is absent from the seeds that drew none of it,
        # so reading one seed's keys would make the section depend on which run comes first.
        found = {
            m.group("cls"): m.group("prefix")
            for run_metrics in metrics
            for key in run_metrics
            if (m := _CLASS_COUNT.match(key)) and f"{m.group('prefix')}acc_{m.group('cls')}" in run_metrics
        }
        classes |= set(found)
        lines.append((row, metrics, found))
    if not classes:
        return ""
    order = sorted(classes)
    body = []
    for row, metrics, found in lines:
        line = [row.label]
        for cls in order:
            prefix = found.get(cls)
            counts = [m.get(f"{prefix}n_{cls}") for m in metrics] if prefix is not None else []
            counts = [c for c in counts if c is not None]
            if not counts:
                line.append("-")
                continue
            accuracy = [m.get(f"{prefix}acc_{cls}") for m in metrics]
            accuracy = [a for a in accuracy if a is not None and math.isfinite(a)]
            excluded = sum(1 for m in metrics if m.get(f"{prefix}excluded_{cls}"))
            text = f"{np.mean(counts):.0f} items, acc {fmt(float(np.mean(accuracy)), 3) if accuracy else '-'}"
            line.append(text + (f", too rare in {excluded} seed(s)" if excluded else ""))
        body.append(line)
    text = "\n## Per class\n\nItems scored per seed (mean over seeds) and accuracy, per class; a class scored on "
    text += "too few items in a seed is left out of that seed's balanced accuracy and macro-F1.\n\n"
    return text + tabulate(body, headers=["row", *order], tablefmt="github", disable_numparse=True) + "\n"


def _source_ids(runs: list[dict[str, Any]]) -> list[str]:
    ids = {source["id"] for run in runs for source in run["provenance"]["sources"]}
    return sorted(ids, key=lambda i: int(i[1:]))


def _provenance_cells(runs: list[dict[str, Any]]) -> list[str]:
    here = sum(1 for run in runs if run["provenance"]["reproduced_here"])
    return [", ".join(_source_ids(runs)), f"{here}/{len(runs)}"]


def render_provenance(runs: list[dict[str, Any]], sources: dict[str, Source]) -> str:
    """Where a merged table's runs come from (`benchbase leaderboard --from`): per source, its
    runs here, how many were computed or reproduced here, their code, commits and hardware."""
    text = "\n## Provenance\n\n`source`: the sources of each row's runs; `here`: how many of them the local store "
    text += "holds with the same numbers (computed here, or re-run with `benchbase reproduce --from EXPORT --store "
    text += "STORE`); the others are imported, not reproduced here.\n\n"
    for source_id in _source_ids(runs):
        of = [run for run in runs if source_id in _source_ids([run])]
        here = sum(1 for run in of if run["provenance"]["reproduced_here"])
        code = sorted({value for run in of for value in (run["spec"].get("code") or {}).values()})
        commits = sorted({(run.get("git_commit") or "?")[:12] for run in of})
        hardware = sorted({run.get("hardware") or "?" for run in of})
        text += f"- {sources[source_id].text()}: {len(of)} run(s), {here} computed or reproduced here; "
        text += f"code {', '.join(code) or '?'} (commit {', '.join(commits)}); hardware: {'; '.join(hardware)}\n"
    return text


def render_table(
    table: Table, comparisons_text: str, plots: list[tuple[str, str]], sources: dict[str, Source] | None = None
) -> str:
    """One table's page; with `sources` (a merged leaderboard), each row says where its runs come
    from and how many were reproduced here, and a provenance list follows the table."""
    arrow = "↑" if get_metric(table.headline.metric).higher_is_better else "↓"
    headers = ["rank", *METHOD_KINDS] + (["settings"] if table.differing else [])
    headers += [f"{table.columns[0].name} {arrow}"] + [c.name for c in table.columns[1:]] + ["seeds", "#params"]
    headers += ["source", "here"] if sources is not None else []
    body = []
    for rank, row in enumerate(table.rows, 1):
        config = row.config
        line = [rank, config["encoder"]["name"], config["pretext"]["name"], config["rebalancer"]["name"]]
        if table.differing:
            flat = flatten(config)
            line.append("; ".join(f"{k}={json.dumps(flat[k], sort_keys=True)}" for k in table.differing if k in flat))
        line += [cell_text(row.cells[c.name]) for c in table.columns]
        first = row.runs[row.seeds[0]]
        line += [len(row.runs), first.get("n_params") or "-"]
        line += _provenance_cells(list(row.runs.values())) if sources is not None else []
        body.append(line)
    runs = [run for row in table.rows for run in row.runs.values()]
    unit = f" ({table.task.unit})" if table.task.unit else ""
    profiles = sorted({run["spec"]["profile"] for run in runs})
    hardware = sorted({run.get("hardware") or "?" for run in runs})
    text = HEADER + f"# {table.dataset} · {table.task.name} · {table.protocol}\n\n"
    text += f"- protocol parameters: {short_params(table.protocol_params) or 'defaults'}\n"
    text += f"- headline: `{table.headline.name}`{unit}, {'higher' if arrow == '↑' else 'lower'} is better. "
    text += (
        "Each cell: mean ± unbiased std over seeds [95% CI: seed-level t-interval, plus the variance of a test set "
        "every seed shares where it does (`benchbase.reporting.stats`)]\n"
    )
    if "quick" in profiles:
        text += "- **quick profile**: small data subset and small models sized for 2 CPU cores; not paper-scale\n"
    text += _code_line(table.build, runs)
    text += f"- hardware: {'; '.join(hardware)}; grids: {', '.join(table.grids) or '-'}\n"
    for note in table.notes:
        text += f"- note: {note}\n"
    text += "\n" + tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n"
    if sources is not None:
        text += render_provenance(runs, sources)
    text += render_classes(table)
    if comparisons_text:
        text += "\n" + comparisons_text
    if plots:
        text += "\n" + "".join(f"![{title}]({path})\n" for title, path in plots)
    return text
