"""benchbase: a plugin-based benchmark suite for GNNs under distribution shift.

**This module is the public API.** A plugin (bundled or third-party) imports what it uses from
``benchbase`` itself, and its tests from `benchbase.testing` (the conformance kit); every other
``benchbase.*`` module is the harness's own and may change without notice. The bundled plugins
keep to this too: an import contract (``lint-imports``, ``[tool.importlinter]`` in pyproject.toml,
run in CI) forbids them any other harness module.

`CONTRACT_VERSION` ("MAJOR.MINOR") is the version of this contract: the names below and the
documented behaviour of the interfaces (the methods the harness calls and what it passes them).

- MINOR goes up when something is added: a name, an optional method with a default, a field with
  a default. A plugin written for 1.0 works with every 1.x.
- MAJOR goes up when something is removed or changed incompatibly: a name removed or renamed, an
  abstract method added, a signature or a documented meaning changed. Before removal a name is
  deprecated for at least one minor version: it still works, and using it warns
  (`DeprecationWarning`, saying what replaces it).
- Changes to modules other than this one and `benchbase.testing` change no version.

The names, by group:

*Contract*: `CONTRACT_VERSION`, `__version__` (the distribution's version).

*Registration*: `hookimpl`, the decorator of a plugin module's ``register_*`` hooks (see
`benchbase.contract.hookspecs` for what each hook receives; ``benchbase new-plugin`` writes them).

*Interfaces a plugin implements*: `Dataset`, `Encoder`, `PretextTask`, `Rebalancer`, `Protocol`,
`Metric`.

*Types they exchange*: `TaskInfo`, `FeatureSpec`, `GraphArrays`, `GraphBatch`, `Embeddings`,
`PretextContext`, `PretextOutput`, `Predictions`, `Column`, `Split`, `Kind`, `Level`.

*Capability and graph-property names* (`Dataset.provides`, what plugins ``require``):
`X_CATEGORICAL`, `EDGE_ATTR`, `POS`, `SMILES`, `SIZE`, `GROUP`, `NODE_CLASS_COUNTS`,
`OFFICIAL_SPLIT`, and `CAPABILITIES`, all of them.

*Parameters*: `Param` (a typed, documented parameter of a plugin), `spec_of`, `validate`,
`defaults_of`.

*Errors*: `PluginError` (anything a user can act on: one line, no traceback), `DataUnavailable`
(a dataset's files are missing: the grid skips it), `GridError` (a malformed grid value, raised by
`validate`), `TrainingDiverged`.

*Data cache*: `cache_dir`, `atomic_path`, `content_digest`, `file_sha256`.

*Tensors and batches*: `TensorGraphs` (arrays -> batches), `concat_ranges`, `center_per_graph`.

*Metric helpers*: `task_metrics` (a task's standard metrics on one slice), `get_metric` (a
registered metric by name).

*Adapter datasets* (one registered name serving many data sets, like ``csv``): `ADAPTER_PARAMS`
(the ``name``, ``kind``, ``unit``, ``metric`` parameters every adapter declares), `dataset_label`,
`check_adapter_name`, `check_task_declarations`, `declared_tasks`.

*Fine-tuning outside the runner* (research scripts: learning curves, controlled comparisons;
nothing is stored): `fine_tunings` (the runs of a grid, each set up as ``benchbase run`` sets it
up), `FineTuning`, `FineTuner` (`FineTuner.fit`'s ``on_epoch`` callback sees every epoch),
`EpochEnd`.
"""

from typing import TYPE_CHECKING, Any

from benchbase.contract.identity import pin_cpu_numerics

# Before any tensor operation of the process: the same spec gives the same bits on any x86-64 CPU.
pin_cpu_numerics()

from benchbase.contract.hookspecs import hookimpl  # noqa: E402
from benchbase.contract.moved import install as _install_moved_modules  # noqa: E402

_install_moved_modules()  # the module paths of 0.1 (`benchbase.grid`, ...) keep working, with a warning

__version__ = "0.1.0"
CONTRACT_VERSION = "1.0"

