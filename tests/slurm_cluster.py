"""A real one-node Slurm cluster on localhost, owned by the tests that start it.

It uses the Debian packages ``slurm-wlm`` and ``munge`` (`.ci/run` installs them), as root. Everything
is private to it: a munged on its own socket and key (in a folder of its own), a slurmctld and a slurmd on ports
that were free, state, spool, pid and log files, and a cluster name drawn for this start. Another
Slurm on the machine (a colleague's tests, a real installation) is neither used nor disturbed: the
cluster checks that the slurmctld answering on its port is the one it started, cancels only the jobs
of its own queue, and stops only the daemons it started. Where that cannot be done - the packages
are absent, not root, a daemon does not start or is not its own - `start` says why, and the tests
skip with that reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "scontrol")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class Cluster:
    def __init__(self, root: Path, settings: tuple[str, ...] = ()) -> None:
        self.root = root
        self.settings = settings  # more slurm.conf lines
        self.conf = root / "slurm.conf"
        # A short private folder: a unix socket's path is limited to 108 bytes, test folders are long.
        self.munge = Path(tempfile.mkdtemp(prefix="bb-munge-"))
        self.munge_socket = self.munge / "socket"
        self.name = "bb" + secrets.token_hex(4)  # tells this cluster's slurmctld from any other
        self.ports = {"slurmctld": _free_port(), "slurmd": _free_port()}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pids: dict[str, int] = {}  # daemons this cluster started

    def _config(self) -> str:
        host = socket.gethostname().split(".")[0]
        r = self.root
        return "\n".join(
            [
                f"ClusterName={self.name}",
                f"SlurmctldHost={host}",
                f"SlurmctldPort={self.ports['slurmctld']}",
                f"SlurmdPort={self.ports['slurmd']}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={self.munge_socket}",
                f"StateSaveLocation={r}/state",
                f"SlurmdSpoolDir={r}/spool",
                f"SlurmctldPidFile={r}/slurmctld.pid",
                f"SlurmdPidFile={r}/slurmd.pid",
                f"SlurmctldLogFile={r}/slurmctld.log",
                f"SlurmdLogFile={r}/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "SchedulerType=sched/backfill",
                "ReturnToService=2",
                "MpiDefault=none",
                "JobAcctGatherType=jobacct_gather/none",
                "MinJobAge=600",
                f"NodeName={host} CPUs={os.cpu_count() or 1} RealMemory=2000 State=UNKNOWN",
                "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                *self.settings,
                "",
            ]
        )

    def start(self) -> str | None:
        """Start the cluster; None when it is up and its own, else why it is not."""
        missing = [d for d in DAEMONS if shutil.which(d) is None]
        if missing:
            return f"Slurm is not installed ({', '.join(missing)} missing; Debian packages slurm-wlm and munge)"
        if os.geteuid() != 0:
            return "starting Slurm daemons here needs root"
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        reason = self._munge()
        if reason:
            return reason
        for daemon in ("slurmctld", "slurmd"):
            done = subprocess.run([daemon, "-f", str(self.conf)], env=self.env, capture_output=True, text=True)
            pid = self._pid(daemon)
            if pid is not None:
                self.pids[daemon] = pid
            if done.returncode != 0:
                return f"{daemon} did not start: {done.stderr.strip()[:200]}"
        deadline = time.time() + 60
        while time.time() < deadline:
            dead = self._dead()
            if dead:  # e.g. exited on "Address already in use": waiting will not help
                return dead
            reason = self._not_ours()
            if reason is None:
                info = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
                if info.returncode == 0 and info.stdout.strip() in ("idle", "mixed", "allocated"):
                    return None
            time.sleep(0.5)
        return f"the Slurm cluster did not come up: {reason or self._log_tail('slurmctld')}"

    def _pid(self, daemon: str, folder: Path | None = None) -> int | None:
        """The pid a daemon wrote (it forks into the background), once it wrote it."""
        pid_file = (folder or self.root) / f"{daemon}.pid"
        for _ in range(40):
            try:
                return int(pid_file.read_text().strip())
            except (OSError, ValueError):
                time.sleep(0.25)
        return None

    def _log_tail(self, daemon: str) -> str:
        """The daemon's last fatal or error line (else its last line)."""
        log = self.root / f"{daemon}.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else [f"no {log}"]
        bad = [line for line in lines if "fatal" in line or "error" in line]
        return (bad or lines or [""])[-1][:300]

    def _dead(self) -> str | None:
        for daemon in ("slurmctld", "slurmd"):
            pid = self.pids.get(daemon)
            if pid is None or not _alive(pid):
                return f"{daemon} exited after starting: {self._log_tail(daemon)}"
        return None

    def _not_ours(self) -> str | None:
        """Why the slurmctld answering on this cluster's port is not the one it started, or None."""
        dead = self._dead()
        if dead:
            return dead
        config = subprocess.run(["scontrol", "show", "config"], env=self.env, capture_output=True, text=True)
        names = [line.split("=", 1)[1].strip() for line in config.stdout.splitlines() if line.startswith("ClusterName")]
        if config.returncode != 0:
            return f"slurmctld does not answer: {config.stderr.strip()[:200]}"
        if names != [self.name]:
            return f"another slurmctld ({names}) answers on port {self.ports['slurmctld']}, not this cluster's"
        return None

    def _munge(self) -> str | None:
        m = self.munge
        key = m / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        # --force: munged refuses to run as root, and frowns at /tmp's permissions above its socket.
        started = subprocess.run(
            ["munged", "--force", f"--socket={self.munge_socket}", f"--key-file={key}", f"--pid-file={m}/munged.pid",
             f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
            capture_output=True, text=True,
        )  # fmt: skip
        pid = self._pid("munged", m)
        if pid is not None:
            self.pids["munged"] = pid
        check = subprocess.run(["munge", "-n", "-S", str(self.munge_socket)], capture_output=True)
        if started.returncode != 0 or check.returncode != 0:
            return f"munged did not start: {started.stderr.strip()[:200]}"
        return None

    def stop(self) -> None:
        """Cancel the jobs of this cluster's queue (no other), let them go, stop its daemons."""
        if "slurmctld" in self.pids and _alive(self.pids["slurmctld"]) and self._not_ours() is None:
            jobs = list(self.queue())
            if jobs:
                subprocess.run(["scancel", *jobs], env=self.env, capture_output=True)
            deadline = time.time() + 30  # slurmd must outlive its jobs' steps, or they run on orphaned
            while time.time() < deadline and self.queue():
                time.sleep(0.5)
        for daemon in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(daemon, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                continue
            deadline = time.time() + 20
            while time.time() < deadline and _alive(pid):
                time.sleep(0.2)
        shutil.rmtree(self.munge, ignore_errors=True)

    def node(self, state: str) -> None:
        """Set this cluster's node DRAIN (no job starts) or RESUME."""
        host = socket.gethostname().split(".")[0]
        subprocess.run(["scontrol", "update", f"nodename={host}", f"state={state}", "reason=test"],
                       env=self.env, check=True, capture_output=True)  # fmt: skip

    def queue(self) -> dict[str, str]:
        """Job id -> state of the jobs in the queue."""
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=self.env, capture_output=True, text=True).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
