"""The results store: SQLite in WAL mode at ``<store>/benchbase.sqlite``.

Every run is one row keyed by its run id; a row is written when the run starts ("running") and
again when it ends ("finished" or "failed" with the error). A run is complete only once it says
"finished", so a grid killed at any moment restarts by redoing exactly the unfinished runs.
Pretraining checkpoints live beside it in ``<store>/stages/`` and splits in ``<store>/splits/``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    grid TEXT,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    metrics TEXT,
    details TEXT,
    n_params INTEGER,
    seconds REAL,
    hardware TEXT,
    versions TEXT,
    git_commit TEXT,
    split_hash TEXT,
    stage_id TEXT,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS stages (
    stage_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    details TEXT,
    updated_at REAL
);
"""
FINISHED, FAILED, RUNNING = "finished", "failed", "running"


class Store:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "benchbase.sqlite"
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def checkpoint_path(self, stage_id: str) -> Path:
        return self.root / "stages" / f"{stage_id}.pt"

    def split_path(self, split_hash: str) -> Path:
        return self.root / "splits" / f"{split_hash}.json"

    # runs ----------------------------------------------------------------------------------

    def status_of(self, run_ids: list[str]) -> dict[str, str]:
        with self._connect() as db:
            rows = db.execute("SELECT run_id, status FROM runs").fetchall()
        wanted = set(run_ids)
        return {r["run_id"]: r["status"] for r in rows if r["run_id"] in wanted}

    def mark_running(self, run_id: str, grid: str, spec: dict, stage_id: str | None) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (run_id, grid, spec, status, stage_id, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, error=NULL, updated_at=excluded.updated_at",
                (run_id, grid, json.dumps(spec, sort_keys=True), RUNNING, stage_id, time.time()),
            )

    def record_run(self, run_id: str, grid: str, spec: dict, status: str, **fields: Any) -> None:
        values = {
            "run_id": run_id,
            "grid": grid,
            "spec": json.dumps(spec, sort_keys=True),
            "status": status,
            "error": fields.get("error"),
            "metrics": _dump(fields.get("metrics")),
            "details": _dump(fields.get("details")),
            "n_params": fields.get("n_params"),
            "seconds": fields.get("seconds"),
            "hardware": fields.get("hardware"),
            "versions": _dump(fields.get("versions")),
            "git_commit": fields.get("git_commit"),
            "split_hash": fields.get("split_hash"),
            "stage_id": fields.get("stage_id"),
            "updated_at": time.time(),
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._connect() as db:
            db.execute(f"INSERT OR REPLACE INTO runs ({columns}) VALUES ({marks})", tuple(values.values()))

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY run_id"
        with self._connect() as db:
            rows = db.execute(query, (status,) if status else ()).fetchall()
        return [_decode(dict(r)) for r in rows]

    # stages --------------------------------------------------------------------------------

    def stage_status(self, stage_id: str) -> tuple[str | None, str | None]:
        with self._connect() as db:
            row = db.execute("SELECT status, error FROM stages WHERE stage_id = ?", (stage_id,)).fetchone()
        return (row["status"], row["error"]) if row else (None, None)

    def record_stage(self, stage_id: str, spec: dict, status: str, error: str | None = None, details=None) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO stages (stage_id, spec, status, error, details, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (stage_id, json.dumps(spec, sort_keys=True), status, error, _dump(details), time.time()),
            )

    def stages(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM stages ORDER BY stage_id").fetchall()
        return [_decode(dict(r)) for r in rows]


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("spec", "metrics", "details", "versions"):
        if row.get(key):
            row[key] = json.loads(row[key])
    return row
