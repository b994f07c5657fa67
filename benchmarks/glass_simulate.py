"""Particle-steps per second of `benchbase glass simulate` against a bare OpenMM script of the same
Kob-Andersen system (same expression, platform, threads, time step), in one process run.

The wrapper side runs the full simulator (Langevin equilibration segments, iso-configurational NVE
runs, a Context per equilibration segment and one per configuration's runs, checkpoints and output
files) and divides its particle-steps by its time; the bare side builds one Context and calls a
Verlet `integrator.step` for the same number of steps. Rounds alternate and the median of each is
reported, per CPU-second of this process (robust to other load on a shared machine; both sides use
the same thread count) and per wall-second.
Target: ratio >= 0.95.

    python benchmarks/glass_simulate.py [--particles 500] [--rounds 3] [--threads 2]

Each round also runs the bare script standalone, in a fresh interpreter (as a user runs it), and
prints the ratio against it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import openmm


def bare_rate(n: int, steps: int, threads: int, length: float, temperature_k: float) -> tuple[float, float]:
    """A user's plain OpenMM script: KA mixture in one CustomNonbondedForce, Verlet, CPU. Box
    length and temperature in kelvin come from the caller, so that this side imports nothing of
    benchbase and runs the same in a fresh interpreter (``--bare-standalone``)."""
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(length, 0, 0), openmm.Vec3(0, length, 0), openmm.Vec3(0, 0, length))
    force = openmm.CustomNonbondedForce(
        "step(2.5*sig - r)*4*eps*((sig/r)^12 - (sig/r)^6 - (2.5^-12 - 2.5^-6));"
        "eps = 1 + 1.25*a - 0.75*a*a; sig = 1 - 0.34*a + 0.14*a*a; a = t1 + t2"
    )
    force.addPerParticleParameter("t")
    rng = np.random.default_rng(0)
    types = (rng.permutation(n) < n // 5).astype(float)
    for t in types:
        system.addParticle(1.0)
        force.addParticle([t])
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(2.5)
    force.setUseLongRangeCorrection(False)
    system.addForce(force)
    per_side = int(np.ceil(n ** (1 / 3)))
    grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    integrator = openmm.VerletIntegrator(0.005)
    cpu, wall = time.process_time(), time.perf_counter()
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": str(threads)})
    context.setPositions((grid + 0.5) * (length / per_side))
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
    context.setVelocitiesToTemperature(temperature_k, 1)
    integrator.step(steps)
    context.getState(getPositions=True)
    return n * steps / (time.process_time() - cpu), n * steps / (time.perf_counter() - wall)


def wrapper_rate(n: int, threads: int, temperature: float, seed: int) -> tuple[tuple[float, float], int]:
    from benchbase_glass.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(
        particles=n,
        temperature=temperature,
        configurations=2,
        runs=4,
        times=[0.5, 2.0, 5.0],
        seed=seed,
        equilibration=5.0,
        initial_equilibration=5.0,
        melt=2.0,
        threads=threads,
    )
    with tempfile.TemporaryDirectory() as out:
        cpu = time.process_time()
        summary = simulate(cfg, out, progress_bar=False)
        cpu = time.process_time() - cpu
    steps = summary["particle_steps"]
    return (steps / cpu, summary["particle_steps_per_second"]), steps // n


def standalone_bare(n: int, steps: int, threads: int, length: float, temperature_k: float) -> tuple[float, float]:
    """The bare script in a fresh interpreter, as a user runs it."""
    command = [sys.executable, __file__, "--bare-standalone", str(steps), "--particles", str(n)]
    command += ["--threads", str(threads), "--length", repr(length), "--kelvin", repr(temperature_k)]
    out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    return out["cpu"], out["wall"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--bare-standalone", type=int, metavar="STEPS", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--kelvin", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_standalone:  # the child process of standalone_bare
        cpu, wall = bare_rate(args.particles, args.bare_standalone, args.threads, args.length, args.kelvin)
        print(json.dumps({"cpu": cpu, "wall": wall}))
        return
    from benchbase_glass.simulate import box_length, kelvin

    length, temperature_k = box_length(args.particles), kelvin(args.temperature)
    mine, theirs, alone = [], [], []
    for r in range(args.rounds):
        rate, steps = wrapper_rate(args.particles, args.threads, args.temperature, seed=r)
        mine.append(rate)
        theirs.append(bare_rate(args.particles, steps, args.threads, length, temperature_k))
        alone.append(standalone_bare(args.particles, steps, args.threads, length, temperature_k))
        print(
            f"round {r}: {steps} steps; simulator {mine[-1][0]:.3g}/CPU-s ({mine[-1][1]:.3g}/wall-s), "
            f"bare OpenMM {theirs[-1][0]:.3g}/CPU-s ({theirs[-1][1]:.3g}/wall-s), "
            f"bare OpenMM standalone {alone[-1][0]:.3g}/CPU-s ({alone[-1][1]:.3g}/wall-s) particle-steps",
            flush=True,
        )
    a, b = statistics.median(m[0] for m in mine), statistics.median(t[0] for t in theirs)
    c = statistics.median(t[0] for t in alone)
    wall = statistics.median(m[1] for m in mine) / statistics.median(t[1] for t in theirs)
    wall_alone = statistics.median(m[1] for m in mine) / statistics.median(t[1] for t in alone)
    print(f"median particle-steps per CPU-second (N = {args.particles}): simulator {a:.3g},")
    print(f"  bare OpenMM {b:.3g} in this process and {c:.3g} standalone")
    print(f"ratio simulator / bare in process = {a / b:.2f}x by CPU time, {wall:.2f}x by wall time")
    print(f"ratio simulator / bare standalone = {a / c:.2f}x by CPU time, {wall_alone:.2f}x by wall time")
    print("target: >= 0.95x")


if __name__ == "__main__":
    main()
