"""The results store: SQLite in WAL mode at ``<store>/benchbase.sqlite``, and files beside it.

Only the driver (the `benchbase run` process) writes the database; jobs write files and return their
records, so the database can stay on the driver's local disk (SQLite's locking is not safe on
network filesystems). Every planned run is a row: "pending" when planned, "finished" or "failed"
with the error when its job ends. A run is complete only once it says "finished", so a grid killed
at any moment restarts by redoing exactly the unfinished runs.

Files (under the store, or under a shared directory that all workers reach, ``--shared-dir``,
recorded in the store so that later commands find them):
- ``stages/<stage id>.pt``: pretraining checkpoints;
- ``predictions/<run id>.npz``: each finished run's predictions per slice and task (labels,
  predictions, the graph of each row and its native id), compressed;
- ``splits/<hash>.json``: splits as graph positions, by content hash;
- ``records/<id>.json``: each job's record as the job wrote it (`benchbase collect` reads them),
  signed with an HMAC under ``record.key`` (created beside them, readable by its owner only): a
  record someone else planted, or edited, is refused, as is one whose id is not the hash of its
  spec or whose files lie anywhere but ``predictions/<run id>.npz`` / ``stages/<stage id>.pt``.
Checkpoints and predictions carry their SHA-256 in the database and are verified before use.

Several drivers may share a store (two terminals, a cron job): each claims a job in the ``claims``
table before it submits it and renews its claims while it works (a lease); a claim whose owner's
process is gone, or whose lease expired, is taken over. So every run is computed once and recorded
once, whoever computes it.

The schema is versioned (``PRAGMA user_version``); an older store is migrated on open, a newer one
is refused with a message naming both versions.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import re
import secrets
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchbase.compute.cache import atomic_path, file_sha256
from benchbase.contract.errors import StoreError
from benchbase.contract.types import Predictions

SCHEMA_VERSION = 3
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
    predictions TEXT,
    predictions_sha256 TEXT,
    created_at REAL,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS stages (
    stage_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    details TEXT,
    checkpoint TEXT,
    checkpoint_sha256 TEXT,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS grids (
    name TEXT PRIMARY KEY,
    source TEXT,
    analysis TEXT,
    updated_at REAL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS submissions (
    job TEXT PRIMARY KEY,
    executor TEXT NOT NULL,
    handle TEXT NOT NULL,
    submitted_at REAL
);
CREATE TABLE IF NOT EXISTS claims (
    job TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT,
    pid INTEGER,
    process_start TEXT,
    claimed_at REAL,
    expires REAL
);
"""
#: Columns added since version 1 (the first release): (table, column, type).
_ADDED = [
    ("runs", "predictions", "TEXT"),
    ("runs", "predictions_sha256", "TEXT"),
    ("runs", "created_at", "REAL"),
    ("stages", "checkpoint", "TEXT"),
    ("stages", "checkpoint_sha256", "TEXT"),
]
PENDING, RUNNING, FINISHED, FAILED = "pending", "running", "finished", "failed"
JSON_COLUMNS = ("spec", "metrics", "details", "versions", "analysis")


#: The file holding a store's record-signing key, in its shared directory.
KEY_FILE = "record.key"
_ID = re.compile(r"[0-9a-f]{16}")


def is_job_id(value: Any) -> bool:
    """A run or stage id as the harness makes them (`content_hash`): 16 hex digits, so safe as a
    file name anywhere."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def record_key(shared: Path, create: bool = False) -> bytes | None:
    """The store's key for signing job records; created (owner-only, 0600) when asked. None if
    there is none. A key that others can read protects nothing: refused."""
    path = Path(shared) / KEY_FILE
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two drivers opening a new store at once keep one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
    try:
        mode = path.stat().st_mode
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise StoreError(f"the record key {path} is readable by others; run chmod 600 {path}")
    return key


def _mac(key: bytes, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hmac"}
    return hmac.new(key, json.dumps(body, sort_keys=True, default=str).encode(), hashlib.sha256).hexdigest()


def sign_record(shared: Path, record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its HMAC under the store's key (a job runs as the store's owner and reads it)."""
    key = record_key(shared)
    if key is None:
        raise StoreError(f"no record key in {shared}: the store was not opened by this benchbase")
    normal = json.loads(json.dumps(record, sort_keys=True, default=str))  # as it will be read back
    return {**normal, "hmac": _mac(key, normal)}


def signed(shared: Path, record: Any) -> bool:
    """True when `record` carries a valid HMAC under the key kept in `shared` (`sign_record`)."""
    key = record_key(shared)
    mac = record.get("hmac") if isinstance(record, dict) else None
    return key is not None and isinstance(mac, str) and hmac.compare_digest(mac, _mac(key, record))


