"""The conformance kit: the contract checks every plugin should pass, for plugin authors.

One function per kind - `check_dataset`, `check_encoder`, `check_pretext`, `check_rebalancer`,
`check_protocol`, `check_metric`, `check_executor` - builds the plugin with its defaults on a small
synthetic dataset that provides what it requires (or on the dataset given), and checks the contract:
shapes, determinism for a seed, parameters that round-trip, unknown parameters rejected, objects
that pickle (executors ship them to workers), and one training step. A failure raises
`ConformanceError` naming the plugin and what is wrong (an exception the plugin raises during a
check too, named with the check). Every check of a plugin class takes ``params`` to build it with
other values than its defaults. `check_registered(kind, name, params=...)` finds the plugin in the
registry; `checkable(kind)` lists the registered names of a kind; `registered_by(module)`
says what a plugin module registers.

In a plugin's tests::

    from benchbase.testing import check_encoder
    def test_my_encoder_conforms():
        check_encoder(MyEncoder)

The synthetic dataset (`SyntheticGraphs`) provides the core capabilities (categorical node and edge
features, coordinates, graph properties, a regression and a classification task); a plugin whose
requirements go beyond them (SMILES, say) passes its own small dataset.
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import torch

from benchbase.compute.batching import TensorGraphs
from benchbase.compute.splits import check_split
from benchbase.contract.api import (
    EDGE_ATTR,
    GROUP,
    NODE_CLASS_COUNTS,
    OFFICIAL_SPLIT,
    POS,
    SIZE,
    X_CATEGORICAL,
    Dataset,
    Encoder,
    FeatureSpec,
    GraphArrays,
    PluginError,
    Predictions,
    PretextContext,
    PretextTask,
    Protocol,
    Rebalancer,
    TaskInfo,
)
from benchbase.contract.params import spec_of, validate


class ConformanceError(AssertionError):
    """A plugin breaks the contract: the message names it and says how."""


def _fail(what: str, message: str) -> None:
    raise ConformanceError(f"{what}: {message}")


_KIND_OF_CHECK = {"check_dataset": "dataset", "check_encoder": "encoder", "check_pretext": "pretext task",
                  "check_rebalancer": "rebalancer", "check_protocol": "protocol", "check_metric": "metric",
                  "check_executor": "executor"}  # fmt: skip


def _conformance(check: Callable[..., None]) -> Callable[..., None]:
    """Whatever a plugin raises during a check becomes a `ConformanceError` naming the plugin and the
    check, so that a plugin's test fails with what is wrong, not a bare exception from its insides."""

    @functools.wraps(check)
    def run(subject: Any, *args: Any, **kwargs: Any) -> None:
        try:
            check(subject, *args, **kwargs)
        except ConformanceError:
            raise
        except Exception as exc:
            name = getattr(subject, "name", "") or getattr(subject, "__name__", type(subject).__name__)
            raise ConformanceError(
                f"{_KIND_OF_CHECK[check.__name__]} {name!r}: {check.__name__} failed: {type(exc).__name__}: {exc}"
            ) from exc

    return run


