"""The Slurm driver's reading of the queue, against scripted answers of squeue, sacct and scontrol
(scripts on PATH, as the real commands are found) and jobs, submitted as arrays, that leave signed
outcome files where the job body would: what an unreachable slurmctld, a purged job, and runs ended
by Slurm with their failed stage (``kill_invalid_depend``) look like to the driver; arrays and the
queue cap; outcomes that are forged or planted. The real cluster's tests are in test_executors."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

submitit = pytest.importorskip("submitit", reason="submitit is not installed (pip install 'benchbase[slurm]')")

from benchbase.contract.errors import GridError, WorkerDied  # noqa: E402
from benchbase.running import slurm_executor  # noqa: E402


class FakeJob:
    def __init__(self, folder: Path, job_id: str) -> None:
        self.job_id = job_id
        self.paths = SimpleNamespace(folder=folder)
        self.cancelled = False

    def cancel(self, check: bool = True) -> None:
        self.cancelled = True


class FakeEngine:
    """submitit's executor as the driver uses it: one sbatch per `map_array`, an array of several
    tasks (ids ``N_i``) or one job (``N``); the ids submitted are kept in `queue` for a fake squeue."""

    def __init__(self, folder: Path, refusals: list[str] | None = None) -> None:
        self.folder, self.jobs, self.refusals, self.dependencies = folder, [], refusals or [], []
        self.arrays: list[int] = []  # tasks per sbatch
        self.queue = folder / "queue"
        self.queue.touch()

    def update_parameters(self, **parameters) -> None:
        self.parameters = parameters

    def map_array(self, fn, tasks) -> list[FakeJob]:
        if self.refusals:  # what sbatch printed, as submitit raises it
            raise submitit.core.utils.FailedJobError(self.refusals.pop(0))
        number = len(self.arrays) + 1
        ids = [f"{number}_{i}" for i in range(len(tasks))] if len(tasks) > 1 else [str(number)]
        self.jobs += [FakeJob(self.folder, job_id) for job_id in ids]
        self.arrays.append(len(tasks))
        self.dependencies.append(self.parameters["additional_parameters"].get("dependency"))
        with self.queue.open("a") as queue:
            queue.write("".join(f"{job_id}\n" for job_id in ids))
        return self.jobs[-len(tasks) :]


def _report(executor, job: FakeJob, key: str, ok: bool = True, **fields) -> None:
    """The outcome a job leaves, signed as `_Reported` signs it."""
    import json

    from benchbase.running.store import sign_record

    outcome = {"job": job.job_id, "key": key, "ok": ok, **fields}
    if ok:
        outcome.setdefault("result", f"result of {job.job_id}")
    path = executor.folder / "outcomes" / f"{job.job_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sign_record(executor.folder, outcome)))


def _fake(executor, folder: Path) -> None:
    executor.cluster = "slurm"  # polled as on a cluster, with the answers scripted on PATH
    executor.engine = FakeEngine(folder)
    executor.probe = False


def _slurm_says(bin_dir: Path, **scripts: str) -> None:
    """Shell bodies for squeue, sacct, scontrol."""
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)


@pytest.fixture
def driver(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = slurm_executor.SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"))
    _fake(executor, tmp_path)
    executor.submit("stage:s", print, {})
    executor.submit("run:a", print, {}, after=("stage:s",))
    executor.submit("run:b", print, {}, after=("stage:s",))
    assert list(executor.completed(timeout=0)) == []  # submitted: the stage, then its runs as one array
    assert executor.new_handles() == [("stage:s", "1"), ("run:a", "2_0"), ("run:b", "2_1")]
    assert executor.engine.dependencies == [None, "afterok:1"]
    return executor, bin_dir


def _drain(executor, withdraw_after_stage: bool = False) -> dict:
    seen = {}
    for key, outcome in executor.completed(timeout=0.5):
        seen[key] = outcome
        if key == "stage:s" and withdraw_after_stage:  # what the runner does when the stage failed
            executor.cancel("run:a")
            executor.cancel("run:b")
    return seen


def test_a_failing_squeue_is_no_news(driver):
    executor, bin_dir = driver
    _slurm_says(bin_dir, squeue="echo 'slurm_load_jobs error: Socket timed out on send/recv operation' >&2; exit 1")
    assert _drain(executor) == {} and executor.in_flight() == 3


def test_a_job_out_of_squeue_but_alive_for_slurm_is_not_ended(driver):
    executor, bin_dir = driver
    _slurm_says(bin_dir, squeue="exit 0", sacct="echo RUNNING", scontrol="exit 1")
    assert _drain(executor) == {} and executor.in_flight() == 3
    _slurm_says(bin_dir, sacct="echo 'Slurm accounting storage is disabled' >&2; exit 1",
                scontrol="echo 'JobId=1 JobState=PENDING Reason=Priority'")  # fmt: skip
    assert _drain(executor) == {} and executor.in_flight() == 3


def test_ended_jobs_are_confirmed_and_reported_with_their_state(driver, monkeypatch):
    executor, bin_dir = driver
    monkeypatch.setattr(slurm_executor, "RESULT_GRACE_SECONDS", 0.0)
    # squeue knows none of them; slurmctld has purged the stage, the runs were cancelled.
    _slurm_says(bin_dir, squeue="exit 0", sacct="exit 1",
                scontrol='case "$3" in 1) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1;; '
                         '*) echo "JobId=$3 JobState=CANCELLED";; esac')  # fmt: skip
    seen = {}
    for _ in range(10):  # the grace periods, measured on the monotonic clock, pass
        seen |= _drain(executor)
        if executor.in_flight() == 0:
            break
    assert list(seen) == ["stage:s", "run:a", "run:b"]  # no run before its stage
    assert all(isinstance(outcome, WorkerDied) for outcome in seen.values())
    assert "purged" in str(seen["stage:s"]) and "ended CANCELLED, no result" in str(seen["run:a"])


def test_a_job_out_of_requeues_at_its_time_limit_says_what_to_change(driver, monkeypatch):
    executor, bin_dir = driver
    monkeypatch.setattr(slurm_executor, "RESULT_GRACE_SECONDS", 0.0)
    _slurm_says(bin_dir, squeue="exit 0", sacct="echo TIMEOUT", scontrol="exit 1")
    seen = {}
    for _ in range(10):
        seen |= _drain(executor)
        if executor.in_flight() == 0:
            break
    assert "ended TIMEOUT, no result: it reached its time limit (time=120 min) after 3 requeue(s)" in str(
        seen["stage:s"]
    )
    assert "raise the executor option time" in str(seen["run:a"])


def test_runs_ended_with_their_failed_stage_are_withdrawn_without_a_key_error(driver):
    executor, bin_dir = driver
    # kill_invalid_depend: the stage failed (its result file holds the error) and Slurm ended its
    # runs; the driver learns both in one look at the queue and withdraws the runs on the stage's outcome.
    _report(executor, executor.engine.jobs[0], "stage:s", ok=False, error={"type": "ValueError", "message": "no"})
    _slurm_says(bin_dir, squeue="exit 0", sacct="echo 'CANCELLED by 0'", scontrol="exit 1")
    seen = _drain(executor, withdraw_after_stage=True)
    assert list(seen) == ["stage:s"] and executor.in_flight() == 0
    assert isinstance(seen["stage:s"], ValueError) and str(seen["stage:s"]) == "no"
    assert executor.engine.jobs[1].cancelled and executor.engine.jobs[2].cancelled


def test_a_slurm_that_stays_silent_ends_the_driver_with_one_line(driver):
    executor, bin_dir = driver
    executor.patience = 0
    _slurm_says(bin_dir, squeue="echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1")
    with pytest.raises(GridError, match="Slurm has not answered for 0s .*Unable to contact slurm controller"):
        _drain(executor)
    assert executor.in_flight() == 3  # still followed by the next invocation (their ids are in the store)


def test_job_scripts_run_the_configured_interpreter(tmp_path):
    import sys

    marker = tmp_path / "used"
    python = tmp_path / "python"  # e.g. the environment's path as the compute nodes see it
    python.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    executor = slurm_executor.SlurmExecutor(cluster="local", python=str(python), workdir=tmp_path)
    assert "python" in slurm_executor.SlurmExecutor.param_spec  # an option of grids and --executor-option
    executor.submit("run:x", abs, -3)
    outcomes = []
    while executor.in_flight():
        outcomes += list(executor.completed(timeout=60))
    assert outcomes == [("run:x", 3)]
    assert "submitit.core._submit" in marker.read_text()


LIMIT = ("sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission failed: Job violates "
         "accounting/QOS policy (job submit limit, user's size and/or time limits)")  # fmt: skip
ALL_RUNNING = """sed 's/$/ RUNNING/' {queue}"""  # every job submitted is listed as running


@pytest.fixture
def capped(tmp_path, monkeypatch):
    """A driver with room for 2 jobs in the queue; squeue lists every job submitted as running."""
    monkeypatch.setattr(slurm_executor, "POLL_SECONDS", 0.05)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = slurm_executor.SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"), max_queued=2)
    _fake(executor, tmp_path)
    _slurm_says(bin_dir, squeue=ALL_RUNNING.format(queue=executor.engine.queue))
    return executor


def test_a_capped_queue_is_topped_up_as_jobs_end(capped):
    executor, engine = capped, capped.engine
    executor.submit("stage:s", print, {})
    for run in "abcd":
        executor.submit(f"run:{run}", print, {}, after=("stage:s",))
    assert executor.handle("stage:s") is None and engine.jobs == []  # submitted at the next look
    _drain(executor)
    assert len(engine.jobs) == 2 and executor.in_flight() == 5  # the stage and run a; b, c, d wait
    assert executor.handle("run:b") is None  # nothing to follow yet: not submitted
    assert executor.new_handles() == [("stage:s", "1"), ("run:a", "2")]
    seen, finished = [], 0
    while executor.in_flight():
        if finished == len(engine.jobs):  # the jobs that wait are submitted at the next look
            seen += list(_drain(executor))
            continue
        job = engine.jobs[finished]
        _report(executor, job, next(k for k, j in executor._jobs.items() if j is job))  # the oldest job ends
        finished += 1
        seen += list(_drain(executor))
        assert len(engine.jobs) - finished <= 2  # never more than 2 in the queue
    assert seen == ["stage:s", "run:a", "run:b", "run:c", "run:d"]
    # Run a waited for the stage's job; the runs submitted after the stage succeeded wait for nothing,
    # and go together (one array) where the cap leaves room.
    assert engine.dependencies[:2] == [None, "afterok:1"] and set(engine.dependencies[2:]) == {None}
    assert sum(engine.arrays) == 5 and len(engine.arrays) < 5
    assert [key for key, _ in executor.new_handles()] == ["run:b", "run:c", "run:d"]


def test_jobs_ready_together_go_as_one_array_per_dependency(capped):
    executor, engine = capped, capped.engine
    executor.max_queued = None
    for stage in "st":
        executor.submit(f"stage:{stage}", print, {})
        for run in "abc":
            executor.submit(f"run:{stage}{run}", repr, {}, after=(f"stage:{stage}",))
    for run in "xyz":
        executor.submit(f"run:{run}", repr, {})  # stage and run jobs are different functions
    _drain(executor)
    # The stages and the runs without one in an array each, then the runs of each stage behind its task.
    assert engine.arrays == [2, 3, 3, 3]
    assert engine.dependencies == [None, None, "afterok:1_0", "afterok:1_1"]
    handles = dict(executor.new_handles())
    assert handles["stage:t"] == "1_1" and handles["run:x"] == "2_0" and handles["run:tc"] == "4_2"
    _report(executor, engine.jobs[0], "stage:s")
    executor.cancel("run:sb")  # one task of an array: the others go on
    assert engine.jobs[6].cancelled and not engine.jobs[5].cancelled  # 3_1, not 3_0
    assert dict(_drain(executor)) == {"stage:s": "result of 1_0"}


def test_runs_the_driver_orders_are_gathered_across_stages_into_one_array(capped, tmp_path):
    executor, engine = capped, capped.engine
    ordered = slurm_executor.SlurmExecutor(cluster="local", folder=str(tmp_path / "other"), runs_after="driver")
    assert not ordered.supports_dependencies and ordered.gather == 60  # the runner submits runs after stages
    executor.max_queued, executor._gathered_enough, executor.gather = None, 250, 3600.0
    for stage in "st":
        executor.submit(f"stage:{stage}", print, {})
    _drain(executor)
    assert engine.arrays == [2]  # nothing in flight to wait for: at once
    _report(executor, engine.jobs[0], "stage:s")
    assert list(_drain(executor)) == ["stage:s"]
    for run in "abc":  # what the runner submits once stage s succeeded
        executor.submit(f"run:s{run}", repr, {})
    assert _drain(executor) == {} and engine.arrays == [2]  # stage t still runs: its runs may join them
    _report(executor, engine.jobs[1], "stage:t")
    assert list(_drain(executor)) == ["stage:t"]
    for run in "abc":
        executor.submit(f"run:t{run}", repr, {})
    _drain(executor)  # nothing else in flight: the runs of both stages go as one array, with no dependency
    assert engine.arrays == [2, 6] and engine.dependencies == [None, None]
    executor.gather = 0.0
    executor.submit("run:x", repr, {})  # the oldest has waited gather_seconds: it goes, runs in flight or not
    _drain(executor)
    assert engine.arrays == [2, 6, 1]


def test_a_refused_submission_waits_and_is_submitted_again(capped):
    executor, engine = capped, capped.engine
    engine.refusals = [LIMIT, LIMIT]
    executor.submit("run:x", print, {})  # refused: not an error, the job waits
    assert _drain(executor) == {} and executor.in_flight() == 1
    while not engine.jobs:
        assert _drain(executor) == {}
    _report(executor, engine.jobs[0], "run:x")
    assert list(_drain(executor)) == ["run:x"] and executor.in_flight() == 0


def test_a_submission_refused_for_wrong_options_stops_the_grid(capped):
    capped.engine.refusals = ["sbatch: error: Batch job submission failed: Invalid partition name specified"]
    capped.submit("run:x", print, {})
    with pytest.raises(GridError, match="the cluster refused the job: .*Invalid partition name"):
        _drain(capped)


def test_a_cluster_refusing_jobs_for_longer_than_patience_stops_the_grid(capped):
    capped.engine.refusals, capped.patience = [LIMIT] * 100, 0
    capped.submit("run:x", print, {})
    with pytest.raises(GridError, match="has refused jobs for 0s: .*QOSMaxSubmitJobPerUserLimit"):
        _drain(capped)


def test_an_outcome_not_signed_by_the_job_is_a_failure(capped):
    import json

    executor = capped
    executor.submit("run:x", print, {})
    _drain(executor)
    forged = executor.folder / "outcomes" / "1.json"
    forged.parent.mkdir()
    forged.write_text(json.dumps({"job": "1", "key": "run:x", "ok": True, "result": {"test_mae": 0.0001}}))
    [(key, outcome)] = list(_drain(executor).items())
    assert key == "run:x" and isinstance(outcome, WorkerDied) and "refused" in str(outcome)


def test_patience_counts_across_short_waits(driver, monkeypatch):
    """The driver also watching another driver's jobs asks with a timeout: silence still adds up."""
    executor, bin_dir = driver
    executor.patience = 0.3
    _slurm_says(bin_dir, squeue="exit 1")
    with pytest.raises(GridError, match="Slurm has not answered"):
        for _ in range(20):
            list(executor.completed(timeout=0.05))


class _Planted:
    """A pickle that creates a file when loaded: what someone able to write the job folder plants."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_a_planted_result_pickle_is_never_loaded(tmp_path):
    import pickle

    executor = slurm_executor.SlurmExecutor(cluster="local", folder=str(tmp_path / "jobs"))
    executor.probe = False
    executor.submit("run:x", abs, -3)
    assert list(executor.completed(timeout=0)) == []  # submitted
    job = executor._jobs["run:x"]
    deadline = time.monotonic() + 120
    while not job.done() and time.monotonic() < deadline:  # done: its result pickle is there
        time.sleep(0.1)
    marker = tmp_path / "pwned"
    job.paths.result_pickle.write_bytes(pickle.dumps(("success", _Planted(marker))))
    outcomes = []
    while executor.in_flight():
        outcomes += list(executor.completed(timeout=60))
    assert outcomes == [("run:x", 3)]  # the job's own outcome, from its signed JSON
    assert not marker.exists()  # the pickle was never loaded