def record_problem(shared: Path, path: Path, record: Any) -> str | None:
    """Why a job record on disk cannot be trusted, or None: it must be signed with the store's key,
    named by its id, its id the hash of its spec, and its file where the harness puts it."""
    from benchbase.contract.identity import content_hash

    if not isinstance(record, dict):
        return "not a job record"
    key = record_key(shared)
    mac = record.get("hmac")
    if key is None or not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, record)):
        return "not signed with this store's key (not written by one of its jobs, or edited since)"
    stage = "stage_id" in record and "run_id" not in record
    job = record.get("stage_id" if stage else "run_id")
    if not is_job_id(job):
        return f"its id {job!r} is not a job id"
    if path.name != (f"stage-{job}.json" if stage else f"{job}.json"):
        return f"its id {job} does not match its file name"
    try:
        derived = content_hash(record.get("spec"))
    except (TypeError, ValueError):
        derived = None
    if derived != job:
        return f"its id {job} is not the hash of its spec"
    field, expected = ("checkpoint", f"stages/{job}.pt") if stage else ("predictions", f"predictions/{job}.npz")
    if record.get(field) != expected:
        return f"its {field} {record.get(field)!r} is not {expected!r}"
    return None


def verified(path: Path, sha256: str | None) -> bool:
    """True when `path` exists and its content has the recorded SHA-256."""
    return sha256 is not None and path.is_file() and file_sha256(path) == sha256


#: Seconds a claim stays valid without renewal (drivers renew every third of it).
LEASE_SECONDS = 60.0