class SyntheticGraphs(Dataset):
    """Random graphs with two categorical node columns, one categorical edge column, coordinates,
    every core graph property, a graph-level regression task and a classification task."""

    name = "benchbase/synthetic"
    tasks = [TaskInfo("y", unit="u"), TaskInfo("c", kind="classification", metric="rocauc", higher_is_better=True)]
    provides = frozenset({X_CATEGORICAL, EDGE_ATTR, POS, SIZE, GROUP, NODE_CLASS_COUNTS, OFFICIAL_SPLIT})
    features = FeatureSpec(node_vocab=(4, 3), edge_vocab=(3,), has_pos=True)

    def __init__(self, graphs: int = 48, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        sizes = rng.integers(3, 9, graphs)
        node_ptr = np.concatenate([[0], np.cumsum(sizes)])
        edges = [
            np.stack([np.r_[np.arange(n - 1), np.arange(1, n)], np.r_[np.arange(1, n), np.arange(n - 1)]])
            for n in sizes
        ]
        edge_ptr = np.concatenate([[0], np.cumsum([e.shape[1] for e in edges])])
        x = np.stack([rng.integers(0, 4, node_ptr[-1]), rng.integers(0, 3, node_ptr[-1])], axis=1)
        classes = np.add.reduceat(np.eye(4, dtype=np.int64)[x[:, 0]], node_ptr[:-1])
        y = classes[:, 1] + 0.5 * sizes + rng.normal(scale=0.1, size=graphs)
        self._arrays = GraphArrays(
            node_ptr,
            edge_ptr,
            np.concatenate(edges, axis=1),
            x,
            edge_attr=rng.integers(0, 3, (edge_ptr[-1], 1)),
            pos=rng.normal(size=(node_ptr[-1], 3)).astype(np.float32),
            targets={"y": y.astype(np.float32), "c": (y > np.median(y)).astype(np.float32)},
        )
        self._properties = {
            SIZE: sizes,
            GROUP: np.array([f"g{i % 7}" for i in range(graphs)]),
            NODE_CLASS_COUNTS: classes,
            OFFICIAL_SPLIT: np.array([(["train"] * 8 + ["valid", "test"])[i % 10] for i in range(graphs)]),
        }

    def arrays(self) -> GraphArrays:
        return self._arrays

    def ids(self) -> np.ndarray:
        return np.arange(self._arrays.num_graphs) + 100

    def graph_property(self, key: str) -> np.ndarray | None:
        return self._properties.get(key)

    def node_class_names(self) -> list[str]:
        return ["a", "b", "c", "d"]


class _MeanEncoder(Encoder):
    """A minimal encoder for checking pretext tasks: embeddings plus one neighbour average."""

    name = "benchbase/mean"

    def __init__(self, features: FeatureSpec, hidden: int = 8) -> None:
        super().__init__()
        self.columns = torch.nn.ModuleList(torch.nn.Embedding(v + 1, hidden) for v in features.node_vocab)
        self.mix = torch.nn.Linear(2 * hidden, hidden)
        self.out_dim = hidden

    def forward(self, batch):
        from torch_geometric.utils import scatter

        from benchbase.contract.api import Embeddings

        h = sum(table(batch.x[:, j]) for j, table in enumerate(self.columns))
        src, dst = batch.edge_index
        neighbours = scatter(h[src], dst, dim=0, dim_size=h.shape[0], reduce="mean")
        h = torch.relu(self.mix(torch.cat([h, neighbours], dim=-1)))
        return Embeddings(node=h, graph=scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce="mean"))


def _graphs(dataset: Dataset | None) -> tuple[Dataset, TensorGraphs]:
    dataset = dataset if dataset is not None else SyntheticGraphs()
    return dataset, TensorGraphs(dataset.arrays())


def _needs(what: str, requires: frozenset[str], dataset: Dataset) -> None:
    missing = set(requires) - set(dataset.provides)
    if missing:
        raise ConformanceError(
            f"{what} requires {sorted(missing)}, which the check dataset {dataset.name!r} does not provide: pass "
            "a small dataset that does (dataset=...)"
        )


def _unknown_parameter_rejected(what: str, build: Any) -> None:
    try:
        build(definitely_not_a_parameter=1)
    except (PluginError, TypeError):
        return
    _fail(what, "accepts an unknown parameter 'definitely_not_a_parameter' instead of rejecting it")


def _picklable(what: str, obj: Any) -> None:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception as exc:
        _fail(what, f"does not pickle ({type(exc).__name__}: {exc}); executors ship plugins to worker processes")


def _defaults_round_trip(what: str, cls: type) -> dict[str, Any]:
    spec = spec_of(cls)
    if spec is None:
        _fail(what, "declares no parameters (param_spec or defaults) and takes **kwargs: nothing can be checked")
    defaults = {k: p.default for k, p in spec.items()}
    if validate(spec, defaults, what) != validate(spec, {}, what):
        _fail(what, "its declared defaults do not validate to themselves")
    return defaults


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    return a is None and b is None


