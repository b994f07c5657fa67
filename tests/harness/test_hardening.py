"""Reliability and security, second round, through the real CLI: leaderboards that notice a partial
or damaged output, job records only the harness's jobs produce, no code run from data, bad inputs
refused at planning, a damaged database diagnosed and rebuilt, workers that die with their driver."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbase.cli import app

runner = CliRunner()

SMALL = """
name = "small"
profile = "quick"
seeds = [0, 1]
[train]
epochs = 2
batch_size = 32
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def small_grid(tmp_path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


@pytest.fixture
def published(synthetic_env, small_grid, tmp_path) -> tuple[Path, Path]:
    """A store with two finished runs and its leaderboards."""
    store, out = tmp_path / "store", tmp_path / "lb"
    result = invoke("run", "--grid", small_grid, "--store", store, "--leaderboard-out", out, "--jobs", "1")
    assert result.exit_code == 0, result.output
    return store, out


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damaged", ["results.jsonl", "FINDINGS.md", "table", "plot"])
@pytest.mark.slow
def test_a_truncated_leaderboard_file_is_found_and_rewritten(published, damaged):
    store, out = published
    before = _snapshot(out)
    table = next(name for name in before if name.endswith(".md") and name not in ("README.md", "FINDINGS.md"))
    plot = next(name for name in before if name.endswith(".png"))
    path = out / {"table": table, "plot": plot}.get(damaged, damaged)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # as a full disk leaves it
    result = invoke("leaderboard", "--store", store, "--out", out)
    assert result.exit_code == 0, result.output
    assert _snapshot(out) == before


@pytest.mark.slow
def test_outputs_of_another_store_beside_a_fresh_index_are_rewritten(published, synthetic_env, tmp_path):
    """A run killed after some files were renamed into place: the index may be the new one while
    FINDINGS.md and results.jsonl still come from elsewhere."""
    store, out = published
    before = _snapshot(out)
    (out / "FINDINGS.md").write_text("# findings of another store\n")
    (out / "results.jsonl").write_text('{"run_id": "elsewhere"}\n')
    result = invoke("leaderboard", "--store", store, "--out", out)
    assert result.exit_code == 0, result.output
    assert _snapshot(out) == before
    assert not list(out.rglob("*.tmp")), "no temporary file is left behind"


PLANTED = """
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
Path({marker!r}).write_text("ran")
class Data:
    pass
"""


@pytest.mark.parametrize(
    "module, distribution, message",
    [
        ("planted", None, "is not in torch_geometric.datasets: name the installed distribution"),
        ("planted", "torch", "'planted' is not provided by an installed distribution 'torch'"),
        # A file in the working directory shadowing the named distribution's own module.
        ("pyg_toy", "pyg-toy", "would be imported from"),
    ],
)
@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.slow  # a fresh interpreter per case: 5-15 s each
def test_a_planted_module_in_the_working_directory_is_refused_unrun(
    synthetic_env, tmp_path, module, distribution, message, dry_run
):
    marker = tmp_path / "marker"
    (tmp_path / f"{module}.py").write_text(PLANTED.format(marker=str(marker)))
    grid = tmp_path / "grid.toml"
    declared = f'distribution = "{distribution}"\n' if distribution else ""
    grid.write_text(
        f'[params.dataset.pyg]\nclass = "{module}.Data"\n{declared}'
        '[[study]]\ndatasets = ["pyg"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
    )
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", "grid.toml", "--store", "store"]
    command += ["--no-leaderboard"] + (["--dry-run"] if dry_run else [])
    # `python -m` puts the working directory first on the import path: the planted file is importable.
    result = subprocess.run(command, cwd=tmp_path, env=synthetic_env, capture_output=True, text=True, timeout=300)
    assert message in result.stdout + result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the planted module ran"


SLOW = """
name = "slow"
seeds = [0, 1, 2, 3]
[train]
epochs = 200
patience = 1000
batch_size = 8
[params.dataset."synthetic/chains"]
graphs = 300
[[study]]
datasets = ["synthetic/chains"]
protocols = ["iid"]
encoders = ["tiny"]
"""


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) of every process, from /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return out


