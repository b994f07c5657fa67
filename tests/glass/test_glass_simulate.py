"""The Kob-Andersen simulator: potential, thermodynamics, determinism, resumption, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

openmm = pytest.importorskip("openmm")

from benchbase.contract.api import PluginError  # noqa: E402
from benchbase_glass.formats import read_botan_file  # noqa: E402
from benchbase_glass.simulate import KASimulator, SimulationConfig, ka_pair_energy, kelvin, simulate  # noqa: E402

EPS = {(0, 0): 1.0, (0, 1): 1.5, (1, 1): 0.5}
SIG = {(0, 0): 1.0, (0, 1): 0.8, (1, 1): 0.88}


def tiny(**changes) -> SimulationConfig:
    base = dict(
        particles=200,
        temperature=1.0,
        configurations=2,
        runs=2,
        times=[0.05, 0.2],
        seed=3,
        equilibration=2.0,
        initial_equilibration=2.0,
        melt=1.0,
        threads=1,
        test_fraction=0.5,
    )
    base.update(changes)
    return SimulationConfig(**base)


def independent_system(types: np.ndarray, box: float):
    """The same potential written differently: one force per pair type via interaction groups,
    each with constant parameters, its own cutoff and its own shift."""
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(box, 0, 0), openmm.Vec3(0, box, 0), openmm.Vec3(0, 0, box))
    for _ in types:
        system.addParticle(1.0)
    a_set = [int(i) for i in np.flatnonzero(types == 0)]
    b_set = [int(i) for i in np.flatnonzero(types == 1)]
    for (ta, tb), group in {(0, 0): (a_set, a_set), (0, 1): (a_set, b_set), (1, 1): (b_set, b_set)}.items():
        eps, sig = EPS[(ta, tb)], SIG[(ta, tb)]
        rc = 2.5 * sig
        shift = 4 * eps * ((sig / rc) ** 12 - (sig / rc) ** 6)
        force = openmm.CustomNonbondedForce(f"4*{eps}*(({sig}/r)^12 - ({sig}/r)^6) - {shift}")
        for _ in types:
            force.addParticle([])
        force.addInteractionGroup(*group)
        force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
        force.setCutoffDistance(rc)
        force.setUseLongRangeCorrection(False)
        system.addForce(force)
    return system


def _energy_per_particle(system, positions) -> float:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    return context.getState(getEnergy=True).getPotentialEnergy()._value / len(positions)


def test_energy_matches_independent_potential_and_numpy(tmp_path):
    cfg = tiny(configurations=1, test_fraction=0.0)
    sim = KASimulator(cfg)
    sim.run(tmp_path)
    sample = read_botan_file(next((tmp_path / "T1" / "train").glob("*tc00.npz")))
    ours = sim.potential_energy_per_particle(sample.initial_positions)
    theirs = _energy_per_particle(independent_system(sample.types, sim.length), sample.initial_positions)
    assert ours == pytest.approx(theirs, rel=1e-5)
    # and a direct numpy sum over all pairs
    pos, box = sample.initial_positions, sim.length
    i, j = np.triu_indices(len(pos), 1)
    d = pos[j] - pos[i]
    d -= box * np.round(d / box)
    direct = ka_pair_energy(np.linalg.norm(d, axis=1), sample.types[i], sample.types[j]).sum() / len(pos)
    assert ours == pytest.approx(direct, rel=1e-5)


def test_mean_energy_at_temperature_agrees_with_independent_run(tmp_path):
    """Thermodynamics: the simulator's equilibrated configurations at T = 1.0 and an independent
    Langevin run of the independently written potential give the same mean energy per particle."""
    cfg = tiny(configurations=4, runs=1, times=[0.01], equilibration=3.0, initial_equilibration=5.0, test_fraction=0.0)
    sim = KASimulator(cfg)
    sim.run(tmp_path)
    ours = [
        sim.potential_energy_per_particle(read_botan_file(p).initial_positions)
        for p in sorted((tmp_path / "T1" / "train").glob("*.npz"))
    ]
    system = independent_system(sim.types, sim.length)
    integrator = openmm.LangevinMiddleIntegrator(kelvin(1.0), 1.0, 0.005)
    integrator.setRandomNumberSeed(11)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    rng = np.random.default_rng(0)
    context.setPositions(rng.uniform(0, sim.length, (cfg.particles, 3)))
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    context.setVelocitiesToTemperature(kelvin(1.0), 5)
    integrator.step(1600)  # 8 tau: tau_alpha is about 1 at T = 1
    theirs = []
    for _ in range(8):
        integrator.step(200)
        theirs.append(context.getState(getEnergy=True).getPotentialEnergy()._value / cfg.particles)
    # KA at T = 1.0, density 1.2: about -6.2 per particle (shifted potential); N = 200 fluctuates by ~0.1
    assert -6.6 < np.mean(ours) < -5.8
    assert np.mean(ours) == pytest.approx(np.mean(theirs), abs=0.15)


def _tree(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("isoconfig*.npz"))}


def test_deterministic_and_resumable(tmp_path):
    cfg = tiny()
    simulate(cfg, tmp_path / "a", progress_bar=False)
    simulate(tiny(), tmp_path / "b", progress_bar=False)
    first = _tree(tmp_path / "a")
    assert len(first) == 4 and first == _tree(tmp_path / "b")
    # interrupted before config 1 (its files and chain state gone), then mid-config (files gone only)
    tdir = tmp_path / "b" / "T1"
    for p in tdir.rglob("*_1_tc*.npz"):
        p.unlink()
    (tdir / ".chain" / "state_1.npz").unlink()
    summary = simulate(tiny(), tmp_path / "b", progress_bar=False)
    assert summary["files_written"] == 2 and _tree(tmp_path / "b") == first
    for p in tdir.rglob("*_1_tc*.npz"):
        p.unlink()
    assert simulate(tiny(), tmp_path / "b", progress_bar=False)["files_written"] == 2
    assert _tree(tmp_path / "b") == first
    assert simulate(tiny(), tmp_path / "b", progress_bar=False)["files_written"] == 0
    with pytest.raises(PluginError, match="different settings"):
        simulate(tiny(runs=3), tmp_path / "b", progress_bar=False)


def test_output_layout_and_meta(tmp_path):
    simulate(tiny(), tmp_path, progress_bar=False)
    meta = json.loads((tmp_path / "T1" / "meta.json").read_text())
    for key in ("temperature", "density", "N", "time_step", "thermostat", "times", "seed", "versions"):
        assert key in meta
    assert meta["versions"]["openmm"] == openmm.__version__
    train = read_botan_file(tmp_path / "T1" / "train" / "isoconfig_N200T1_0_tc01.npz")
    test = read_botan_file(tmp_path / "T1" / "test" / "isoconfig_N200T1_1_tc01.npz")
    assert train.positions.shape == (2, 200, 3) and test.split == "test"
    assert np.bincount(train.types).tolist() == [160, 40]
    assert train.box == pytest.approx((200 / 1.2) ** (1 / 3))
    # unwrapped: short-time displacements stay small even for particles that crossed the box
    assert np.abs(train.positions - train.initial_positions).max() < 1.5


def test_bad_options_are_clear():
    with pytest.raises(PluginError, match="increasing"):
        SimulationConfig(times=[2.0, 1.0]).validate()
    with pytest.raises(PluginError, match="box below"):
        SimulationConfig(particles=20).validate()


def test_cli_simulate(tmp_path):
    from typer.testing import CliRunner

    from benchbase.cli import app

    args = ["glass", "simulate", "--out", str(tmp_path), "--particles", "200", "--temperature", "1.2"]
    args += ["--configurations", "1", "--runs", "1", "--times", "0.02,0.05", "--seed", "1", "--equilibration", "1"]
    args += ["--threads", "1", "--test-fraction", "0", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["files_written"] == 2
    again = CliRunner().invoke(app, args)
    assert json.loads(again.output.strip().splitlines()[-1])["files_written"] == 0
    bad = CliRunner().invoke(app, [*args[:-1], "--times", "5,1"])
    assert bad.exit_code == 2 and "increasing" in bad.output


def test_isoconfigurational_runs_reuse_one_context_without_changing_a_trajectory():
    """The R runs share one OpenMM Context (a speed-up); each must still be the trajectory a fresh
    Context gives from the same positions and velocity seed."""
    from benchbase_glass.simulate import KASimulator, SimulationConfig, _seed, kelvin

    cfg = SimulationConfig(particles=200, configurations=1, runs=3, times=[0.25, 0.5], melt=0.5, threads=1)
    sim = KASimulator(cfg)
    positions, _ = sim.initial_state()
    shared = sim.isoconfigurational(positions, config_id=0)
    mm = sim.openmm
    for run in range(cfg.runs):
        integrator = mm.VerletIntegrator(cfg.timestep)
        context = sim._context(integrator, positions)
        context.setVelocitiesToTemperature(kelvin(cfg.temperature), _seed(cfg.seed, 5, 0, run))
        integrator.step(cfg.steps(cfg.times[0]))
        first = sim._state(context, velocities=False)[0]
        integrator.step(cfg.steps(cfg.times[1]) - cfg.steps(cfg.times[0]))
        second = sim._state(context, velocities=False)[0]
        np.testing.assert_array_equal(shared[run], np.stack([first, second]))
    assert not np.array_equal(shared[0], shared[1])  # the runs really differ