@_conformance
def check_dataset(dataset: Dataset) -> None:
    """Arrays consistent (pointers, indices in range, categorical values below their vocabulary,
    targets shaped by level), ids unique, declared graph properties present and of length G."""
    what = f"dataset {dataset.name!r}"
    a = dataset.arrays()
    g = a.num_graphs
    n, e = int(a.node_ptr[-1]), int(a.edge_ptr[-1])
    if a.node_ptr[0] != 0 or np.any(np.diff(a.node_ptr) < 0) or a.edge_ptr[0] != 0 or np.any(np.diff(a.edge_ptr) < 0):
        _fail(what, "node_ptr / edge_ptr must start at 0 and never decrease")
    if len(a.x) != n or a.edge_index.shape != (2, e):
        _fail(what, f"x has {len(a.x)} rows and edge_index {a.edge_index.shape} for {n} nodes and {e} edges")
    sizes = np.repeat(np.diff(a.node_ptr), np.diff(a.edge_ptr))
    if e and (a.edge_index.min() < 0 or np.any(a.edge_index >= sizes)):
        _fail(what, "edge_index must hold node indices local to each graph, in [0, nodes of the graph)")
    for j, vocab in enumerate(dataset.features.node_vocab):
        if n and (a.x[:, j].min() < 0 or a.x[:, j].max() >= vocab):
            _fail(what, f"x[:, {j}] leaves [0, {vocab}) (the value {vocab} is the mask token, never data)")
    rows = {"graph": g, "node": n, "edge": e}
    for task in dataset.tasks:
        if task.name not in a.targets or len(a.targets[task.name]) != rows[task.level]:
            _fail(what, f"task {task.name!r} ({task.level}) needs targets[{task.name!r}] of {rows[task.level]} rows")
    ids = np.asarray(dataset.ids())
    if len(ids) != g or len(np.unique(ids)) != g:
        _fail(what, "ids() must give one unique native id per graph")
    for key in (SIZE, GROUP, NODE_CLASS_COUNTS, OFFICIAL_SPLIT):
        if key in dataset.provides:
            value = dataset.graph_property(key)
            if value is None or len(value) != g:
                _fail(what, f"provides {key!r} but graph_property({key!r}) is not an array of length {g}")
    if dataset.features.has_pos != (a.pos is not None):
        _fail(what, "features.has_pos must say whether arrays().pos is given")


@_conformance
def check_encoder(cls: type[Encoder], dataset: Dataset | None = None, params: dict[str, Any] | None = None) -> None:
    """Shapes of the embeddings, determinism for a seed, defaults that round-trip, unknown parameters
    rejected, a mask token accepted, picklable, and one training step that changes the weights.
    `params` builds the encoder checked (default: its defaults)."""
    what = f"encoder {cls.name or cls.__name__!r}"
    dataset, graphs = _graphs(dataset)
    _needs(what, cls.requires, dataset)
    defaults = _defaults_round_trip(what, cls)
    _unknown_parameter_rejected(what, lambda **p: cls(dataset.features, **p))
    params = params or {}
    encoder = _seeded(lambda: cls(dataset.features, **params))
    encoder.prepare(dataset)
    twin = _seeded(lambda: cls(dataset.features, **{**defaults, **params}))
    twin.prepare(dataset)
    batch = graphs.batch(torch.arange(min(6, graphs.num_graphs)))
    encoder.eval()
    twin.eval()
    with torch.no_grad():
        emb, again, other = encoder(batch), encoder(batch), twin(batch)
    n, g, e = batch.x.shape[0], batch.num_graphs, batch.edge_index.shape[1]
    if tuple(emb.node.shape) != (n, encoder.out_dim) or tuple(emb.graph.shape) != (g, encoder.out_dim):
        _fail(what, f"embeddings must be node ({n}, out_dim={encoder.out_dim}) and graph ({g}, out_dim); got "
              f"{tuple(emb.node.shape)} and {tuple(emb.graph.shape)}")  # fmt: skip
    if emb.edge is not None and emb.edge.shape[0] != e:
        _fail(what, f"edge embeddings must have one row per edge ({e}); got {tuple(emb.edge.shape)}")
    if not (torch.isfinite(emb.node).all() and torch.isfinite(emb.graph).all()):
        _fail(what, "embeddings are not finite")
    if not (_same(emb.node, again.node) and _same(emb.graph, again.graph)):
        _fail(what, "is not deterministic: two forward passes in eval mode differ")
    if not _same(emb.graph, other.graph):
        _fail(what, "built with its declared defaults passed explicitly, it differs from the default build")
    if dataset.features.node_vocab and X_CATEGORICAL in cls.requires | dataset.provides:
        token = torch.tensor(dataset.features.mask_token(), dtype=batch.x.dtype)
        with torch.no_grad():
            encoder(batch.replace(x=token.expand_as(batch.x).clone()))
    _picklable(what, encoder)
    _train_step(what, encoder, lambda: encoder(batch).graph.square().mean())