def _process_start(pid: int) -> str | None:
    """When a process started (Linux: clock ticks since boot), to tell a reused pid from its owner."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None) -> bool:
    """Whether process `pid` (started at `started`, when known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or _process_start(pid) in (None, started)


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: one driver process."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    process_start: str | None = field(default_factory=lambda: _process_start(os.getpid()))


class Store:
    def __init__(self, root: Path | str, shared_dir: Path | str | None = None, allow_empty: bool = False) -> None:
        self.root = Path(root)
        self.path = self.root / "benchbase.sqlite"
        # Said in words: the OS and SQLite would say "[Errno 17] File exists" or "unable to open
        # database file", naming neither the path nor what is wrong with it.
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the store {self.root} is a file, not a directory; pass --store a directory")
        if shared_dir is not None and Path(shared_dir).exists() and not Path(shared_dir).is_dir():
            raise StoreError(f"the shared directory {shared_dir} is a file; pass --shared-dir a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"the store directory {self.root} cannot be created: {exc.strerror}") from None
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"the store's database {self.path} is not a file")
        try:
            self._migrate()
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc):
                raise
            writable = os.access(self.root, os.W_OK | os.X_OK)
            reason = "" if writable else ": no permission to write in its directory"
            raise StoreError(f"the store's database {self.path} cannot be opened{reason}") from None
        self.shared = self._shared_dir(shared_dir)
        if not allow_empty:
            self._refuse_lost_database()

    def _refuse_lost_database(self) -> None:
        """A database with no run and no stage beside job records on disk was emptied or lost (a
        0-byte file, a deleted one): going on would retrain everything the records hold."""
        with self._connect() as db:
            empty = db.execute("SELECT NOT EXISTS (SELECT 1 FROM runs) AND NOT EXISTS (SELECT 1 FROM stages)")
            if not empty.fetchone()[0]:
                return
        records = sum(1 for _ in (self.shared / "records").glob("*.json"))
        if records:
            raise StoreError(
                f"the database {self.path} is empty but {records} job record(s) are on disk: it was emptied or "
                f"lost; recreate it from them with `benchbase doctor --store {self.root} --rebuild`"
            )

    def _shared_dir(self, given: Path | str | None) -> Path:
        """Where jobs write files: the store itself unless a shared directory was given, once."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'shared_dir'").fetchone()
            recorded = None if row is None else Path(row["value"])
            if given is not None:
                wanted = Path(given).resolve()
                if recorded is not None and recorded != wanted:
                    raise StoreError(
                        f"the store at {self.root} keeps its files in {recorded}; pass --shared-dir {recorded} "
                        "or use another store"
                    )
                if recorded is None:
                    db.execute("INSERT INTO meta (key, value) VALUES ('shared_dir', ?)", (str(wanted),))
                recorded = wanted
        shared = recorded or self.root
        shared.mkdir(parents=True, exist_ok=True)
        record_key(shared, create=True)
        return shared

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

    def _migrate(self) -> None:
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the store at {self.root} has schema version {version}, newer than this benchbase "
                    f"understands ({SCHEMA_VERSION}); upgrade benchbase to read it"
                )
            existing = {r["name"] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            db.executescript(SCHEMA)
            if "runs" in existing and version < SCHEMA_VERSION:  # a version-1 store: add what is new
                for table, column, kind in _ADDED:
                    columns = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
                    if column not in columns:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        with self._connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    # paths -------------------------------------------------------------------------------------

    def checkpoint_path(self, stage_id: str) -> Path:
        return self.shared / "stages" / f"{stage_id}.pt"

    def predictions_path(self, run_id: str) -> Path:
        return self.shared / "predictions" / f"{run_id}.npz"

    def split_path(self, split_hash: str) -> Path:
        return self.shared / "splits" / f"{split_hash}.json"

    def record_path(self, job_id: str) -> Path:
        return self.shared / "records" / f"{job_id}.json"

    def file(self, relative: str | None) -> Path:
        """A file a record names (paths in records are relative to the shared directory)."""
        return self.shared / (relative or "")

    # runs --------------------------------------------------------------------------------------

    def status_of(self, run_ids: list[str]) -> dict[str, str]:
        wanted = set(run_ids)
        with self._connect() as db:
            rows = db.execute("SELECT run_id, status FROM runs").fetchall()
        return {r["run_id"]: r["status"] for r in rows if r["run_id"] in wanted}

    def plan(self, grid: str, specs: dict[str, dict]) -> None:
        """Record planned runs as pending (runs already in the store keep their row)."""
        now = time.time()
        with self._connect() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, grid, spec, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, grid, json.dumps(spec, sort_keys=True), PENDING, now, now) for run_id, spec in specs.items()],
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
            "predictions": fields.get("predictions"),
            "predictions_sha256": fields.get("predictions_sha256"),
            "updated_at": time.time(),
        }
        columns = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{c}=excluded.{c}" for c in values if c != "run_id")
        with self._connect() as db:
            db.execute(
                f"INSERT INTO runs ({columns}, created_at) VALUES ({marks}, ?) "
                f"ON CONFLICT(run_id) DO UPDATE SET {updates}",
                (*values.values(), values["updated_at"]),
            )

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY run_id"
        with self._connect() as db:
            rows = db.execute(query, (status,) if status else ()).fetchall()
        return [_decode(dict(r)) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return _decode(dict(row)) if row else None

    def has_verified_predictions(self, run: dict[str, Any]) -> bool:
        return run.get("predictions") is not None and verified(
            self.file(run["predictions"]), run.get("predictions_sha256")
        )

    def load_predictions(self, run: dict[str, Any]) -> dict[str, dict[str, Predictions]]:
        """A finished run's predictions, verified against their recorded checksum."""
        path = self.file(run.get("predictions"))
        if not self.has_verified_predictions(run):
            raise StoreError(f"the predictions of run {run['run_id']} ({path}) are missing or damaged")
        return read_predictions(path)

    # stages ------------------------------------------------------------------------------------

    def stage(self, stage_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM stages WHERE stage_id = ?", (stage_id,)).fetchone()
        return _decode(dict(row)) if row else None

    def stage_status(self, stage_id: str) -> tuple[str | None, str | None]:
        row = self.stage(stage_id)
        return (row["status"], row["error"]) if row else (None, None)

    def stage_ready(self, stage_id: str) -> bool:
        """Finished, and its checkpoint on disk with the recorded checksum."""
        row = self.stage(stage_id)
        return bool(
            row and row["status"] == FINISHED and verified(self.file(row["checkpoint"]), row["checkpoint_sha256"])
        )

    def record_stage(
        self,
        stage_id: str,
        spec: dict,
        status: str,
        error: str | None = None,
        details: dict | None = None,
        checkpoint: str | None = None,
        checkpoint_sha256: str | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO stages (stage_id, spec, status, error, details, checkpoint, "
                "checkpoint_sha256, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    stage_id,
                    json.dumps(spec, sort_keys=True),
                    status,
                    error,
                    _dump(details),
                    checkpoint,
                    checkpoint_sha256,
                    time.time(),
                ),
            )

    def stages(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM stages ORDER BY stage_id").fetchall()
        return [_decode(dict(r)) for r in rows]

    # claims ------------------------------------------------------------------------------------

    def claim(self, job: str, owner: Owner, lease: float = LEASE_SECONDS) -> bool:
        """Claim `job` for `owner`: true when it was free, already ours, expired, or held by a
        process of this host that is gone. One statement each (compare and swap), so two drivers
        never both win."""
        now = time.time()
        values = (job, owner.token, owner.host, owner.pid, owner.process_start, now, now + lease)
        with self._connect() as db:
            row = db.execute("SELECT * FROM claims WHERE job = ?", (job,)).fetchone()
            if row is not None and row["owner"] != owner.token and row["expires"] >= now:
                if row["host"] != owner.host or process_alive(row["pid"], row["process_start"]):
                    return False
                # its owner died without releasing it: take it over, unless someone else just did
                changed = db.execute(
                    "UPDATE claims SET owner=?, host=?, pid=?, process_start=?, claimed_at=?, expires=? "
                    "WHERE job = ? AND owner = ?",
                    (*values[1:], job, row["owner"]),
                ).rowcount
                return changed == 1
            changed = db.execute(
                "INSERT INTO claims (job, owner, host, pid, process_start, claimed_at, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job) DO UPDATE SET owner=excluded.owner, "
                "host=excluded.host, pid=excluded.pid, process_start=excluded.process_start, "
                "claimed_at=excluded.claimed_at, expires=excluded.expires "
                "WHERE claims.owner = excluded.owner OR claims.expires < ?",
                (*values, now),
            ).rowcount
            return changed == 1

    def renew(self, owner: Owner, lease: float = LEASE_SECONDS) -> None:
        with self._connect() as db:
            db.execute("UPDATE claims SET expires = ? WHERE owner = ?", (time.time() + lease, owner.token))

    def release(self, job: str, owner: Owner) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM claims WHERE job = ? AND owner = ?", (job, owner.token))

    def release_all(self, owner: Owner) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM claims WHERE owner = ?", (owner.token,))

    def claims(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM claims ORDER BY job").fetchall()]

    def stale_claims(self) -> list[dict[str, Any]]:
        """Claims whose lease expired or whose owner (on this host) is gone."""
        now, host = time.time(), socket.gethostname()
        return [
            c
            for c in self.claims()
            if c["expires"] < now or (c["host"] == host and not process_alive(c["pid"], c["process_start"]))
        ]

    def drop_claims(self, jobs: list[str]) -> None:
        with self._connect() as db:
            db.executemany("DELETE FROM claims WHERE job = ?", [(j,) for j in jobs])

    # submissions: engine job ids, so that a restarted driver follows them instead of resubmitting

    def record_submission(self, job: str, executor: str, handle: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO submissions (job, executor, handle, submitted_at) VALUES (?, ?, ?, ?)",
                (job, executor, handle, time.time()),
            )

    def submission(self, job: str, executor: str) -> str | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT handle FROM submissions WHERE job = ? AND executor = ?", (job, executor)
            ).fetchone()
        return None if row is None else row["handle"]

    def drop_submission(self, job: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM submissions WHERE job = ?", (job,))

    def submissions(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            return [dict(r) for r in db.execute("SELECT * FROM submissions ORDER BY job").fetchall()]

    # grids -------------------------------------------------------------------------------------

    def record_grid(self, name: str, source: str, analysis: dict[str, Any]) -> None:
        """The analysis settings of a grid (``[analysis]``, ``[[question]]``), for leaderboards."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO grids (name, source, analysis, updated_at) VALUES (?, ?, ?, ?)",
                (name, source, _dump(analysis), time.time()),
            )

    def grids(self) -> list[dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM grids ORDER BY name").fetchall()
        return [_decode(dict(r)) for r in rows]


# prediction files ----------------------------------------------------------------------------


def write_predictions(
    path: Path, predictions: dict[str, dict[str, Predictions]], native_ids: np.ndarray | None = None
) -> str:
    """Write predictions as a compressed npz (atomically); returns its SHA-256. Keys are
    ``<slice>/<task>/<field>`` with fields y_true, y_pred, graph (positions) and graph_id (native
    ids, when given and the graph is a real position)."""
    arrays: dict[str, np.ndarray] = {}
    for slice_name, tasks in sorted(predictions.items()):
        for task, pred in sorted(tasks.items()):
            key = f"{slice_name}/{task}"
            arrays[f"{key}/y_true"] = np.asarray(pred.y_true, dtype=np.float32)
            arrays[f"{key}/y_pred"] = np.asarray(pred.y_pred, dtype=np.float32)
            arrays[f"{key}/graph"] = np.asarray(pred.graph, dtype=np.int64)
            if native_ids is not None and len(pred.graph) and pred.graph.min() >= 0:
                arrays[f"{key}/graph_id"] = np.asarray(native_ids)[pred.graph]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def read_predictions(path: Path) -> dict[str, dict[str, Predictions]]:
    out: dict[str, dict[str, Predictions]] = {}
    with np.load(path, allow_pickle=False) as data:
        keys = sorted({k.rsplit("/", 1)[0] for k in data.files})
        for key in keys:
            slice_name, task = key.split("/", 1)
            pred = Predictions(data[f"{key}/y_true"], data[f"{key}/y_pred"], data[f"{key}/graph"])
            out.setdefault(slice_name, {})[task] = pred
    return out


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in JSON_COLUMNS:
        if row.get(key):
            row[key] = json.loads(row[key])
    return row
