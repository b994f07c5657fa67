"""Leaderboards from several sources: a local store and exports of others (``results.jsonl``),
merged by run id without ever overwriting one record with another in silence.

A run id is the hash of the run's spec (code fingerprints, numerics and data included), so two
sources that hold one id claim to have computed the very same run. Records are merged by that id:

- the same numbers (metrics, and the predictions' SHA-256 where both give one): the run is kept
  once and lists every source that holds it;
- different numbers: a *conflict*. The local store's record is used when the store holds the run
  (it was computed here, and its predictions are at hand); otherwise the run is left out of the
  tables. Either way the conflict is reported, naming the run and the sources;
- a finished record supersedes an unfinished one (pending, running, failed) of the same run.

Every merged run carries ``provenance``: the ids of its sources, ``imported`` (no local store
record of it) and ``reproduced_here`` (the local store holds the same run with the same numbers: it
was computed here, or re-run with ``benchbase reproduce --from EXPORT --store STORE``).

An export is read strictly: a line that is not a JSON object of the expected shape, or whose run id
is not the hash of its spec (the store's own trust rule for job records), is an error naming the
file and line. Exports carry no signature - they come from elsewhere - and that is what
``imported`` says. Predictions shipped beside an export (``predictions/<run id>.npz``, as written by
``benchbase results --predictions``) are used when their SHA-256 is the recorded one; without them
an imported run's cells are its recorded metrics.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchbase.contract.api import Predictions
from benchbase.contract.errors import GridError, StoreError
from benchbase.contract.identity import content_hash
from benchbase.contract.kinds import RUN_KINDS
from benchbase.running.store import FINISHED, Store, is_job_id, read_predictions, verified

EXPORT_NAME = "results.jsonl"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Statuses an export may hold; only finished and failed runs are merged (another's pending runs mean nothing here).
_STATUSES = ("pending", "running", "finished", "failed")


def export_file(path: Path | str) -> Path:
    """The export a ``--from`` names: the file itself, or ``results.jsonl`` in the folder."""
    path = Path(path)
    if path.is_dir():
        path = path / EXPORT_NAME
    if not path.is_file():
        raise GridError(f"export {path} does not exist (write one with `benchbase leaderboard` or `benchbase results`)")
    return path


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def record_problem(record: Any) -> str | None:
    """Why one line of an export is not a run record that can be merged, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    run_id = record.get("run_id")
    if not is_job_id(run_id):
        return f"its run_id {run_id!r} is not a run id (16 hex digits)"
    if record.get("status") not in _STATUSES:
        return f"its status {record.get('status')!r} is not one of {', '.join(_STATUSES)}"
    spec = record.get("spec")
    if not isinstance(spec, dict):
        return "it has no spec object"
    for kind in RUN_KINDS:
        part = spec.get(kind)
        if not (isinstance(part, dict) and isinstance(part.get("name"), str) and isinstance(part.get("params"), dict)):
            return f"its spec has no valid {kind!r} ({{name, params}})"
    if not isinstance(spec.get("seed"), int):
        return "its spec has no integer seed"
    if not isinstance(spec.get("train"), dict):
        return "its spec has no train object"
    code = spec.get("code")
    if code is not None and not (isinstance(code, dict) and all(isinstance(v, str) for v in code.values())):
        return "its spec's code is not an object of fingerprints"
    try:
        derived = content_hash(spec)
    except (TypeError, ValueError):
        derived = None
    if derived != run_id:
        return f"its run_id {run_id} is not the hash of its spec (edited after it was exported?)"
    metrics = record.get("metrics")
    if record["status"] == FINISHED and not isinstance(metrics, dict):
        return "a finished run without a metrics object"
    if metrics is not None and not isinstance(metrics, dict):
        return "its metrics are not an object"
    for task, values in (metrics or {}).items():
        if not isinstance(values, dict) or not all(_number_or_none(v) for v in values.values()):
            return f"its metrics of task {task!r} are not an object of numbers"
    tasks = record.get("tasks")
    if tasks is not None and not (isinstance(tasks, dict) and all(isinstance(t, dict) for t in tasks.values())):
        return "its tasks are not an object of task descriptions"
    sha = record.get("predictions_sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        return f"its predictions_sha256 {sha!r} is not a SHA-256"
    for key in ("hardware", "git_commit", "grid", "error"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"its {key} is not a string"
    for key in ("seconds", "n_params"):
        if not _number_or_none(record.get(key)):
            return f"its {key} is not a number"
    return None


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """Every record of an export (a file, or a folder holding ``results.jsonl``), validated."""
    path = export_file(path)
    records = []
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise GridError(f"{path} is not a text file of JSON lines") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GridError(f"{path}:{number} is not a JSON line: {exc}") from None
        problem = record_problem(record)
        if problem is not None:
            raise GridError(f"{path}:{number}: {problem}")
        records.append(record)
    if not records:  # an empty export merges nothing: most likely the wrong file
        raise GridError(
            f"{path} holds no run records; an export is the results.jsonl that `benchbase leaderboard` writes"
        )
    return records


@dataclass(frozen=True)
class Source:
    id: str  # S1, S2, ... in the order given: the store first
    kind: str  # "store" or "export"
    path: str  # as the user named it

    def text(self) -> str:
        return f"{self.id} {self.kind} `{self.path}`"


@dataclass
class Conflict:
    run_id: str
    label: str  # the run in words
    claims: list[tuple[str, str]]  # (source id, digest of its numbers), one per disagreeing source
    kept: str | None  # the source whose record is used; None: the run is left out
    difference: str = ""  # the first metric two of the claims differ in, in words

    def line(self, sources: dict[str, Source]) -> str:
        named = ", ".join(f"{sources[s].text()} (numbers {digest})" for s, digest in self.claims)
        outcome = f"{self.kept}'s record is used (the local store)" if self.kept else "the run is left out"
        return f"run {self.run_id} ({self.label}): different metrics in {named}{self.difference}; {outcome}"


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    flat_a, flat_b = (
        {f"{task}/{key}": value for task, values in (r.get("metrics") or {}).items() for key, value in values.items()}
        for r in (a, b)
    )
    for key in sorted(set(flat_a) | set(flat_b)):
        if json.dumps(flat_a.get(key)) != json.dumps(flat_b.get(key)):
            return f" (first: {key} {flat_a.get(key)!r} vs {flat_b.get(key)!r})"
    return " (the same metrics, other predictions)"


def _numbers(record: dict[str, Any]) -> str:
    return json.dumps(record.get("metrics"), sort_keys=True)  # NaN written as NaN: equal to itself


def agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same numbers: equal metrics and, where both give one, equal predictions checksums."""
    sha_a, sha_b = a.get("predictions_sha256"), b.get("predictions_sha256")
    return _numbers(a) == _numbers(b) and (sha_a is None or sha_b is None or sha_a == sha_b)


def run_label(record: dict[str, Any]) -> str:
    spec = record["spec"]
    parts = [spec[kind]["name"] for kind in RUN_KINDS]
    return " / ".join(parts) + f" / seed {spec['seed']}"


@dataclass
class Merged:
    """The runs of a local store (optional) and of exports, merged by run id. It answers what the
    leaderboards ask of a store: ``runs()``, ``grids()`` and the runs' verified predictions."""

    store: Store | None
    sources: list[Source] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    _runs: list[dict[str, Any]] = field(default_factory=list)
    _imported_predictions: dict[str, Path] = field(default_factory=dict)  # run id -> npz beside its export

    @classmethod
    def of(cls, store: Store | None, store_path: str, exports: list[Path]) -> Merged:
        merged = cls(store)
        read = [(path, read_records(path)) for path in exports]  # every export validated before anything is merged
        claims: dict[str, list[tuple[Source, dict[str, Any]]]] = {}
        if store is not None:
            source = Source("S1", "store", store_path)
            merged.sources.append(source)
            for run in store.runs():
                claims.setdefault(run["run_id"], []).append((source, run))
        for path, records in read:
            source = Source(f"S{len(merged.sources) + 1}", "export", str(path))
            merged.sources.append(source)
            beside = export_file(path).parent / "predictions"
            for record in records:
                if record["status"] in (FINISHED, "failed"):
                    claims.setdefault(record["run_id"], []).append((source, {**record, "_beside": beside}))
        for run_id in sorted(claims):
            merged._resolve(run_id, claims[run_id])
        return merged

    def _resolve(self, run_id: str, claims: list[tuple[Source, dict[str, Any]]]) -> None:
        finished = [(s, r) for s, r in claims if r["status"] == FINISHED]
        if not finished:  # failed (or, in the store, unfinished) everywhere: the first record stands
            source, record = next(((s, r) for s, r in claims if s.kind == "store"), claims[0])
            self._add(record, [source], imported=source.kind != "store", here=False)
            return
        groups: list[list[tuple[Source, dict[str, Any]]]] = []
        for claim in finished:
            group = next((g for g in groups if agree(g[0][1], claim[1])), None)
            if group is None:
                groups.append([claim])
            elif all(s.id != claim[0].id for s, _ in group):
                group.append(claim)
        local_group = next((g for g in groups if any(s.kind == "store" for s, _ in g)), None)
        if len(groups) > 1:
            claimed = [(s.id, content_hash(_numbers(r), 8)) for g in groups for s, r in g]
            claimed.sort(key=lambda claim: int(claim[0][1:]))
            kept = local_group[0][0].id if local_group else None
            difference = _first_difference(groups[0][0][1], groups[1][0][1])
            self.conflicts.append(Conflict(run_id, run_label(finished[0][1]), claimed, kept, difference))
            if local_group is None:
                return
        chosen = local_group or groups[0]
        record = next((r for s, r in chosen if s.kind == "store"), chosen[0][1])
        self._add(record, [s for s, _ in chosen], imported=local_group is None, here=local_group is not None)

    def _add(self, record: dict[str, Any], sources: list[Source], imported: bool, here: bool) -> None:
        run = {k: v for k, v in record.items() if k not in ("_beside", "provenance", "stale")}
        if imported and "_beside" in record:
            self._imported_predictions[run["run_id"]] = record["_beside"] / f"{run['run_id']}.npz"
        run["provenance"] = {
            "sources": [{"id": s.id, "kind": s.kind, "path": s.path} for s in sources],
            "imported": imported,
            "reproduced_here": here,
        }
        self._runs.append(run)

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self._runs if status is None or r["status"] == status]

    def grids(self) -> list[dict[str, Any]]:
        """The grids recorded in the local store: an export carries no analysis declarations."""
        return self.store.grids() if self.store is not None else []

    def has_verified_predictions(self, run: dict[str, Any]) -> bool:
        if run["run_id"] in self._imported_predictions:
            return verified(self._imported_predictions[run["run_id"]], run.get("predictions_sha256"))
        return self.store is not None and self.store.has_verified_predictions(run)

    def load_predictions(self, run: dict[str, Any]) -> dict[str, dict[str, Predictions]]:
        if run["run_id"] in self._imported_predictions:
            path = self._imported_predictions[run["run_id"]]
            if not self.has_verified_predictions(run):
                raise StoreError(f"the predictions of run {run['run_id']} ({path}) are missing or damaged")
            try:
                return read_predictions(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # its digest matched: written so
                raise StoreError(f"the predictions of run {run['run_id']} ({path}) cannot be read: {exc}") from None
        if self.store is None:
            raise StoreError(f"run {run['run_id']} has no predictions here")
        return self.store.load_predictions(run)

    def summary(self) -> str:
        finished = self.runs(FINISHED)
        imported = sum(1 for r in finished if r["provenance"]["imported"])
        here = sum(1 for r in finished if r["provenance"]["reproduced_here"])
        return (
            f"merged {len(finished)} finished runs from {len(self.sources)} source(s): {imported} imported, "
            f"{here} computed or reproduced here; {len(self.conflicts)} conflict(s)"
        )
