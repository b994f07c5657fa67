"""A real one-node Slurm cluster on localhost, for the tests that need one.

It uses the Debian packages ``slurm-wlm`` and ``munge`` (`.ci/run` installs them): a minimal
slurm.conf in a temporary directory, then munged, slurmctld and slurmd, as root. Where that cannot
be done - the packages are absent, not root, a daemon does not start - `start` says why, and the
tests skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "scontrol")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.pids: list[Path] = []

    def _config(self) -> str:
        host = socket.gethostname().split(".")[0]
        r = self.root
        return "\n".join(
            [
                "ClusterName=benchbase-test",
                f"SlurmctldHost={host}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
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
                "",
            ]
        )

    def start(self) -> str | None:
        """Start the cluster; None when it is up, else why it is not."""
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
            if done.returncode != 0:
                return f"{daemon} did not start: {done.stderr.strip()[:200]}"
            self.pids.append(self.root / f"{daemon}.pid")
        deadline = time.time() + 60
        while time.time() < deadline:
            info = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if info.returncode == 0 and info.stdout.strip() in ("idle", "mixed", "allocated"):
                return None
            time.sleep(0.5)
        return f"the Slurm node did not come up: {(self.root / 'slurmctld.log').read_text()[-300:]}"

    def _munge(self) -> str | None:
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return None  # a munged is running already
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        started = subprocess.run(["runuser", "-u", "munge", "--", "munged"], capture_output=True, text=True)
        if started.returncode != 0 and subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            return f"munged did not start: {started.stderr.strip()[:200]}"
        return None

    def stop(self) -> None:
        if shutil.which("scancel"):  # absent where Slurm is not installed and the tests skip
            subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
        for pid_file in self.pids:
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass

    def queue(self) -> dict[str, str]:
        """Job id -> state of the jobs in the queue."""
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=self.env, capture_output=True, text=True).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
