"""Kob-Andersen 80:20 Lennard-Jones mixture on OpenMM: equilibrium configurations and
iso-configurational ensembles written in the BOTAN file format.

Model (Kob and Andersen, Phys. Rev. E 51, 4626, 1995): epsilon AA/AB/BB = 1.0/1.5/0.5, sigma
AA/AB/BB = 1.0/0.8/0.88, each pair truncated at 2.5 sigma_ab and shifted to zero there, number
density 1.2, unit masses. Iso-configurational ensembles (Widmer-Cooper, Harrowell and Fynewever,
PRL 93, 135701, 2004): R runs from one configuration with fresh Maxwell-Boltzmann velocities.

Units. Reduced Lennard-Jones units are mapped onto OpenMM's units one to one: length sigma_AA = 1 nm,
energy epsilon_AA = 1 kJ/mol, mass 1 amu. Then the LJ time unit tau = sqrt(m sigma^2 / epsilon) is
exactly 1 ps (1 kJ/mol = 1 amu nm^2 / ps^2), and a reduced temperature T* is T* / k_B kelvin with
k_B = 0.0083144626 kJ/mol/K (T* = 0.44 -> 52.92 K). Times in files and meta.json are in tau.

Protocol per configuration: (1) the first configuration starts from a random lattice occupation,
is energy-minimised and melted at T = 2.0; every configuration is then equilibrated at T with a
Langevin thermostat (LangevinMiddleIntegrator, friction 1/tau) for `equilibration` tau, continuing
the previous configuration's trajectory; (2) R runs from it, each with fresh velocities at T, are
integrated in NVE (velocity Verlet, dt = 0.005 tau), positions saved unwrapped at the requested
times. Every segment creates its Context from saved float64 positions and velocities with seeds
derived from (seed, configuration, run): a run interrupted and restarted resumes after the last
finished configuration and produces the same files as an uninterrupted run, on one platform with
one thread count.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform as _platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from benchbase import PluginError, atomic_path

KB_KJ_PER_MOL_K = 0.0083144626  # Boltzmann constant in kJ/mol/K (CODATA 2018 via N_A)
EPSILON = np.array([[1.0, 1.5], [1.5, 0.5]])
SIGMA = np.array([[1.0, 0.8], [0.8, 0.88]])
CUT = 2.5  # in units of the pair's sigma
DENSITY = 1.2
FRACTION_A = 0.8


def kelvin(reduced_temperature: float) -> float:
    """Reduced LJ temperature -> OpenMM kelvin under the 1 kJ/mol = epsilon_AA mapping."""
    return reduced_temperature / KB_KJ_PER_MOL_K


def box_length(n_particles: int, density: float = DENSITY) -> float:
    return float((n_particles / density) ** (1.0 / 3.0))


def ka_pair_energy(r: np.ndarray, ti: np.ndarray, tj: np.ndarray) -> np.ndarray:
    """The truncated and shifted KA pair energy (numpy; used by descriptors and tests)."""
    eps, sig = EPSILON[ti, tj], SIGMA[ti, tj]
    sr6 = (sig / r) ** 6
    shift = CUT**-12 - CUT**-6
    return np.where(r < CUT * sig, 4.0 * eps * (sr6 * sr6 - sr6 - shift), 0.0)


def _require_openmm():
    try:
        import openmm
    except ImportError:  # pragma: no cover - depends on the environment
        raise PluginError(
            "the glass simulator needs OpenMM: pip install 'benchbase[glass]' (or pip install openmm)"
        ) from None
    return openmm


def ka_system(n_particles: int, types: np.ndarray, density: float = DENSITY):
    """An OpenMM System of the KA mixture: one CustomNonbondedForce with per-pair tabulated epsilon,
    sigma and cutoff; energy shifted to zero at each pair's own cutoff (a step function cuts pairs
    beyond 2.5 sigma_ab inside the global 2.5 sigma_AA cutoff)."""
    openmm = _require_openmm()
    length = box_length(n_particles, density)
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(openmm.Vec3(length, 0, 0), openmm.Vec3(0, length, 0), openmm.Vec3(0, 0, length))
    for _ in range(n_particles):
        system.addParticle(1.0)
    force = openmm.CustomNonbondedForce(
        "step(rc - r) * 4*eps*(sr6*sr6 - sr6 - shift);"
        "sr6 = (sig/r)^6; rc = cut*sig;"
        f"eps = {_pair_polynomial(EPSILON)}; sig = {_pair_polynomial(SIGMA)}; a = t1 + t2"
    )
    force.addGlobalParameter("cut", CUT)
    force.addGlobalParameter("shift", CUT**-12 - CUT**-6)
    force.addPerParticleParameter("t")
    for t in types:
        force.addParticle([float(t)])
    force.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffPeriodic)
    force.setCutoffDistance(CUT * float(SIGMA.max()))
    force.setUseLongRangeCorrection(False)
    system.addForce(force)
    return system


def _pair_polynomial(table: np.ndarray) -> str:
    """The symmetric 2x2 table as c0 + c1*a + c2*a^2 in a = t1 + t2 (exact at a = 0, 1, 2).

    Per-pair parameters are written as a polynomial of the two types rather than with
    Discrete2DFunction lookups because OpenMM's CPU platform evaluates it 2.6x faster (measured:
    6.6e5 vs 2.5e5 particle-steps/s, N = 1000, 2 threads)."""
    v0, v1, v2 = float(table[0, 0]), float(table[0, 1]), float(table[1, 1])
    c2 = (v2 - 2 * v1 + v0) / 2
    c1 = v1 - v0 - c2
    return f"({v0!r} + ({c1!r})*a + ({c2!r})*a*a)"


def _seed(*parts: int) -> int:
    """A positive 31-bit seed from integers (OpenMM treats seed 0 as 'pick a random one')."""
    digest = hashlib.sha256(",".join(map(str, parts)).encode()).digest()
    return 1 + int.from_bytes(digest[:4], "little") % (2**31 - 2)


@dataclass
class SimulationConfig:
    """Everything that determines the output; written to meta.json."""

    particles: int = 1000
    temperature: float = 0.6
    configurations: int = 4
    runs: int = 8
    times: list[float] = field(default_factory=lambda: [1.0, 10.0])
    seed: int = 0
    test_fraction: float = 0.25
    density: float = DENSITY
    timestep: float = 0.005
    equilibration: float = 100.0
    initial_equilibration: float = 100.0
    melt: float = 10.0
    friction: float = 1.0
    threads: int = 2
    platform: str = "CPU"

    def validate(self) -> None:
        if self.particles < 10:
            raise PluginError("--particles must be at least 10")
        if self.temperature <= 0:
            raise PluginError("--temperature must be positive (reduced LJ units)")
        if self.configurations < 1 or self.runs < 1:
            raise PluginError("--configurations and --runs must be at least 1")
        times = list(self.times)
        if not times or any(t <= 0 for t in times) or sorted(times) != times or len(set(times)) != len(times):
            raise PluginError(f"--times must be increasing positive times in tau; got {times}")
        if not 0 <= self.test_fraction < 1:
            raise PluginError("--test-fraction must lie in [0, 1)")
        if box_length(self.particles, self.density) < 2 * CUT:
            raise PluginError(f"{self.particles} particles at density {self.density} give a box below 5 sigma")

    def steps(self, t: float) -> int:
        return int(round(t / self.timestep))

    def n_test(self) -> int:
        if self.configurations == 1 or self.test_fraction == 0:
            return 0
        return max(1, int(round(self.test_fraction * self.configurations)))


def temperature_dir(out: Path, temperature: float) -> Path:
    return Path(out) / f"T{temperature:g}"


def output_path(out: Path, cfg: SimulationConfig, config_id: int, time_index: int) -> Path:
    split = "test" if config_id >= cfg.configurations - cfg.n_test() else "train"
    name = f"isoconfig_N{cfg.particles}T{cfg.temperature:g}_{config_id}_tc{time_index:02d}.npz"
    return temperature_dir(out, cfg.temperature) / split / name


class KASimulator:
    """Runs the protocol of the module docstring; `run` skips configurations already written."""

    def __init__(self, cfg: SimulationConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.openmm = _require_openmm()
        self.length = box_length(cfg.particles, cfg.density)
        rng = np.random.default_rng(_seed(cfg.seed, cfg.particles, 0))
        n_a = int(round(FRACTION_A * cfg.particles))
        self.types = np.zeros(cfg.particles, dtype=np.int8)
        self.types[rng.permutation(cfg.particles)[: cfg.particles - n_a]] = 1
        self.system = ka_system(cfg.particles, self.types, cfg.density)
        self._platform = self.openmm.Platform.getPlatformByName(cfg.platform)
        self.steps_done = 0  # particle-steps are steps_done * particles

    # -- OpenMM plumbing ------------------------------------------------------------------
    def _context(self, integrator, positions: np.ndarray, velocities: np.ndarray | None = None):
        props = {"Threads": str(self.cfg.threads)} if self.cfg.platform == "CPU" else {}
        context = self.openmm.Context(self.system, integrator, self._platform, props)
        context.setPositions(positions)
        if velocities is not None:
            context.setVelocities(velocities)
        return context

    def _state(self, context, velocities: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        state = context.getState(getPositions=True, getVelocities=velocities)
        pos = state.getPositions(asNumpy=True).value_in_unit(self.openmm.unit.nanometer)
        if not velocities:
            return np.asarray(pos, dtype=np.float64), None
        vel = state.getVelocities(asNumpy=True).value_in_unit(self.openmm.unit.nanometer / self.openmm.unit.picosecond)
        return np.asarray(pos, dtype=np.float64), np.asarray(vel, dtype=np.float64)

    def _langevin(self, temperature: float, seed: int):
        mm = self.openmm
        integrator = mm.LangevinMiddleIntegrator(kelvin(temperature), self.cfg.friction, self.cfg.timestep)
        integrator.setRandomNumberSeed(seed)
        return integrator

    def _advance(self, integrator_context, steps: int, chunk: int = 2000) -> None:
        integrator, _ = integrator_context
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            integrator.step(n)
            done += n
        self.steps_done += steps

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Random occupation of a simple-cubic lattice, energy minimised, melted at T = 2.0."""
        cfg = self.cfg
        rng = np.random.default_rng(_seed(cfg.seed, cfg.particles, 1))
        per_side = math.ceil(cfg.particles ** (1 / 3))
        grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
        sites = grid[np.sort(rng.permutation(len(grid))[: cfg.particles])]
        positions = (sites + 0.5) * (self.length / per_side)
        integrator = self._langevin(2.0, _seed(cfg.seed, 2))
        context = self._context(integrator, positions)
        self.openmm.LocalEnergyMinimizer.minimize(context, 1.0, 1000)
        context.setVelocitiesToTemperature(kelvin(2.0), _seed(cfg.seed, 3))
        self._advance((integrator, context), cfg.steps(cfg.melt))
        return self._state(context)

    def equilibrate(self, state: tuple[np.ndarray, np.ndarray], config_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Langevin NVT at T from `state`; the first configuration also gets `initial_equilibration`
        (it starts from the T = 2 melt)."""
        cfg = self.cfg
        integrator = self._langevin(cfg.temperature, _seed(cfg.seed, 4, config_id))
        context = self._context(integrator, *state)
        extra = cfg.initial_equilibration if config_id == 0 else 0.0
        self._advance((integrator, context), cfg.steps(cfg.equilibration + extra))
        return self._state(context)

    def isoconfigurational(self, positions: np.ndarray, config_id: int, progress: Callable[[int], None] | None = None):
        """(runs, times, N, 3) unwrapped positions from R NVE runs with fresh velocities."""
        cfg, mm = self.cfg, self.openmm
        out = np.empty((cfg.runs, len(cfg.times), cfg.particles, 3))
        marks = [cfg.steps(t) for t in cfg.times]
        # One Context for all R runs: creating one (force kernels, neighbour list) costs about as
        # much as a short run. Each run resets positions, time and velocities, so its trajectory
        # is the same as from a fresh Context (tested).
        integrator = mm.VerletIntegrator(cfg.timestep)
        context = self._context(integrator, positions)
        for run in range(cfg.runs):
            if run:
                context.setTime(0.0)
                context.setPositions(positions)
            context.setVelocitiesToTemperature(kelvin(cfg.temperature), _seed(cfg.seed, 5, config_id, run))
            previous = 0
            for k, mark in enumerate(marks):
                self._advance((integrator, context), mark - previous)
                previous = mark
                out[run, k] = self._state(context, velocities=False)[0]
            if progress is not None:
                progress(1)
        return out

    def potential_energy_per_particle(self, positions: np.ndarray) -> float:
        context = self._context(self.openmm.VerletIntegrator(self.cfg.timestep), positions)
        energy = context.getState(getEnergy=True).getPotentialEnergy()
        return energy.value_in_unit(self.openmm.unit.kilojoule_per_mole) / self.cfg.particles

    # -- files -------------------------------------------------------------------------------
    def _chain_path(self, out: Path, config_id: int) -> Path:
        return temperature_dir(out, self.cfg.temperature) / ".chain" / f"state_{config_id}.npz"

    def finished(self, out: Path, config_id: int) -> bool:
        return all(output_path(out, self.cfg, config_id, k).exists() for k in range(len(self.cfg.times)))

    def run(self, out: Path | str, progress: Callable[[int], None] | None = None) -> list[Path]:
        """Simulate every configuration not already on disk; returns the files written."""
        out = Path(out)
        self._check_meta(out)
        written: list[Path] = []
        state = None
        for config_id in range(self.cfg.configurations):
            chain = self._chain_path(out, config_id)
            if self.finished(out, config_id) and chain.exists():
                if progress is not None:
                    progress(self.cfg.runs)
                state = None  # the next configuration resumes from this one's saved chain state
                continue
            if chain.exists():
                with np.load(chain) as saved:
                    state = (saved["positions"], saved["velocities"])
            else:
                if state is None:
                    state = self._resume_state(out, config_id)
                state = self.equilibrate(state, config_id)
                with atomic_path(chain) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, positions=state[0], velocities=state[1])
            trajectories = self.isoconfigurational(state[0], config_id, progress)
            for k in range(len(self.cfg.times)):
                path = output_path(out, self.cfg, config_id, k)
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(
                            fh,
                            types=self.types,
                            initial_positions=state[0],
                            positions=trajectories[:, k],
                            box=np.full(3, self.length),
                            time=np.float64(self.cfg.times[k]),
                            temperature=np.float64(self.cfg.temperature),
                        )
                written.append(path)
        return written

    def _resume_state(self, out: Path, config_id: int) -> tuple[np.ndarray, np.ndarray]:
        """The equilibrated state the chain continues from: the previous configuration's, or a fresh melt."""
        if config_id == 0:
            return self.initial_state()
        previous = self._chain_path(out, config_id - 1)
        if not previous.exists():
            raise PluginError(f"cannot resume: {previous} is missing; delete {out} and start again")
        with np.load(previous) as saved:
            return saved["positions"], saved["velocities"]

    def _check_meta(self, out: Path) -> None:
        meta_path = temperature_dir(out, self.cfg.temperature) / "meta.json"
        meta = self.meta()
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            if old.get("config") != meta["config"]:
                raise PluginError(
                    f"{meta_path} was written with different settings ({old.get('config')}); "
                    "use another --out or delete it"
                )
            return
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def meta(self) -> dict:
        import openmm

        cfg = self.cfg
        return {
            "config": asdict(cfg),
            "model": "Kob-Andersen 80:20 LJ mixture, truncated and shifted at 2.5 sigma_ab",
            "epsilon": EPSILON.tolist(),
            "sigma": SIGMA.tolist(),
            "temperature": cfg.temperature,
            "density": cfg.density,
            "N": cfg.particles,
            "box": self.length,
            "time_step": cfg.timestep,
            "times": list(cfg.times),
            "seed": cfg.seed,
            "thermostat": f"equilibration: LangevinMiddleIntegrator friction {cfg.friction}/tau; runs: NVE Verlet",
            "units": "sigma_AA = 1 nm, epsilon_AA = 1 kJ/mol, m = 1 amu, tau = 1 ps, T[K] = T*/0.0083144626",
            "versions": {
                "openmm": openmm.__version__,
                "numpy": np.__version__,
                "python": _platform.python_version(),
                "platform": cfg.platform,
                "threads": cfg.threads,
            },
        }


def simulate(cfg: SimulationConfig, out: Path | str, progress_bar: bool = True) -> dict:
    """Run the simulator with an optional progress bar (runs done / total); returns a summary."""
    sim = KASimulator(cfg)
    total = cfg.configurations * cfg.runs
    started = time.perf_counter()
    if progress_bar:
        import typer

        with typer.progressbar(length=total, label=f"KA T={cfg.temperature:g} N={cfg.particles}") as bar:
            files = sim.run(out, progress=bar.update)
    else:
        files = sim.run(out)
    seconds = time.perf_counter() - started
    return {
        "files_written": len(files),
        "seconds": seconds,
        "particle_steps": sim.steps_done * cfg.particles,
        "particle_steps_per_second": sim.steps_done * cfg.particles / seconds if seconds > 0 else float("nan"),
    }


def parse_times(text: str | Sequence[float]) -> list[float]:
    if not isinstance(text, str):
        return [float(t) for t in text]
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise PluginError(f"--times must be comma-separated numbers, got {text!r}") from None
