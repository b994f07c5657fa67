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
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import openmm

from benchbase_glass.simulate import SimulationConfig, box_length, kelvin, simulate


def bare_rate(n: int, steps: int, threads: int, temperature: float) -> tuple[float, float]:
    """A user's plain OpenMM script: KA mixture in one CustomNonbondedForce, Verlet, CPU."""
    length = box_length(n)
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
    context.setVelocitiesToTemperature(kelvin(temperature), 1)
    integrator.step(steps)
    context.getState(getPositions=True)
    return n * steps / (time.process_time() - cpu), n * steps / (time.perf_counter() - wall)


def wrapper_rate(n: int, threads: int, temperature: float, seed: int) -> tuple[tuple[float, float], int]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.8)
    args = parser.parse_args()
    mine, theirs = [], []
    for r in range(args.rounds):
        rate, steps = wrapper_rate(args.particles, args.threads, args.temperature, seed=r)
        mine.append(rate)
        theirs.append(bare_rate(args.particles, steps, args.threads, args.temperature))
        print(
            f"round {r}: {steps} steps; simulator {mine[-1][0]:.3g}/CPU-s ({mine[-1][1]:.3g}/wall-s), "
            f"bare OpenMM {theirs[-1][0]:.3g}/CPU-s ({theirs[-1][1]:.3g}/wall-s) particle-steps",
            flush=True,
        )
    a, b = statistics.median(m[0] for m in mine), statistics.median(t[0] for t in theirs)
    wall = statistics.median(m[1] for m in mine) / statistics.median(t[1] for t in theirs)
    print(f"median: simulator {a:.3g}, bare OpenMM {b:.3g} particle-steps per CPU-second (N = {args.particles})")
    print(f"ratio simulator / bare = {a / b:.2f}x by CPU time, {wall:.2f}x by wall time (target >= 0.95x)")


if __name__ == "__main__":
    main()
