"""Leaderboard plots (matplotlib, PNG), linked from each table's markdown.

- every table: the headline metric per row, mean and 95% CI;
- tables whose runs report error by distance beyond a boundary (``test_mae_bin<k>`` with
  ``test_bin<k>_distance``, the extrapolation protocols): error against distance, per row;
- tables whose runs report a pretext head's per-class accuracy (``pretext_acc_<class>``, the
  imbalance protocol): accuracy per class, per row;
- tables whose rows differ in ``train.task_weights``: the headline against the table's own task
  weight (for glass, Pearson r against BOTAN's p).

Files are deterministic for the same results and matplotlib version: fixed size and resolution, no
timestamp or software metadata.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from benchbase.compute.cache import atomic_path
from benchbase.reporting.tables import Row, Table

_BIN = re.compile(r"^test_mae_bin(\d+)$")
_CLASS = re.compile(r"^pretext_acc_(.+)$")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "svg.hashsalt": "benchbase", "path.simplify": False})
    return plt


def _save(fig: Any, path: Path) -> None:
    # A temporary name renamed into place: a killed run never leaves a half-drawn plot under its name.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _metric_means(row: Row, pattern: re.Pattern) -> dict[str, float]:
    """Mean over seeds of every run metric whose key matches `pattern` (keyed by its group)."""
    values: dict[str, list[float]] = {}
    for run in row.runs.values():
        for task_metrics in (run.get("metrics") or {}).values():
            for key, value in task_metrics.items():
                match = pattern.match(key)
                if match and value is not None and math.isfinite(value):
                    values.setdefault(match.group(1), []).append(value)
    return {k: float(np.mean(v)) for k, v in values.items()}


def interval_plot(table: Table, path: Path) -> None:
    plt = _pyplot()
    column = table.headline
    rows = table.rows
    fig, ax = plt.subplots(figsize=(6.0, 0.35 * len(rows) + 1.0))
    for y, row in enumerate(rows):
        cell = row.cells[column.name]
        if math.isfinite(cell.low):
            ax.plot([cell.low, cell.high], [y, y], color="tab:blue", linewidth=2)
        ax.plot(cell.points, [y] * len(cell.points), "o", color="tab:gray", markersize=2.5, alpha=0.7)
        ax.plot([cell.mean], [y], "D", color="black", markersize=4)
    ax.set_yticks(range(len(rows)), [row.label for row in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{column.name} ({table.task.unit})" if table.task.unit else column.name)
    ax.set_title(f"{table.dataset} · {table.protocol}: mean (◆), seeds (•), 95% CI (bar)")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def distance_plot(table: Table, path: Path) -> bool:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    drawn = False
    for row in table.rows:
        errors = _metric_means(row, _BIN)
        edges = _metric_means(row, re.compile(r"^test_bin(\d+)_distance$"))
        bins = sorted(set(errors) & set(edges), key=int)
        if bins:
            ax.plot([edges[b] for b in bins], [errors[b] for b in bins], "o-", label=row.label, markersize=3)
            drawn = True
    if not drawn:
        plt.close(fig)
        return False
    unit = f" ({table.task.unit})" if table.task.unit else ""
    ax.set_xlabel(f"distance beyond the boundary, upper edge of each quartile{unit}")
    ax.set_ylabel(f"test MAE{unit}")
    ax.set_title(f"{table.dataset} · {table.protocol}: error against distance (mean over seeds)")
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def class_accuracy_plot(table: Table, path: Path) -> bool:
    rows = [(row, _metric_means(row, _CLASS)) for row in table.rows]
    rows = [(row, values) for row, values in rows if values]
    if not rows:
        return False
    plt = _pyplot()
    classes = sorted({c for _, values in rows for c in values})
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(classes) * len(rows) / 2), 3.6))
    width = 0.8 / len(rows)
    for i, (row, values) in enumerate(rows):
        xs = np.arange(len(classes)) + i * width
        ax.bar(xs, [values.get(c, np.nan) for c in classes], width=width, label=row.label)
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
    ax.set_ylabel("masking head accuracy (held-out, mean over seeds)")
    ax.set_title(f"{table.dataset} · {table.protocol}: per-class accuracy of the pretext head")
    ax.legend(fontsize=6)
    ax.set_ylim(0, 1)
    _save(fig, path)
    return True


def weights_plot(table: Table, path: Path) -> bool:
    points = []
    for row in table.rows:
        weights = row.config["train"].get("task_weights")
        if isinstance(weights, dict) and table.task.name in weights:
            total = sum(float(v) for v in weights.values()) or 1.0
            points.append((float(weights[table.task.name]) / total, row))
    if len({p for p, _ in points}) < 2:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    by_model: dict[str, list[tuple[float, Row]]] = {}
    for p, row in points:
        model = f"{row.config['encoder']['name']} / {row.config['pretext']['name']}"
        by_model.setdefault(model, []).append((p, row))
    column = table.headline
    for model, items in sorted(by_model.items()):
        items.sort(key=lambda item: item[0])
        xs = [p for p, _ in items]
        cells = [row.cells[column.name] for _, row in items]
        low = [c.mean - c.low if math.isfinite(c.low) else 0 for c in cells]
        high = [c.high - c.mean if math.isfinite(c.high) else 0 for c in cells]
        ax.errorbar(xs, [c.mean for c in cells], yerr=[low, high], fmt="o-", capsize=3, label=model)
    ax.set_xlabel(f"weight of {table.task.name} in the loss (p; 1 = this task only)")
    ax.set_ylabel(column.name)
    ax.set_title(f"{table.dataset} · {table.task.name}: {column.name} against p (mean, 95% CI)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def table_plots(table: Table, directory: Path) -> list[tuple[str, str]]:
    """Write the table's plots; returns (title, path relative to the markdown) for each."""
    out = []
    interval_plot(table, directory / f"{table.name}.png")
    out.append((f"{table.headline.name} per row, 95% CI", f"plots/{table.name}.png"))
    if distance_plot(table, directory / f"{table.name}__distance.png"):
        out.append(("error against distance beyond the threshold", f"plots/{table.name}__distance.png"))
    if class_accuracy_plot(table, directory / f"{table.name}__classes.png"):
        out.append(("pretext head accuracy per class", f"plots/{table.name}__classes.png"))
    if weights_plot(table, directory / f"{table.name}__weights.png"):
        out.append((f"{table.headline.name} against the task weight", f"plots/{table.name}__weights.png"))
    return out


def remove_stale(directory: Path, tables: list[Table]) -> None:
    """Delete plots of tables that no longer exist."""
    if not directory.is_dir():
        return
    names = {t.name for t in tables}
    for path in directory.glob("*.png"):
        if path.stem not in names and path.stem.rsplit("__", 1)[0] not in names:
            path.unlink()
