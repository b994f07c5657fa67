"""`benchbase collect`: job records that never reached the database are loaded into it.

Every job leaves its record as ``records/<id>.json`` beside its outputs (written atomically) before
it returns. When the driver is killed after a job ended but before it recorded it, or when a user
detached from a cluster submission, the record is on disk only: collecting inserts it, checking that
the files it names are there with their checksums.

A record is loaded only if one of the store's own jobs wrote it (`benchbase.running.store.record_problem`:
signed with the store's key, its id the hash of its spec, its file where the harness puts it):
the shared directory may be writable by others, and a planted record would otherwise put its
metrics in the leaderboards and its id in file names. Refused records are listed with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchbase.running.store import FINISHED, Store, record_problem, verified


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a half-written file cannot exist (atomic writes); a foreign one is ignored


def refused(store: Store) -> list[tuple[Path, str]]:
    """Job records on disk that none of the store's jobs wrote, or that were changed: (file, why)."""
    out = []
    for path in sorted((store.shared / "records").glob("*.json")):
        record = _load(path)
        problem = "not a JSON job record" if record is None else record_problem(store.shared, path, record)
        if problem is not None:
            out.append((path, problem))
    return out


def uncollected(store: Store) -> list[dict[str, Any]]:
    """Finished job records on disk, trusted and with their files intact, that the database lacks."""
    out = []
    for path in sorted((store.shared / "records").glob("*.json")):
        record = _load(path)
        if record is None or record.get("status") != FINISHED or record_problem(store.shared, path, record):
            continue
        if "stage_id" in record and "run_id" not in record:
            if not store.stage_ready(record["stage_id"]) and verified(
                store.file(record["checkpoint"]), record["checkpoint_sha256"]
            ):
                out.append(record)
            continue
        existing = store.run(record["run_id"])
        if (existing is None or existing["status"] != FINISHED) and verified(
            store.file(record["predictions"]), record["predictions_sha256"]
        ):
            out.append(record)
    return out


def collect_records(store: Store) -> int:
    """Insert finished stage and run records missing from the database; returns how many."""
    loaded = 0
    for record in uncollected(store):
        if "stage_id" in record and "run_id" not in record:
            store.record_stage(
                record["stage_id"],
                record["spec"],
                FINISHED,
                details=record.get("details"),
                checkpoint=record["checkpoint"],
                checkpoint_sha256=record["checkpoint_sha256"],
            )
            loaded += 1
            continue
        fields = {k: v for k, v in record.items() if k != "hmac"}
        store.record_run(fields.pop("run_id"), fields.pop("grid"), fields.pop("spec"), fields.pop("status"), **fields)
        loaded += 1
    return loaded
