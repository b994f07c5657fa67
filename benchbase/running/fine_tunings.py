"""The fine-tuning runs of a grid, set up in this process as `benchbase run` sets them up (for
notebooks, plugins' tests and the curves of the glass plugin)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from benchbase.compute.pretraining import pretrain
from benchbase.compute.run import FineTuning, prepare_finetune
from benchbase.contract.api import (
    PluginError,
)
from benchbase.contract.registry import Registry, default_registry
from benchbase.running.planning import expand_grid, load_grid


def fine_tunings(grid: Path | str | Mapping[str, Any], registry: Registry | None = None) -> Iterator[FineTuning]:
    """The fine-tuning runs of a grid (a grid file, or its table as a dict), in the grid's order,
    each set up as ``benchbase run`` sets it up (`FineTuning`); for research scripts such as
    learning curves (``tuner.fit(run.split, on_epoch=...)``). Nothing is stored. A run with a
    pretext task is pretrained first, into a temporary checkpoint that its tuner loads. The
    caller sets torch's thread count (``benchbase run`` uses the run's ``train.threads``). Raises
    `PluginError` when the grid has no run this machine can train, saying why."""
    registry = registry or default_registry()
    if isinstance(grid, Mapping):
        expanded = expand_grid(registry, dict(grid))
    else:
        expanded = load_grid(registry, grid)
    if not expanded.runs:
        reasons = sorted({f"{s.label}: {s.reason}" for s in expanded.skipped})
        raise PluginError("the grid has no run to fine-tune" + (": " + "; ".join(reasons) if reasons else ""))
    for run in expanded.runs:
        prepared = prepare_finetune(registry, run)
        stage = run.stage_spec()
        if stage is not None:
            with tempfile.TemporaryDirectory(prefix="benchbase-stage-") as folder:
                checkpoint = Path(folder) / "stage.pt"
                pretrain(registry, stage, checkpoint)
                prepared.tuner.load_pretrained(checkpoint)
        yield prepared