def _seeded(build: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return build()


def _train_step(what: str, module: torch.nn.Module, loss_fn: Any, extra: list | None = None) -> None:
    module.train()
    params = [p for p in module.parameters() if p.requires_grad] + list(extra or [])
    if not params:
        return  # nothing to train (a fixed descriptor encoder, say)
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=0.1)
    loss = loss_fn()
    if not torch.isfinite(loss):
        _fail(what, f"a training step gives a non-finite loss {loss.item()}")
    optimizer.zero_grad()
    if not loss.requires_grad:
        _fail(what, "one training step changed no weight: no gradient reaches the parameters")
    loss.backward()
    optimizer.step()
    if all(torch.equal(b, p.detach()) for b, p in zip(before, params, strict=True)):
        _fail(what, "one training step changed no weight: no gradient reaches the parameters")


@_conformance
def check_pretext(
    cls: type[PretextTask],
    dataset: Dataset | None = None,
    encoder: Encoder | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """prepare on a pool, a head, a step with consistent logits / targets (or its own loss), class
    counts that match the logits, determinism for a generator seed, picklable, one training step.
    `params` builds the task checked (default: its defaults)."""
    what = f"pretext task {cls.name or cls.__name__!r}"
    dataset, graphs = _graphs(dataset)
    _needs(what, cls.requires, dataset)
    _defaults_round_trip(what, cls)
    _unknown_parameter_rejected(what, lambda **p: cls(**p))
    encoder = encoder if encoder is not None else _seeded(lambda: _MeanEncoder(dataset.features))
    pretext = cls(**(params or {}))
    pool = np.arange(graphs.num_graphs)
    pretext.prepare(dataset, pool)
    head = _seeded(lambda: pretext.build_head(encoder))
    batch = graphs.batch(torch.arange(min(8, graphs.num_graphs)))

    def step(seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)
        return pretext.step(encoder, head, batch, PretextContext(generator=generator))

    encoder.eval()
    head.eval()
    with torch.no_grad():
        first, second = step(0), step(0)
    if first.loss is None:
        if first.logits is None or first.targets is None or len(first.logits) != len(first.targets):
            _fail(what, "a step must return logits with one target per row, or its own loss")
        counts = pretext.class_counts()
        if cls.class_labelled and counts is not None and first.logits.shape[-1] != len(counts):
            _fail(what, f"logits have {first.logits.shape[-1]} classes but class_counts() has {len(counts)}")
        if not (_same(first.logits, second.logits) and _same(first.targets, second.targets)):
            _fail(what, "is not deterministic for a generator seed")
        if first.item_graph is not None and len(first.item_graph) != len(first.logits):
            _fail(what, "item_graph must give the graph of each row of logits")
    elif not _same(first.loss, second.loss):
        _fail(what, "is not deterministic for a generator seed")
    _check_evaluation_rounds(what, pretext, encoder, head, batch)
    _picklable(what, pretext)

    def loss() -> torch.Tensor:
        out = step(1)
        if out.loss is not None:
            return out.loss
        if out.multilabel:
            known = torch.isfinite(out.targets)
            return torch.nn.functional.binary_cross_entropy_with_logits(out.logits[known], out.targets[known])
        return torch.nn.functional.cross_entropy(out.logits, out.targets)

    head.train()
    _train_step(what, encoder, loss, extra=list(head.parameters()))


def _check_evaluation_rounds(what: str, pretext: PretextTask, encoder: Any, head: Any, batch: Any) -> None:
    """A task with `evaluation_rounds`: rounds that select every item once, the same for a generator
    seed, and a step per round that predicts exactly the items its round selects."""
    from benchbase.compute.pretext_scores import evaluation_contexts

    def contexts(seed: int) -> list[tuple[PretextContext, int | None]]:
        try:
            return evaluation_contexts(pretext, batch, PretextContext(generator=torch.Generator().manual_seed(seed)))
        except PluginError as exc:  # the harness's message names the task already
            raise ConformanceError(str(exc)) from None

    first, second = contexts(0), contexts(0)
    if first and first[0][1] is None:
        return  # no evaluation_rounds: one ordinary step, checked above
    same = len(first) == len(second) and all(
        _same(a.selection, b.selection) for (a, _), (b, _) in zip(first, second, strict=True)
    )
    if not same:
        _fail(what, "evaluation_rounds is not deterministic for a generator seed")
    with torch.no_grad():
        for ctx, selected in first:
            out = pretext.step(encoder, head, batch, ctx)
            if out.logits is None or len(out.logits) != selected:
                _fail(what, f"a step given a selection of {selected} items must predict exactly those items")


@_conformance
def check_rebalancer(cls: type[Rebalancer], params: dict[str, Any] | None = None) -> None:
    """A finite differentiable loss for multiclass and multilabel logits (multiclass only where it
    declares ``supports_multilabel = False``), selection weights of one per class (or None),
    determinism, defaults that round-trip, unknown parameters rejected. `params` builds it."""
    what = f"rebalancer {cls.name or cls.__name__!r}"
    _defaults_round_trip(what, cls)
    _unknown_parameter_rejected(what, lambda **p: cls(**p))
    params = params or {}
    rebalancer = cls(**params)
    counts = np.array([500.0, 60.0, 5.0, 0.0])
    rebalancer.fit(counts)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 4, generator=generator, requires_grad=True)
    targets = torch.randint(0, 3, (32,), generator=generator)
    loss = rebalancer.loss(logits, targets)
    if loss.dim() != 0 or not torch.isfinite(loss):
        _fail(what, f"the multiclass loss must be a finite scalar, got {loss}")
    loss.backward()
    if logits.grad is None or not torch.isfinite(logits.grad).all():
        _fail(what, "the multiclass loss gives no finite gradient")
    if not torch.equal(rebalancer.loss(logits.detach(), targets), loss.detach()):
        _fail(what, "the loss is not deterministic")
    weights = rebalancer.selection_weights()
    if weights is not None and (len(weights) != 4 or np.any(np.asarray(weights) < 0)):
        _fail(what, "selection_weights() must give one non-negative weight per class")
    if getattr(cls, "supports_multilabel", True):  # else the grid never gives it a multilabel loss
        multilabel = cls(**params)
        multilabel.fit(np.array([10.0, 3.0]), num_samples=40)
        labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 0.0]])
        value = multilabel.loss(torch.zeros(3, 2, requires_grad=True), labels, multilabel=True)
        if value.dim() != 0 or not torch.isfinite(value):
            _fail(what, f"the multilabel loss (NaN = missing) must be a finite scalar, got {value}")
    _picklable(what, rebalancer)


