"""`benchbase glass ...`: the simulator and the descriptor baseline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from benchbase import PluginError

glass_app = typer.Typer(help="Glass dynamics: Kob-Andersen simulator and baselines.", no_args_is_help=True)


def _fail(exc: PluginError) -> None:
    typer.secho(f"error: {exc}", err=True, fg="red")
    raise typer.Exit(2)


@glass_app.command("simulate")
def simulate_command(
    out: Path = typer.Option(..., "--out", help="Root directory; files go to OUT/T<temp>/<train|test>/"),
    particles: int = typer.Option(1000, "--particles", help="Number of particles N (80% A, 20% B)"),
    temperature: float = typer.Option(0.6, "--temperature", help="Reduced temperature T"),
    configurations: int = typer.Option(4, "--configurations", help="Equilibrium configurations M"),
    runs: int = typer.Option(8, "--runs", help="Iso-configurational runs R per configuration"),
    times: str = typer.Option("0.5,2,10", "--times", help="Comma-separated save times in LJ tau"),
    seed: int = typer.Option(0, "--seed"),
    test_fraction: float = typer.Option(0.25, "--test-fraction", help="Share of configurations written to test/"),
    equilibration: float = typer.Option(100.0, "--equilibration", help="Tau of NVT between configurations"),
    timestep: float = typer.Option(0.005, "--timestep", help="Time step in tau"),
    threads: int = typer.Option(2, "--threads", help="CPU threads (results are reproducible per thread count)"),
    platform: str = typer.Option("CPU", "--platform", help="OpenMM platform: CPU, CUDA, OpenCL, Reference"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Simulate the 3D Kob-Andersen mixture and write iso-configurational ensembles (BOTAN layout).

    Re-running the same command resumes: finished configurations are skipped."""
    from benchbase_glass.simulate import SimulationConfig, parse_times, simulate

    try:
        cfg = SimulationConfig(
            particles=particles,
            temperature=temperature,
            configurations=configurations,
            runs=runs,
            times=parse_times(times),
            seed=seed,
            test_fraction=test_fraction,
            equilibration=equilibration,
            initial_equilibration=equilibration,
            timestep=timestep,
            threads=threads,
            platform=platform,
        )
        summary = simulate(cfg, out, progress_bar=progress)
    except PluginError as exc:
        _fail(exc)
    typer.echo(json.dumps(summary))


@glass_app.command("baseline")
def baseline_command(
    dataset: str = typer.Option("glass/ka-small", "--dataset", help="glass/botan, glass/ka-small or glass/glassbench"),
    root: str | None = typer.Option(None, "--root", help="Dataset root (default: the dataset's own)"),
    temperature: float | None = typer.Option(None, "--temperature"),
    time_index: int | None = typer.Option(None, "--time-index"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Linear regression of propensity on local-structure descriptors (glass-time split); prints
    the test Pearson r per configuration (mean) and MAE as JSON."""
    from benchbase_glass.datasets import DATASETS
    from benchbase_glass.descriptors import descriptor_baseline
    from benchbase_glass.protocols import GlassTime

    factories = {name: factory for name, factory, _ in DATASETS}
    try:
        if dataset not in factories:
            raise PluginError(f"unknown glass dataset {dataset!r}; choose from {sorted(factories)}")
        ds = factories[dataset](root=root)
        protocol = GlassTime(temperature=temperature, time_index=time_index)
        split = protocol.split(ds, ds.task("propensity"), seed)
        result = descriptor_baseline(ds, split)
    except PluginError as exc:
        _fail(exc)
    temps = ds.graph_property("temperature")[split["test"]]
    times = ds.graph_property("time_index")[split["test"]]
    result.update({"dataset": dataset, "temperature": float(temps[0]), "time_index": int(times[0]), "seed": seed})
    typer.echo(json.dumps(result))
