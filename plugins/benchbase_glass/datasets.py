"""Glass datasets: one graph per (configuration, time index).

Graph layout (what encoders of this plugin expect):
- ``x`` (N, 1) int64, the particle type (0 = A, 1 = B): ``FeatureSpec(node_vocab=(2,))``;
- ``pos`` the initial positions; ``graph_attr["box"]`` (G, 3) the box lengths;
- edges: every ordered pair with minimum-image initial distance < 2.0 (the BOTAN cutoff), found with
  a periodic k-d tree; ``edge_attr`` (E, 3) the minimum-image relative position r_j - r_i of the
  pair (computed here, once, so encoders need no periodic arithmetic): ``edge_dim = 3``;
- targets ``propensity`` (node) and ``bond_motion`` (edge), see `benchbase_glass.targets`;
  ``target_masks``: type-A particles for propensity, A-A pairs closer than 1.35 for bond motion
  (the BOTAN evaluation sets; training uses the same rows).

Training batches get a random symmetry of the cube per configuration (`Dataset.augment`, see
`benchbase_glass.symmetry`; parameter ``augment``, on by default, as in BOTAN); evaluation batches
never do (the harness does not augment them).

Graph properties for protocols: ``official_split`` ("train"/"test", from the directory),
``temperature``, ``time_index``, ``config`` (the configuration's id within its temperature),
``node_class_counts`` (A, B).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchbase import (
    Dataset,
    DataUnavailable,
    FeatureSpec,
    GraphArrays,
    GraphBatch,
    Param,
    PluginError,
    TaskInfo,
    cache_dir,
)
from benchbase_glass import formats
from benchbase_glass.symmetry import augment_batch
from benchbase_glass.targets import bond_motion, minimum_image, neighbour_pairs, propensity

GRAPH_CUTOFF = 2.0
EVAL_BOND_CUTOFF = 1.35
NODE_TASK = TaskInfo(
    name="propensity",
    level="node",
    unit="sigma",
    metric="pearson_per_graph",
    higher_is_better=True,
    description="mean over iso-configurational runs of |r_i(t) - r_i(0)|; evaluated on type-A particles",
)
EDGE_TASK = TaskInfo(
    name="bond_motion",
    level="edge",
    unit="sigma",
    metric="pearson_per_graph",
    higher_is_better=True,
    description="mean over runs of |r_ij(t)| - |r_ij(0)|; evaluated on A-A pairs with |r_ij(0)| < 1.35",
)
FEATURES = FeatureSpec(node_vocab=(2,), edge_dim=3, has_pos=True)
PROVIDES = frozenset({"pos", "box", "glass", "edge_attr", "official_split", "temperature", "time_index"})


def botan_small_default() -> Path:
    """`../shared/data/botan_small/small_data` from the working directory (the project root)."""
    return Path("..") / "shared" / "data" / "botan_small" / "small_data"


class GlassDataset(Dataset):
    """Common assembly of samples into `GraphArrays`; subclasses say where samples come from."""

    features = FEATURES
    provides = PROVIDES

    def __init__(self, augment: bool = True) -> None:
        self._arrays: GraphArrays | None = None
        self._props: dict[str, np.ndarray] = {}
        self._ids: np.ndarray | None = None
        self.symmetry_augment = bool(augment)

    def augment(self, batch: GraphBatch, generator: torch.Generator) -> GraphBatch:
        """One random cube symmetry per served configuration (training batches only)."""
        return augment_batch(batch, generator) if self.symmetry_augment else batch

    def samples(self) -> list[formats.Sample]:  # pragma: no cover - interface
        raise NotImplementedError

    def missing_reason(self) -> str | None:
        """Why the data cannot be loaded here (glass protocols skip the dataset with it), or None."""
        root = getattr(self, "root", None)
        if root is not None and not Path(root).is_dir():
            return f"{self.name}: data directory {root} does not exist"
        return None

    def check_available(self) -> None:
        reason = self.missing_reason()
        if reason:
            raise DataUnavailable(reason)

    def arrays(self) -> GraphArrays:
        if self._arrays is None:
            self._arrays = self._assemble(self.samples())
        return self._arrays

    def ids(self) -> np.ndarray:
        self.arrays()
        return self._ids

    def graph_property(self, key: str) -> np.ndarray | None:
        self.arrays()
        return self._props.get(key)

    def node_class_names(self) -> list[str]:
        return ["A", "B"]

    def known_temperatures(self) -> list[float]:
        """Temperatures present, without loading the data when the layout tells them (grid
        expansion asks protocols about datasets before anything is loaded or simulated)."""
        if self._arrays is None:
            found = self._scan_temperatures()
            if found is not None:
                wanted = self.selection[0]
                if wanted is not None:
                    found = [t for t in found if any(np.isclose(t, float(w)) for w in np.atleast_1d(wanted))]
                return sorted(found)
        return sorted(set(self.graph_property("temperature").tolist()))

    def _scan_temperatures(self) -> list[float] | None:
        root = getattr(self, "root", None)
        if root is None or not Path(root).is_dir():
            return None
        temps = [formats.temperature_of_dir(p.name) for p in Path(root).iterdir() if p.is_dir()]
        return [t for t in temps if t is not None] or None

    def labels(self, task: str) -> np.ndarray:
        raise PluginError(f"{self.name!r} has node and edge tasks only; there are no graph-level labels of {task!r}")

    def _assemble(self, samples: list[formats.Sample]) -> GraphArrays:
        has_edges = all(s.positions is not None for s in samples)
        edges_of: dict[tuple, np.ndarray] = {}
        xs, poss, eis, eattrs, props, bonds, nmasks, emasks = [], [], [], [], [], [], [], []
        node_ptr, edge_ptr = [0], [0]
        for s in samples:
            key = (s.temperature, s.split, s.config)
            if key not in edges_of:  # edges depend only on the initial configuration
                edges_of[key] = neighbour_pairs(s.initial_positions, s.box, GRAPH_CUTOFF)
            ei = edges_of[key]
            src, dst = ei
            rel = minimum_image(s.initial_positions[dst] - s.initial_positions[src], s.box)
            xs.append(s.types[:, None])
            poss.append(s.initial_positions.astype(np.float32))
            eis.append(ei)
            eattrs.append(rel.astype(np.float32))
            if s.positions is not None:
                props.append(propensity(s.initial_positions, s.positions, s.box))
                bonds.append(bond_motion(s.initial_positions, s.positions, s.box, edge_index=ei)[1])
            else:
                props.append(s.propensity)
            is_a = s.types == 0
            nmasks.append(is_a)
            emasks.append(is_a[src] & is_a[dst] & (np.linalg.norm(rel, axis=-1) < EVAL_BOND_CUTOFF))
            node_ptr.append(node_ptr[-1] + len(s.types))
            edge_ptr.append(edge_ptr[-1] + ei.shape[1])
        targets = {"propensity": np.concatenate(props).astype(np.float32)}
        masks = {"propensity": np.concatenate(nmasks)}
        if has_edges:
            targets["bond_motion"] = np.concatenate(bonds).astype(np.float32)
            masks["bond_motion"] = np.concatenate(emasks)
        self._props = {
            "official_split": np.array([s.split for s in samples]),
            "temperature": np.array([s.temperature for s in samples], dtype=np.float64),
            "time_index": np.array([s.time_index for s in samples], dtype=np.int64),
            "config": np.array([s.config for s in samples]),
            "node_class_counts": np.array([np.bincount(s.types, minlength=2) for s in samples], dtype=np.int64),
        }
        self._ids = np.array([f"T{s.temperature:g}/{s.split}/{s.config}/tc{s.time_index:02d}" for s in samples])
        return GraphArrays(
            node_ptr=np.array(node_ptr, dtype=np.int64),
            edge_ptr=np.array(edge_ptr, dtype=np.int64),
            edge_index=np.concatenate(eis, axis=1),
            x=np.concatenate(xs).astype(np.int64),
            edge_attr=np.concatenate(eattrs),
            pos=np.concatenate(poss),
            targets=targets,
            target_masks=masks,
            graph_attr={"box": np.stack([s.box for s in samples]).astype(np.float32)},
        )

    def describe(self) -> dict[str, Any]:
        """Cheap metadata (no loading, no simulation): where the data is and whether it is there."""
        root = self.data_root() if hasattr(self, "data_root") else getattr(self, "root", None)
        info: dict[str, Any] = {
            "tasks": [t.name for t in self.tasks],
            "root": str(root),
            "available": bool(root is not None and Path(root).is_dir()),
        }
        if self._arrays is not None:
            a = self._arrays
            info.update(size=a.num_graphs, nodes=int(a.node_ptr[-1]), edges=int(a.edge_ptr[-1]))
        return info


def _select(samples: list[formats.Sample], temperatures, time_indices, max_configs) -> list[formats.Sample]:
    if temperatures is not None:
        temps = [float(t) for t in np.atleast_1d(temperatures)]
        samples = [s for s in samples if any(np.isclose(s.temperature, t) for t in temps)]
    if time_indices is not None:
        wanted = {int(t) for t in np.atleast_1d(time_indices)}
        samples = [s for s in samples if s.time_index in wanted]
    if max_configs is not None:
        kept: dict[tuple, list] = {}
        for s in samples:
            group = kept.setdefault((s.temperature, s.split), [])
            if s.config not in group and len(group) < int(max_configs):
                group.append(s.config)
        samples = [s for s in samples if s.config in kept[(s.temperature, s.split)]]
    if not samples:
        raise PluginError("no glass samples left after selecting temperatures / time indices")
    return samples


class BotanDataset(GlassDataset):
    """Files in the BOTAN layout (see `benchbase_glass.formats`)."""

    name = "glass/botan"
    tasks = [NODE_TASK, EDGE_TASK]

    def __init__(
        self, root: str | None = None, temperatures=None, time_indices=None, max_configs=None, augment: bool = True
    ) -> None:
        super().__init__(augment)
        self.root = Path(root) if root is not None else botan_small_default()
        self.selection = (temperatures, time_indices, max_configs)

    def samples(self) -> list[formats.Sample]:
        reason = self.missing_reason()
        if reason:
            raise PluginError(reason)
        files = formats.find_files(self.root, "BOTAN")
        return _select([formats.read_botan_file(p) for p in files], *self.selection)

    def missing_reason(self) -> str | None:
        if self.root.is_dir():
            return None
        return (
            f"glass/botan: data directory {self.root} does not exist (the default is the botan_small sample at "
            "../shared/data/botan_small/small_data relative to the working directory); "
            "pass root = '<dir with T<temp>/train|test/*.npz>'"
        )


class GlassBenchDataset(GlassDataset):
    """Propensities precomputed in the GlassBench layout (node task only)."""

    name = "glass/glassbench"
    tasks = [NODE_TASK]

    def __init__(
        self, root: str | None = None, temperatures=None, time_indices=None, max_configs=None, augment: bool = True
    ) -> None:
        super().__init__(augment)
        if root is None:
            raise PluginError(
                "glass/glassbench needs root = '<dir>': download KA_models/ from Zenodo 10.5281/zenodo.10118191"
            )
        self.root = Path(root)
        self.selection = (temperatures, time_indices, max_configs)

    def samples(self) -> list[formats.Sample]:
        files = formats.find_files(self.root, "GlassBench")
        samples = [s for p in files for s in formats.read_glassbench_file(p)]
        return _select(samples, *self.selection)


# --------------------------------------------------------------------------------------------
# The embedded default, generated by the simulator on first use.


def ka_small_configs() -> list:
    """The parameters of glass/ka-small: N = 500 KA particles at T = 0.6 and 0.8, density 1.2.

    Three log-spaced times per temperature, chosen per temperature (tau_alpha ~ 4 at T = 0.8, where the
    last time 4.0 is near it; ~ 30 at T = 0.6, where we stop at 8 and spend the steps on 16 runs
    instead: with 8 runs to t = 15 the iso-configurational noise hid the structure, descriptor r =
    0.06). Time index k therefore means "the k-th time of that temperature". Budget: about 2.1e8
    particle-steps, sized to finish within 10 minutes on 2 CPU cores.
    """
    from benchbase_glass.simulate import SimulationConfig

    return [
        SimulationConfig(
            particles=500,
            temperature=0.8,
            configurations=10,
            runs=12,
            times=[0.5, 1.5, 4.0],
            seed=2024,
            test_fraction=0.3,
            equilibration=20.0,
            initial_equilibration=20.0,
            threads=2,
        ),
        SimulationConfig(
            particles=500,
            temperature=0.6,
            configurations=8,
            runs=16,
            times=[1.0, 3.0, 8.0],
            seed=2025,
            test_fraction=0.25,
            equilibration=40.0,
            initial_equilibration=40.0,
            threads=2,
        ),
    ]


KA_SMALL_VERSION = "v2"


def generate_ka_small(root: Path, progress: bool = True) -> dict[float, dict]:
    """Simulate every missing part of glass/ka-small under `root` (resumable; file-locked so that
    parallel workers wait for one generator instead of racing)."""
    from benchbase_glass.simulate import simulate

    root.mkdir(parents=True, exist_ok=True)
    summaries = {}
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cfg in ka_small_configs():
            summaries[cfg.temperature] = simulate(cfg, root, progress_bar=progress)
        (root / ".complete").write_text("ok\n")
    return summaries


class KASmallDataset(GlassDataset):
    """glass/ka-small: generated into the cache dir by `benchbase_glass.simulate` on first use."""

    name = "glass/ka-small"
    tasks = [NODE_TASK, EDGE_TASK]

    def __init__(
        self, root: str | None = None, temperatures=None, time_indices=None, max_configs=None, augment: bool = True
    ) -> None:
        super().__init__(augment)
        self.root = Path(root) if root is not None else None
        self.selection = (temperatures, time_indices, max_configs)

    def _scan_temperatures(self) -> list[float] | None:
        return [cfg.temperature for cfg in ka_small_configs()] if self.root is None else super()._scan_temperatures()

    def data_root(self) -> Path:
        return self.root if self.root is not None else cache_dir("glass", f"ka-small-{KA_SMALL_VERSION}")

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["available"] = (self.data_root() / ".complete").exists()
        info["generate"] = "simulated on first use (about 7 minutes on 2 CPU cores), or `benchbase datasets prepare`"
        return info

    def prepare(self, progress: bool = True) -> None:
        root = self.data_root()
        if not (root / ".complete").exists():
            generate_ka_small(root, progress=progress)
        self.arrays()

    def samples(self) -> list[formats.Sample]:
        root = self.data_root()
        if not (root / ".complete").exists():
            generate_ka_small(root, progress=os.isatty(2))
        files = formats.find_files(root, "BOTAN")
        return _select([formats.read_botan_file(p) for p in files], *self.selection)


def _factory(cls: type) -> Callable[..., Dataset]:
    def build(**params: Any) -> Dataset:
        return cls(**params)

    build.param_spec = {
        "root": Param(None, "str", "directory of the data files (see the dataset's description)"),
        "temperatures": Param(None, "list", "keep these temperatures only", items="number"),
        "time_indices": Param(None, "list", "keep these time indices only", items="int"),
        "max_configs": Param(None, "int", "configurations per temperature and split", min=1),
        "augment": Param(True, "bool", "a random symmetry of the cube per training configuration (as BOTAN)"),
    }
    build.__doc__ = cls.__doc__
    return build


DATASETS = [
    ("glass/botan", _factory(BotanDataset), "BOTAN-layout KA files (default: ../shared/data/botan_small)"),
    ("glass/glassbench", _factory(GlassBenchDataset), "GlassBench (Roadmap) KA propensities; root required"),
    ("glass/ka-small", _factory(KASmallDataset), "KA N=500 at T=0.6/0.8, simulated with OpenMM on first use"),
]