# The exports are loaded on first use (PEP 562), not here: `import benchbase` must stay light
# (about 0.2 s against 2.3 s once torch is in), because every harness module, the CLI, the plugin
# registry, executor workers and ``benchbase plugins`` import this package first, and most of them
# never touch a tensor. `from benchbase import Dataset` imports `benchbase.contract.api` at that moment.
# The map names the defining module of each export (and its name there where it differs); the
# ``TYPE_CHECKING`` block below repeats it for type checkers and editors, and
# tests/harness/test_public_api.py checks that the map, that block and `__all__` agree. Every module named
# here belongs to the computing layer or its infrastructure (`benchbase.contract.identity.HARNESS_COMPUTING`),
# so the harness fingerprint, which does not follow imports by computed names, misses nothing.
_EXPORTS: dict[str, tuple[str, str]] = {
    # interfaces
    "Dataset": ("benchbase.contract.api", "Dataset"),
    "Encoder": ("benchbase.contract.api", "Encoder"),
    "PretextTask": ("benchbase.contract.api", "PretextTask"),
    "Rebalancer": ("benchbase.contract.api", "Rebalancer"),
    "Protocol": ("benchbase.contract.api", "Protocol"),
    "Metric": ("benchbase.compute.metrics", "Metric"),
    # types
    "TaskInfo": ("benchbase.contract.types", "TaskInfo"),
    "FeatureSpec": ("benchbase.contract.types", "FeatureSpec"),
    "GraphArrays": ("benchbase.contract.types", "GraphArrays"),
    "GraphBatch": ("benchbase.contract.types", "GraphBatch"),
    "Embeddings": ("benchbase.contract.types", "Embeddings"),
    "PretextContext": ("benchbase.contract.types", "PretextContext"),
    "PretextOutput": ("benchbase.contract.types", "PretextOutput"),
    "Predictions": ("benchbase.contract.types", "Predictions"),
    "Column": ("benchbase.contract.types", "Column"),
    "Split": ("benchbase.contract.types", "Split"),
    "Kind": ("benchbase.contract.types", "Kind"),
    "Level": ("benchbase.contract.types", "Level"),
    # capability and graph-property names
    "X_CATEGORICAL": ("benchbase.contract.types", "X_CATEGORICAL"),
    "EDGE_ATTR": ("benchbase.contract.types", "EDGE_ATTR"),
    "POS": ("benchbase.contract.types", "POS"),
    "SMILES": ("benchbase.contract.types", "SMILES"),
    "SIZE": ("benchbase.contract.types", "SIZE"),
    "GROUP": ("benchbase.contract.types", "GROUP"),
    "NODE_CLASS_COUNTS": ("benchbase.contract.types", "NODE_CLASS_COUNTS"),
    "OFFICIAL_SPLIT": ("benchbase.contract.types", "OFFICIAL_SPLIT"),
    "CAPABILITIES": ("benchbase.contract.types", "CAPABILITIES"),
    # parameters
    "Param": ("benchbase.contract.params", "Param"),
    "spec_of": ("benchbase.contract.params", "spec_of"),
    "validate": ("benchbase.contract.params", "validate"),
    "defaults_of": ("benchbase.contract.params", "defaults_of"),
    # errors
    "PluginError": ("benchbase.contract.errors", "PluginError"),
    "DataUnavailable": ("benchbase.contract.errors", "DataUnavailable"),
    "GridError": ("benchbase.contract.errors", "GridError"),
    "TrainingDiverged": ("benchbase.contract.errors", "TrainingDiverged"),
    # data cache
    "cache_dir": ("benchbase.compute.cache", "cache_dir"),
    "atomic_path": ("benchbase.compute.cache", "atomic_path"),
    "content_digest": ("benchbase.compute.cache", "content_digest"),
    "file_sha256": ("benchbase.compute.cache", "file_sha256"),
    # tensors and batches
    "TensorGraphs": ("benchbase.compute.batching", "TensorGraphs"),
    "concat_ranges": ("benchbase.compute.batching", "concat_ranges"),
    "center_per_graph": ("benchbase.compute.batching", "center_per_graph"),
    # metric helpers
    "task_metrics": ("benchbase.compute.metrics", "task_metrics"),
    "get_metric": ("benchbase.compute.metrics", "get_metric"),
    # adapter datasets
    "ADAPTER_PARAMS": ("benchbase.compute.adapters", "ADAPTER_PARAMS"),
    "dataset_label": ("benchbase.compute.adapters", "dataset_label"),
    "check_adapter_name": ("benchbase.compute.adapters", "check_name"),
    "check_task_declarations": ("benchbase.compute.adapters", "check_declarations"),
    "declared_tasks": ("benchbase.compute.adapters", "declared_tasks"),
    # fine-tuning outside the runner
    "fine_tunings": ("benchbase.running.fine_tunings", "fine_tunings"),
    "FineTuning": ("benchbase.compute.run", "FineTuning"),
    "FineTuner": ("benchbase.compute.finetuning", "FineTuner"),
    "EpochEnd": ("benchbase.compute.finetuning", "EpochEnd"),
}

