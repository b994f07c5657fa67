"""`benchbase reproduce`: re-run exported runs with the code installed now and compare the numbers.

Each run of an export (``leaderboards/results.jsonl`` by default) is re-specified under this
process's code fingerprints and numerics (`benchbase.running.planning.respec`), computed - its pretraining stage
too - through the ordinary runner into a store of its own, and its metrics compared key by key with
the recorded ones. On CPU with the portable numerics the same code gives the same bits, so the
default tolerance is zero: any difference means the export was made by other code (a stale
leaderboard) or on other numerics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchbase.compute.runspec import RunSpec
from benchbase.contract.errors import GridError
from benchbase.contract.registry import Registry
from benchbase.running.driver import Progress, run_grid
from benchbase.running.executors import LocalExecutor
from benchbase.running.merge import read_records
from benchbase.running.planning import Grid, respec
from benchbase.running.store import FINISHED, Store


def read_export(path: Path) -> list[dict[str, Any]]:
    """The finished runs of an export (a ``results.jsonl``, or a folder holding one), each line
    validated as `benchbase leaderboard --from` validates it."""
    return [row for row in read_records(path) if row["status"] == FINISHED]


def of_datasets(rows: list[dict[str, Any]], datasets: list[str]) -> list[dict[str, Any]]:
    """The rows whose dataset is one of `datasets` (all rows when none is named)."""
    if not datasets:
        return rows
    known = {row["spec"]["dataset"]["name"] for row in rows}
    unknown = sorted(set(datasets) - known)
    if unknown:
        raise GridError(f"--dataset {unknown[0]!r} has no finished run in the export; it holds {sorted(known)}")
    return [row for row in rows if row["spec"]["dataset"]["name"] in datasets]


def choose(rows: list[dict[str, Any]], run_ids: list[str], sample: int | None) -> list[dict[str, Any]]:
    """The runs named, or a fixed sample of `sample` runs that holds a pretrained run (when the
    export has one) and a run without pretraining: both code paths are checked."""
    if run_ids:
        by_id = {row["run_id"]: row for row in rows}
        unknown = [r for r in run_ids if r not in by_id]
        if unknown:
            raise GridError(f"run id(s) {unknown} are not finished runs of the export")
        return [by_id[r] for r in run_ids]
    if not rows:
        raise GridError("the export holds no finished run")
    count = min(sample or 2, len(rows))
    rng = np.random.default_rng(0)
    order = [rows[i] for i in rng.permutation(len(rows))]
    pretrained = [r for r in order if r.get("stage_id")]
    plain = [r for r in order if not r.get("stage_id")]
    picked = (pretrained[:1] + plain[:1])[:count]
    picked += [r for r in order if r not in picked][: count - len(picked)]
    return picked


def _flat(metrics: dict[str, dict[str, float]] | None) -> dict[str, float]:
    return {f"{task}/{key}": value for task, values in (metrics or {}).items() for key, value in values.items()}


@dataclass
class Outcome:
    run_id: str
    label: str
    new_run_id: str
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    error: str | None = None
    same_identity: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None and not self.differences


def _differs(old: Any, new: Any, tolerance: float) -> bool:
    if old is None or new is None:
        return old is not new
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return False
    return abs(float(old) - float(new)) > tolerance


def reproduce(
    registry: Registry, rows: list[dict[str, Any]], store: Store, tolerance: float, progress: Progress
) -> list[Outcome]:
    runs = [RunSpec(respec(registry, row["spec"])) for row in rows]
    grid = Grid(name="reproduce", profile=runs[0].spec["profile"], seeds=sorted({r.seed for r in runs}), runs=runs)
    with LocalExecutor(jobs=1) as executor:
        run_grid(grid, store, executor, progress)
    outcomes = []
    for row, run in zip(rows, runs, strict=True):
        outcome = Outcome(row["run_id"], run.label(), run.run_id, same_identity=row["run_id"] == run.run_id)
        record = store.run(run.run_id)
        if record is None or record["status"] != FINISHED:
            outcome.error = (record or {}).get("error") or "the run did not finish"
        else:
            old, new = _flat(row.get("metrics")), _flat(record.get("metrics"))
            for key in sorted(set(old) | set(new)):
                if _differs(old.get(key), new.get(key), tolerance):
                    outcome.differences.append((key, old.get(key), new.get(key)))
        outcomes.append(outcome)
    return outcomes
