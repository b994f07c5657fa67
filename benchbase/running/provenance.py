"""Where a result came from: hardware, installed distributions, the git commit, and the versions behind
each plugin of a run."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchbase.contract.kinds import RUN_KINDS


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


@functools.cache
def _requirements(distribution: str) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for text in requires:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.append(requirement.name)
    return names


def environment(distributions: list[str]) -> dict[str, str]:
    """Python and the installed versions of what the run's distributions require."""
    versions = {"python": sys.version.split()[0]}
    for name in sorted({req for dist in distributions for req in _requirements(dist)}):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


@functools.cache
def git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions_of(spec: dict[str, Any]) -> dict[str, Any]:
    """The distribution (and code fingerprint) behind each plugin of the run, and the environment."""
    components = {kind: spec["code"].get(kind) for kind in RUN_KINDS}
    if "pretrain_dataset" in spec["code"]:  # the dataset its pretraining stage read
        components["pretrain_dataset"] = spec["code"]["pretrain_dataset"]
    distributions = sorted({value.split(" ", 1)[0] for value in spec["code"].values()})
    return {"components": components, "harness": spec["code"]["harness"], "environment": environment(distributions)}