#: Deprecated names: name -> (what replaces it, the contract version that removes it). Such a name
#: keeps working and warns on use (see the bump rules above). None at present.
_DEPRECATED: dict[str, tuple[str, str]] = {}

if TYPE_CHECKING:  # what `_EXPORTS` loads, spelled out for type checkers and editors
    from benchbase.compute.adapters import ADAPTER_PARAMS, dataset_label, declared_tasks
    from benchbase.compute.adapters import check_declarations as check_task_declarations
    from benchbase.compute.adapters import check_name as check_adapter_name
    from benchbase.compute.batching import TensorGraphs, center_per_graph, concat_ranges
    from benchbase.compute.cache import atomic_path, cache_dir, content_digest, file_sha256
    from benchbase.compute.finetuning import EpochEnd, FineTuner
    from benchbase.compute.metrics import Metric, get_metric, task_metrics
    from benchbase.compute.run import FineTuning
    from benchbase.contract.api import Dataset, Encoder, PretextTask, Protocol, Rebalancer
    from benchbase.contract.errors import DataUnavailable, GridError, PluginError, TrainingDiverged
    from benchbase.contract.params import Param, defaults_of, spec_of, validate
    from benchbase.contract.types import (
        CAPABILITIES,
        EDGE_ATTR,
        GROUP,
        NODE_CLASS_COUNTS,
        OFFICIAL_SPLIT,
        POS,
        SIZE,
        SMILES,
        X_CATEGORICAL,
        Column,
        Embeddings,
        FeatureSpec,
        GraphArrays,
        GraphBatch,
        Kind,
        Level,
        Predictions,
        PretextContext,
        PretextOutput,
        Split,
        TaskInfo,
    )
    from benchbase.running.fine_tunings import fine_tunings

__all__ = [
    # contract
    "CONTRACT_VERSION",
    "__version__",
    # registration
    "hookimpl",
    # interfaces
    "Dataset",
    "Encoder",
    "PretextTask",
    "Rebalancer",
    "Protocol",
    "Metric",
    # types
    "TaskInfo",
    "FeatureSpec",
    "GraphArrays",
    "GraphBatch",
    "Embeddings",
    "PretextContext",
    "PretextOutput",
    "Predictions",
    "Column",
    "Split",
    "Kind",
    "Level",
    # capability and graph-property names
    "X_CATEGORICAL",
    "EDGE_ATTR",
    "POS",
    "SMILES",
    "SIZE",
    "GROUP",
    "NODE_CLASS_COUNTS",
    "OFFICIAL_SPLIT",
    "CAPABILITIES",
    # parameters
    "Param",
    "spec_of",
    "validate",
    "defaults_of",
    # errors
    "PluginError",
    "DataUnavailable",
    "GridError",
    "TrainingDiverged",
    # data cache
    "cache_dir",
    "atomic_path",
    "content_digest",
    "file_sha256",
    # tensors and batches
    "TensorGraphs",
    "concat_ranges",
    "center_per_graph",
    # metric helpers
    "task_metrics",
    "get_metric",
    # adapter datasets
    "ADAPTER_PARAMS",
    "dataset_label",
    "check_adapter_name",
    "check_task_declarations",
    "declared_tasks",
    # fine-tuning outside the runner
    "fine_tunings",
    "FineTuning",
    "FineTuner",
    "EpochEnd",
]


def __getattr__(name: str) -> Any:
    """Load an export on first use (see `_EXPORTS`) and keep it as an attribute of the package."""
    if name in _DEPRECATED:
        import warnings

        replacement, removal = _DEPRECATED[name]
        warnings.warn(
            f"benchbase.{name} is deprecated and goes in contract {removal}: use {replacement}",
            DeprecationWarning,
            stacklevel=2,
        )
    if name not in _EXPORTS:
        raise AttributeError(f"module 'benchbase' has no attribute {name!r}")
    import importlib

    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    if name not in _DEPRECATED:  # a deprecated name must warn on every use, so it is never cached
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
