"""Where the seconds of one quick-profile run go: a pretraining stage and its fine-tuning run of
the default grid, timed by phase.

    python benchmarks/profile_run.py                  # node masking + extrapolation, seed 0
    python benchmarks/profile_run.py --pretext none   # fine-tuning only
    python benchmarks/profile_run.py --ops            # also by torch operator: the GEMMs' share

It runs the harness's own functions (`benchbase.compute.pretraining.pretrain`, `run_finetune`) with one thread,
wrapping the functions of each phase in a timer. Times are exclusive (a phase inside another counts
for the inner one), so the phases add up to the total; "other" is what no wrapper covers. Process
start (importing the harness and its plugins in a fresh interpreter) and loading the featurised
dataset from the cache are timed separately. With ``--ops`` the same run is also attributed to
torch operators (`torch.profiler`, self CPU time, which the profiler itself inflates a little): the
share of the dense matrix multiplies says how much of a step any harness change cannot touch. The
last line printed is a JSON summary.
"""

from __future__ import annotations

# Imported before torch, as in a grid run: importing benchbase pins the portable CPU numerics.
import benchbase  # isort: skip  # noqa: F401

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from benchbase.compute import batching, finetuning, loading, pretraining
from benchbase.compute import run as one_run
from benchbase.contract.identity import cpu_numerics
from benchbase.contract.registry import default_registry
from benchbase.running.planning import load_grid


class PhaseTimer:
    """Exclusive wall time per phase: entering a phase pauses the one it interrupts."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []

    @contextmanager
    def phase(self, name: str):
        now = time.perf_counter()
        if self.stack:
            outer = self.stack[-1]
            self.seconds[outer[0]] += now - outer[1]
        self.stack.append([name, now])
        try:
            yield
        finally:
            name, started = self.stack.pop()
            now = time.perf_counter()
            self.seconds[name] += now - started
            if self.stack:
                self.stack[-1][1] = now

    def wrap(self, owner: object, attribute: str, name: str) -> None:
        original = getattr(owner, attribute)
        timer = self

        def timed(*args, **kwargs):
            with timer.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def instrument(timer: PhaseTimer) -> None:
    timer.wrap(batching.TensorGraphs, "batch", "batch assembly")
    timer.wrap(finetuning.FineTuner, "_loss", "forward + loss")
    timer.wrap(pretraining, "_pretext_loss", "forward + loss")
    timer.wrap(torch.Tensor, "backward", "backward")
    timer.wrap(torch.optim.Adam, "step", "optimizer")
    timer.wrap(torch.optim.Optimizer, "zero_grad", "optimizer")
    timer.wrap(finetuning.FineTuner, "_evaluate_loss", "evaluation (validation loss, every epoch)")
    timer.wrap(finetuning.FineTuner, "predict", "prediction of every slice")
    timer.wrap(one_run, "evaluate_pretext", "prediction of every slice")
    timer.wrap(torch, "save", "checkpoint I/O")
    timer.wrap(torch, "load", "checkpoint I/O")


#: Dense matrix multiplies: the linear layers' forward and backward (MKL or oneDNN kernels).
GEMM_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv"}


def operator_shares(profiler: torch.profiler.profile, top: int = 8) -> dict[str, float]:
    """Print the `top` operators by self CPU time and the GEMMs' share; return the shares."""
    events = [e for e in profiler.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    print(f"by torch operator (self CPU time, {total / 1e6:.2f} s profiled):")
    for event in events[:top]:
        seconds = event.self_cpu_time_total / 1e6
        print(f"  {event.key:<44} {seconds:7.2f} s  {100 * event.self_cpu_time_total / total:5.1f}%")
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / total
    print(f"  matrix multiplies ({', '.join(sorted(GEMM_OPS))}): {100 * gemm:.1f}% of it")
    return {"gemm_share": round(gemm, 3)}


def process_start() -> float:
    code = "import time; t = time.perf_counter(); import benchbase.running.driver, benchbase.compute.run; "
    code += (
        "from benchbase.contract.registry import default_registry; default_registry(); print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretext", default="node-masking")
    parser.add_argument("--protocol", default="extrapolation-threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ops", action="store_true", help="also attribute the run to torch operators")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = default_registry()
    grid = load_grid(registry, None)
    run = next(
        r
        for r in grid.runs
        if r.spec["pretext"]["name"] == args.pretext
        and r.spec["protocol"]["name"] == args.protocol
        and r.seed == args.seed
        and r.spec["rebalancer"]["name"] == "none"
    )
    print(f"run: {run.label()}; CPU numerics: {cpu_numerics()}")
    start = process_start()
    dataset = loading.build_dataset(registry, *run.component("dataset"))
    dataset.prepare(progress=False)  # featurised once, cached: the runs load it
    loading._datasets.clear()
    loading._tensors.clear()
    began = time.perf_counter()
    loading.dataset_tensors(registry, *run.component("dataset"))
    load = time.perf_counter() - began
    timer = PhaseTimer()
    instrument(timer)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if args.ops else nullcontext()
    with tempfile.TemporaryDirectory() as tmp, profiler, timer.phase("other"):
        began = time.perf_counter()
        checkpoint = None
        if run.stage_id is not None:
            checkpoint = Path(tmp) / "stage.pt"
            pretraining.pretrain(registry, run.stage_spec(), checkpoint)
        outcome = one_run.run_finetune(registry, run, checkpoint)
        total = time.perf_counter() - began
    phases = dict(sorted(timer.seconds.items(), key=lambda item: -item[1]))
    print(f"process start (imports, plugin registry): {start:7.2f} s (once per worker)")
    print(f"dataset load from the cache:              {load:7.2f} s (once per worker)")
    print(f"stage + run: {total:.2f} s; fine-tuning stopped after {outcome.details['fit']['epochs_run']} epochs")
    for name, seconds in phases.items():
        print(f"  {name:<44} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    summary = {"process_start": round(start, 2), "dataset_load": round(load, 2), "total": round(total, 2)}
    summary |= {name: round(seconds, 2) for name, seconds in phases.items()}
    if args.ops:
        summary |= operator_shares(profiler)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