@_conformance
def check_protocol(cls: type[Protocol], dataset: Dataset | None = None, params: dict[str, Any] | None = None) -> None:
    """Splits that are valid and deterministic for a seed, a report with finite metrics on perfect
    predictions, and leaderboard columns whose slices it produces. `params` builds the protocol
    checked (default: its defaults); `dataset` is the data it splits (default: small synthetic graphs)."""
    from benchbase.compute.run import with_derived_slices

    what = f"protocol {cls.name or cls.__name__!r}"
    dataset, _ = _graphs(dataset)
    _defaults_round_trip(what, cls)
    _unknown_parameter_rejected(what, lambda **p: cls(**p))
    protocol = cls(**(params or {}))
    if protocol.incompatibility(dataset):
        _fail(what, f"finds the check dataset incompatible: {protocol.incompatibility(dataset)}; pass one it accepts")
    task = protocol.task_of(dataset)
    split = protocol.split(dataset, task, 0)
    try:
        check_split(split, dataset.arrays().num_graphs)
    except PluginError as exc:
        _fail(what, f"gives an invalid split: {exc}")
    again = protocol.split(dataset, task, 0)
    if split.keys() != again.keys() or any(not np.array_equal(split[k], again[k]) for k in split):
        _fail(what, "is not deterministic for a seed")
    labels = dataset.arrays().targets[task.name]
    if task.level != "graph":
        return  # node and edge tasks: a plugin checks its own report on its own data
    perfect = {k: Predictions(labels[v], labels[v] + 0.01, np.asarray(v)) for k, v in split.items() if k != "train"}
    predictions = with_derived_slices(protocol, dataset, split, perfect)
    report = protocol.report(task, predictions, dataset, split, protocol.pretrain_pool(split, "train"))
    if not report or not all(np.isfinite(v) for v in report.values()):
        _fail(what, f"report() on near-perfect predictions gives no or non-finite metrics: {report}")
    slices = set(predictions) | {"pretext"}
    for column in protocol.leaderboard_columns(task):
        if column.slice not in slices or (column.per and column.per not in slices):
            _fail(what, f"leaderboard column {column.name!r} reads a slice it does not predict")
    _picklable(what, protocol)