def _workers_of(driver: int) -> list[int]:
    found = []
    for pid, (parent, _) in _processes().items():
        try:
            if parent == driver and "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
                found.append(pid)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    state = _processes().get(pid)
    return state is not None and state[1] != "Z"  # a zombie has ended; only its exit status is left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finding worker processes needs /proc")
@pytest.mark.slow
def test_workers_end_when_their_driver_is_killed(synthetic_env, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(SLOW)
    command = [sys.executable, "-m", "benchbase.cli", "run", "--grid", str(grid), "--store", str(tmp_path / "store")]
    driver = subprocess.Popen(
        [*command, "--no-leaderboard", "--jobs", "2"],
        env=synthetic_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, workers = time.time() + 300, []
        while time.time() < deadline and driver.poll() is None and len(workers) < 2:
            time.sleep(0.2)
            workers = _workers_of(driver.pid)
        assert workers, "the grid should run in worker processes"
    finally:
        driver.kill()
        driver.wait()
    deadline = time.time() + 60  # generous: only that they end, not how fast
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.5)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their driver"


STUDY = '[[study]]\ndatasets = ["synthetic/chains"]\nprotocols = ["iid"]\nencoders = ["tiny"]\n'
TRAIN = "seeds = [0]\n[train]\nepochs = 1\n"
SIZE_STUDY = STUDY.replace('protocols = ["iid"]', 'protocols = ["iid", "size"]')

BAD_GRIDS = {
    "params for a name in no study": (
        TRAIN + STUDY + "[params.encoder.gni]\nhidden = 300\n",
        "encoder 'gni' is in no study here, so 'hidden' would be ignored",
    ),
    "a study's params for a name it does not use": (
        TRAIN + STUDY + "[study.params.encoder.gcn]\nhidden = 8\n",
        "encoder 'gcn' is in no study here",
    ),
    "a sweep matching nothing": (
        TRAIN + STUDY + '[study.sweep]\n"encoder.gcn.hidden" = [8, 16]\n',
        "encoder 'gcn' is in no study here",
    ),
    "a seed of 2**70": ("seeds = [1180591620717411303424]\n" + STUDY, "integers in [0, 2**32)"),
    "a seed of 2**32": ("seeds = [4294967296]\n" + STUDY, "integers in [0, 2**32)"),
    "few_label without k": (TRAIN + 'few_label = {task = "count"}\n' + STUDY, "few_label must be {task"),
    "few_label k = 0": (TRAIN + 'few_label = {task = "count", k = 0}\n' + STUDY, "few_label must be {task"),
    "few_label of an unknown task": (
        TRAIN + 'few_label = {task = "nope", k = 3}\n' + STUDY,
        "few_label task 'nope' is not a graph-level task",
    ),
    "task_weights of an unknown task": (
        TRAIN + "task_weights = {nope = 1.0}\n" + STUDY,
        "task_weights name unknown task(s) ['nope']",
    ),
    "a task weight that is not a number": (
        TRAIN + 'task_weights = {count = "x"}\n' + STUDY,
        "task_weights must map task names to non-negative numbers",
    ),
    "threads = 100000": (TRAIN + "threads = 100000\n" + STUDY, "threads must be an integer >= 1 and <= 1024"),
    "train = 5": ("seeds = [0]\ntrain = 5\n" + STUDY, "[train] must be a table of training settings"),
    "a study's train = 5": (STUDY + "train = 5\n", "[study.train] must be a table"),
    "a size split with no test graphs": (
        TRAIN + SIZE_STUDY + "[params.protocol.size]\nmax_size = 20\n",
        "dataset 'synthetic/chains', seed 0: protocol 'size' with {'id_test_fraction': 0.1, 'max_size': 20,",
    ),
    "a size split with no training graphs": (
        TRAIN + SIZE_STUDY + "[params.protocol.size]\nmax_size = 2\n",
        "puts 120 of 120 usable graphs of 'synthetic/chains' in the test region",
    ),
    "a size split with no validation graphs": (  # 3 graphs of 20 at or below max_size: none left to validate
        TRAIN
        + SIZE_STUDY
        + '[params.dataset."synthetic/chains"]\ngraphs = 20\n'
        + "[params.protocol.size]\nmax_size = 3\nvalid_fraction = 0.01\nid_test_fraction = 0.01\n",
        "split has empty or missing slice(s) ['valid']",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.slow
def test_bad_grid_values_are_refused_at_planning(synthetic_env, tmp_path, case, dry_run):
    text, message = BAD_GRIDS[case]
    grid, store = tmp_path / "grid.toml", tmp_path / "store"
    grid.write_text(text)
    result = invoke("run", "--grid", grid, "--store", store, "--no-leaderboard", *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not store.exists(), "nothing is created for a grid that cannot run"


def test_the_same_grid_without_the_mistakes_runs(synthetic_env, tmp_path):
    """The checks above refuse the mistake, not the settings: valid values of each pass planning."""
    grid = tmp_path / "grid.toml"
    grid.write_text(
        "seeds = [4294967295]\n[train]\nepochs = 1\nthreads = 2\n"
        'few_label = {task = "count", k = 3}\ntask_weights = {count = 2.0}\n'
        + STUDY
        + "[study.params.encoder.tiny]\n"
        + '[study.sweep]\n"encoder.tiny.hidden" = [8, 16]\n'
    )
    result = invoke("run", "--grid", grid, "--store", tmp_path / "store", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "total: 2 runs" in result.output


def test_bad_files_and_names_are_one_line_and_create_nothing(synthetic_env, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(TRAIN + STUDY)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    (tmp_path / "odd" / "benchbase.sqlite").mkdir(parents=True)
    unknown_table = tmp_path / "unknown_table.toml"
    unknown_table.write_text(TRAIN + STUDY + "[executor.nonsense]\nfoo = 1\n")
    everything_skipped = tmp_path / "everything_skipped.toml"  # its only dataset's file is missing
    everything_skipped.write_text(
        TRAIN + '[params.dataset.csv]\npath = "missing.csv"\n' + STUDY.replace('"synthetic/chains"', '"csv"')
    )
    cases = [
        (["--grid", binary, "--store", tmp_path / "s1", "--dry-run"], "is not UTF-8 text"),
        (["--grid", folder, "--store", tmp_path / "s2", "--dry-run"], "is a directory; give the .toml file"),
        (["--grid", good, "--store", tmp_path / "s3", "--executor", "nonsense"], "unknown executor 'nonsense'"),
        (["--grid", good, "--store", tmp_path / "s4", "--executor-option", "nonsense=1"], "unknown parameter"),
        (["--grid", good, "--store", a_file], "is a file, not a directory"),
        (["--grid", good, "--store", a_file / "store"], "cannot be created: Not a directory"),
        (["--grid", good, "--store", tmp_path / "odd"], "benchbase.sqlite is not a file"),
        (["--grid", good, "--store", tmp_path / "s5", "--shared-dir", a_file], "shared directory"),
        (["--grid", unknown_table, "--store", tmp_path / "s6", "--dry-run"], "[executor.nonsense]: unknown executor"),
        (["--grid", everything_skipped, "--store", tmp_path / "s7"], "every combination is skipped"),
    ]
    for args, message in cases:
        result = invoke("run", "--no-leaderboard", *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert "Errno" not in result.output and "unable to open" not in result.output
    assert not any((tmp_path / f"s{i}").exists() for i in (1, 2, 3, 4, 5, 6, 7))


def test_usage_mistakes_through_the_command_are_one_line(synthetic_env, tmp_path):
    """Option and command typos go through click, which prints a usage box of five lines: the
    `benchbase` command turns them into one line and exit code 2, like any other bad input."""
    for args in (["bogus"], ["run", "--jobs", "0"], ["run", "--nonsense"], ["split", "x", "--seed", "-1"]):
        done = subprocess.run([sys.executable, "-m", "benchbase.cli", *args], env=synthetic_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, done.stderr)
    assert not (tmp_path / "results").exists()
    alone = subprocess.run([sys.executable, "-m", "benchbase.cli"], env=synthetic_env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Commands" in alone.stdout and "error" not in alone.stdout + alone.stderr  # the help, no empty error


def _forge(store: Path, **changes) -> Path:
    """A copy of a genuine run record with `changes`, planted beside it (the record directory of a
    shared directory others can write)."""
    genuine = sorted((store / "records").glob("[0-9a-f]*.json"))[0]
    record = {**json.loads(genuine.read_text()), **changes}
    path = store / "records" / f"{changes.get('run_id', 'ffffffffffffffff').replace('/', '_')}.json"
    path.write_text(json.dumps(record))
    return path


def _run_ids(store: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db:
        return {row[0] for row in db.execute("SELECT run_id FROM runs")}


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"run_id": "../../pwned2"}, "not signed with this store's key"),
        ({"metrics": {"count": {"test_mae": 0.0001}}}, "not signed with this store's key"),
        ({"predictions": "../elsewhere.npz"}, "not signed with this store's key"),
        ({"hmac": None}, "not signed with this store's key"),
    ],
)
@pytest.mark.slow
def test_a_forged_job_record_is_refused(published, tmp_path, changes, reason):
    store, out = published
    before = _run_ids(store)
    forged = _forge(store, **changes)
    result = invoke("collect", "--store", store)
    assert result.exit_code == 1 and f"refused {forged}: {reason}" in result.output, result.output
    assert _run_ids(store) == before
    doctor = invoke("doctor", "--store", store, "--repair")
    assert doctor.exit_code == 1 and reason in doctor.output, doctor.output
    assert _run_ids(store) == before
    assert "0.0001" not in json.dumps([json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()])


@pytest.mark.slow
def test_a_record_signed_with_the_key_but_not_the_harness_s_shape_is_refused(published):
    """Someone who can read the key still cannot name files outside the store or a foreign id."""
    from benchbase.running.store import sign_record

    store, _ = published
    genuine = sorted((store / "records").glob("[0-9a-f]*.json"))[0]
    record = json.loads(genuine.read_text())
    cases = {
        "../../pwned2": ({"run_id": "../../pwned2"}, "is not a job id"),
        "ffffffffffffffff": ({"run_id": "ffffffffffffffff"}, "is not the hash of its spec"),
        "other": ({"predictions": "../elsewhere.npz"}, "does not match its file name"),
    }
    for name, (changes, reason) in cases.items():
        path = store / "records" / f"{name.replace('/', '_')}.json"
        path.write_text(json.dumps(sign_record(store, {**record, **changes})))
        result = invoke("collect", "--store", store)
        assert result.exit_code == 1 and reason in result.output, result.output
        path.unlink()
    moved = sign_record(store, {**record, "predictions": "../elsewhere.npz"})
    genuine.write_text(json.dumps(moved))
    result = invoke("collect", "--store", store)
    assert result.exit_code == 1 and "its predictions '../elsewhere.npz' is not" in result.output


@pytest.mark.slow
def test_genuine_records_are_still_collected_and_exports_stay_in_their_folder(published, tmp_path):
    store, _ = published
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        db.execute("DELETE FROM runs")
    result = invoke("collect", "--store", store)
    assert result.exit_code == 0 and "loaded 2 record(s)" in result.output, result.output
    key = store / "record.key"
    assert key.stat().st_mode & 0o777 == 0o600
    export = tmp_path / "exp" / "a" / "b"
    assert invoke("results", "--store", store, "--predictions", export).exit_code == 0
    outside = [p for p in (tmp_path / "exp").rglob("*") if p.is_file() and p.parent != export]
    assert not outside and len(list(export.glob("*.npz"))) == 2


@pytest.mark.slow
def test_a_run_id_that_reached_the_database_never_names_a_file_outside_the_export(published, tmp_path):
    """A database written by an older benchbase may hold a forged record collected then."""
    store, _ = published
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        db.execute("UPDATE runs SET run_id = '../../pwned2' WHERE rowid = (SELECT min(rowid) FROM runs)")
    export = tmp_path / "exp" / "a" / "b"
    result = invoke("results", "--store", store, "--predictions", export)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "exp" / "pwned2.npz").exists() and not list(tmp_path.rglob("pwned2*"))


def _damage(store: Path, keep: str) -> None:
    database = store / "benchbase.sqlite"
    for suffix in ("-wal", "-shm"):
        (store / f"benchbase.sqlite{suffix}").unlink(missing_ok=True)
    data = database.read_bytes()
    database.write_bytes(b"" if keep == "nothing" else data[: len(data) // 2])


@pytest.mark.parametrize("keep", ["nothing", "half"])
def test_a_damaged_or_emptied_database_is_diagnosed_and_rebuilt_from_the_records(published, small_grid, keep):
    store, out = published
    finished = _run_ids(store)
    _damage(store, keep)
    for dry_run in (["--dry-run"], []):
        again = invoke("run", "--grid", small_grid, "--store", store, "--no-leaderboard", *dry_run)
        assert again.exit_code == 2, again.output  # refused before anything retrains
        assert "--rebuild" in again.output or "malformed" in again.output, again.output
    assert not list((store / "records").glob("*.json.*"))
    doctor = invoke("doctor", "--store", store)
    assert doctor.exit_code == 1 and "benchbase doctor --rebuild" in doctor.output, doctor.output
    assert "Traceback" not in doctor.output
    rebuilt = invoke("doctor", "--store", store, "--rebuild")
    assert "recreated" in rebuilt.output and "2 job record(s) loaded" in rebuilt.output, rebuilt.output
    assert list(store.glob("benchbase.sqlite.damaged-*"))
    assert _run_ids(store) == finished
    resumed = invoke("run", "--grid", small_grid, "--store", store, "--no-leaderboard")
    assert resumed.exit_code == 0 and "0 finished, 0 failed, 2 were already finished" in resumed.output


def test_a_slurm_job_folder_that_others_can_write_is_refused_or_warned_about(synthetic_env, small_grid, tmp_path):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")
    from benchbase.running.executors import make_executor

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # as a /scratch folder made for a team, without the sticky bit
    args = ["run", "--grid", small_grid, "--store", tmp_path / "store", "--shared-dir", shared, "--no-leaderboard"]
    result = invoke(*args, "--executor", "slurm", "--executor-option", "cluster=local")
    assert result.exit_code == 2 and f"{shared} can be written by others" in result.output, result.output
    assert "others_can_write=warn" in result.output
    options = {"cluster": "local", "others_can_write": "warn"}
    with pytest.warns(UserWarning, match="can be written by others"):
        make_executor("slurm", 1, options, workdir=shared / "engines").close()
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot replace what is in it
    make_executor("slurm", 1, {"cluster": "local"}, workdir=shared / "engines").close()
    shared.chmod(0o700)
    make_executor("slurm", 1, {"cluster": "local"}, workdir=shared / "engines").close()


@pytest.mark.parametrize(
    "stored",
    [
        {"questions": [{"id": 5, "factor": "nonsense"}], "rope": "x"},
        {"questions": "not a list", "until_decided": 7},
        {"analysis": {"rope": "x", "until_decided": 3}, "questions": [{"id": 5, "factor": "x"}], "seeds": "x"},
        {"analysis": [], "questions": [{"id": "q", "title": "t", "factor": "encoder", "metrics": 5}]},
        "not a table",
        None,
    ],
)
@pytest.mark.slow
def test_a_stored_grid_that_would_not_pass_today_never_breaks_a_later_grid(published, small_grid, tmp_path, stored):
    """Declarations stored by an older benchbase (or edited by hand) are read leniently: the
    leaderboards of the store, and a later grid run into it, still work."""
    store, _ = published
    with contextlib.closing(sqlite3.connect(store / "benchbase.sqlite")) as db, db:
        db.execute("UPDATE grids SET analysis = ?", (json.dumps(stored),))
    out = tmp_path / "lb-again"
    result = invoke("leaderboard", "--store", store, "--out", out)
    assert result.exit_code == 0, result.output
    other = tmp_path / "other.toml"
    other.write_text(SMALL.replace('name = "small"', 'name = "other"').replace("seeds = [0, 1]", "seeds = [2]"))
    later = invoke("run", "--grid", other, "--store", store, "--leaderboard-out", out, "--jobs", "1")
    assert later.exit_code == 0, later.output


@pytest.mark.parametrize("distribution", [None, "torch", "pyg-toy"])
def test_a_planted_module_on_the_import_path_is_refused_unrun_in_process(synthetic_env, tmp_path, monkeypatch,
                                                                         distribution):  # fmt: skip
    """The quick twin of the subprocess test above: the working directory first on the import path."""
    from benchbase.compute.pyg_dataset import build
    from benchbase.contract.errors import PluginError

    marker = tmp_path / "marker"
    (tmp_path / "planted_here.py").write_text(PLANTED.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="planted_here"):
        build(**{"class": "planted_here.Data", "distribution": distribution}).check_available()
    assert not marker.exists()