@_conformance
def check_metric(cls: type, params: dict[str, Any] | None = None) -> None:
    """A finite value, and resampled values equal to recomputing the metric on each resample.
    `params` builds the metric checked (a leaderboard column's parameters)."""
    from benchbase.compute.metrics import expand_resample
    from benchbase.reporting.stats import draw_units, unit_weights

    what = f"metric {cls.name or cls.__name__!r}"
    rng = np.random.default_rng(0)
    rows = 150
    graph = np.repeat(np.arange(30), 5)  # several rows per graph: node-level metrics need them
    if "labels" in cls.kinds:
        y = rng.integers(0, 3, rows).astype(float)
        p = np.where(rng.random(rows) < 0.7, y, rng.integers(0, 3, rows)).astype(float)
    elif "classification" in cls.kinds:
        y = (rng.random(rows) < 0.5).astype(float)
        p = y + rng.normal(size=rows)
    else:
        y = rng.normal(size=rows)
        p = y + rng.normal(scale=0.5, size=rows)
    pred = Predictions(y, p, graph)
    metric = cls(**(params or {}))
    value = metric(pred)
    if not np.isfinite(value):
        _fail(what, f"is not finite on ordinary predictions: {value}")
    units, row_unit = np.unique(graph, return_inverse=True)
    drawn = draw_units(len(units), rng, replicates=8)
    weights = unit_weights(units, drawn, units)
    fast = metric.resampled(pred, weights)
    for r in range(8):
        slow = metric(expand_resample(pred, row_unit, weights[r]))
        if not np.isclose(fast[r], slow, rtol=1e-9, atol=1e-12, equal_nan=True):
            _fail(what, f"resampled() gives {fast[r]} where recomputing on the resample gives {slow}")


def _double(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return 2 * x


@_conformance
def check_executor(cls: type, **options: Any) -> None:
    """Jobs' results come back under their keys, a failing job's exception comes back as its
    outcome, and the executor is empty afterwards."""
    what = f"executor {cls.name or cls.__name__!r}"
    with cls(jobs=1, **options) as executor:
        for value in (1, 2, -1):
            executor.submit(f"job:{value}", _double, value)
        outcomes: dict[str, Any] = {}
        while executor.in_flight():
            outcomes.update(executor.completed())
    if outcomes.get("job:1") != 2 or outcomes.get("job:2") != 4:
        _fail(what, f"results do not come back under their keys: {outcomes}")
    if not isinstance(outcomes.get("job:-1"), ValueError):
        _fail(what, f"a failing job's exception must be its outcome, got {outcomes.get('job:-1')!r}")


def check_registered(
    kind: str, name: str, dataset: Dataset | None = None, params: dict[str, Any] | None = None
) -> None:
    """Run the check of a registered plugin by kind and name, built with `params` (a dataset's: a
    file-backed one needs its path; default: its defaults). Raises `ConformanceError` naming the
    plugin and the check that failed, whatever the plugin raised."""
    from benchbase.contract.registry import default_registry

    entry = default_registry().get(kind, name)
    params = dict(params or {})
    if kind == "dataset":
        try:
            built = entry.obj(**validate(entry.param_spec, params, f"dataset {name!r}"))
            built.check_available()
        except Exception as exc:  # noqa: BLE001 - a missing parameter, an unreadable file...: say which
            shown = f" with {params}" if params else " with its defaults"
            raise ConformanceError(
                f"dataset {name!r}: building it{shown} failed: {type(exc).__name__}: {exc}"
                + ("" if params else " (pass params=... with what it needs, a path say)")
            ) from exc
        try:
            check_dataset(built)
        except ConformanceError as exc:
            if params:
                raise
            hint = " (checked with its defaults: pass params=... with what it needs, a path say)"
            raise ConformanceError(f"{exc}{hint}") from exc
        return
    checks = {
        "encoder": lambda: check_encoder(entry.obj, dataset, params=params),
        "pretext": lambda: check_pretext(entry.obj, dataset, params=params),
        "rebalancer": lambda: check_rebalancer(entry.obj, params=params),
        "protocol": lambda: check_protocol(entry.obj, dataset, params=params),
        "metric": lambda: check_metric(entry.obj, params=params),
        "executor": lambda: check_executor(entry.obj, **params),
    }
    checks[kind]()


def registered_by(plugin: ModuleType) -> set[tuple[str, str]]:
    """What a plugin module registers through its hooks, as ``(kind, name)`` pairs, loaded as
    benchbase loads it: after the core's own plugins only (none of the installed ones, so that a
    plugin that is also installed registers no duplicate name). Raises `ConformanceError` with
    the error when the module fails to load."""
    from benchbase.contract.registry import load_registry

    saved = {key: os.environ.get(key) for key in ("BENCHBASE_PLUGINS", "BENCHBASE_EXTRA_PLUGINS")}
    os.environ["BENCHBASE_PLUGINS"] = "core"
    os.environ.pop("BENCHBASE_EXTRA_PLUGINS", None)
    try:
        registry = load_registry(extra_modules=[plugin])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if registry.failures:
        _fail(f"plugin {plugin.__name__!r}", "; ".join(f"{f.plugin}: {f.error}" for f in registry.failures))
    return {(e.kind, e.name) for e in registry.listing() if e.plugin == plugin.__name__}


def checkable(kind: str) -> list[str]:
    """Registered names of one kind (for parametrising tests)."""
    from benchbase.contract.registry import default_registry

    return default_registry().names(kind)


__all__ = [
    "ConformanceError",
    "SyntheticGraphs",
    "check_dataset",
    "check_encoder",
    "check_executor",
    "check_metric",
    "check_pretext",
    "check_protocol",
    "check_rebalancer",
    "check_registered",
    "checkable",
    "registered_by",
]
