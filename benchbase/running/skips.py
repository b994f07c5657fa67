"""Which combinations a grid skips, and why.

Combinations that make no sense are skipped, with the reason, by these rules:
1. an encoder or pretext task whose ``requires`` a dataset does not ``provide`` is skipped;
2. a protocol whose ``requires`` (graph properties) the dataset does not provide, or which
   declares the dataset's task incompatible (`Protocol.incompatibility`), is skipped;
3. a rebalancer other than ``none`` needs a class-labelled loss to act on: a class-labelled
   pretext task, or a classification task in the dataset; otherwise the run is skipped
   (it would be identical to ``none``). A data-side rebalancer (``data_side``, which acts only by
   choosing what to corrupt) needs a pretext task that ``uses_selection_weights``;
4. an encoder with ``supports_pretext = False`` (it never sees the corrupted batch) runs with
   pretext ``none`` only;
5. a dataset whose data is not available (its plugin raises a `PluginError` when built or from
   `Dataset.check_available`) is skipped, with the plugin's message saying how to obtain it;
6. a pretext task that reads labels (``reads_labels``) pretrains only on graphs whose labels are
   not tested: with ``pretrain_pool = "train"``, or on another dataset alone (``pretrain_dataset``
   with ``pretrain_pool = "all"``); on the whole fine-tuning dataset it would see the test labels;
7. a pretext task or encoder whose ``requires`` the pretraining dataset does not provide is skipped
   (the encoder must also fit the fine-tuning dataset, rule 1), and a pretraining dataset whose data
   is not available skips its runs (rule 5).

Pretraining on another dataset. ``pretrain_dataset`` (a training setting; unset: the fine-tuning
dataset) names a registered dataset to pretrain on - a large unlabeled pool such as ``qm9`` before a
small measured dataset such as ``freesolv/expt`` (Hu et al. 2020). Its parameters are those the
grid gives that dataset name, ``[params.dataset."<name>"]`` (or a study's, or a sweep's
``dataset.<name>.<parameter>``): one dataset name means one configuration throughout a grid.
``pretrain_pool`` then says which graphs pretraining sees:

- ``all``: the pretraining dataset's graphs alone;
- ``all+finetune``: those and every graph of the fine-tuning dataset;
- ``train``: those and the train and valid graphs of the run's split (the test region stays unseen).

Without ``pretrain_dataset`` they mean what they always did (``all+finetune`` is ``all``), and naming
the fine-tuning dataset itself is the same as leaving it unset. With ``all``, a stage does not depend
on the fine-tuning dataset or protocol at all: the freesolv and solubility runs of one encoder,
pretext task, rebalancer and seed share one QM9-pretrained stage - the same stage as QM9's own runs
with ``pretrain_pool = "all"``. The encoder is built from the dataset's `FeatureSpec` in both stages,
so the two datasets' features must be equal: a grid where they differ is rejected at planning,
naming both datasets and the difference (QM9 provides 3D positions unless ``positions = false``).
Benchbase does not look for graphs that both datasets hold: pretraining on ``freesolv`` (the same
molecules) before fine-tuning ``freesolv/expt`` shows pretraining the test molecules.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from benchbase.contract.errors import DataUnavailable, GridError, PluginError
from benchbase.contract.identity import canonical as _canonical
from benchbase.contract.kinds import NO_PRETEXT, NO_REBALANCER, RUN_KINDS
from benchbase.contract.registry import Registry
from benchbase.contract.types import SMILES


def _dataset(registry: Registry, spec: dict, datasets_cache: dict, where: str, kind: str = "dataset") -> Any:
    """The run's dataset (`kind` ``pretrain_dataset``: the one it pretrains on), or the reason it is
    not available on this machine (a `DataUnavailable` from the plugin). Any other error of the
    plugin stops the grid with its message."""
    from benchbase.compute.loading import build_dataset

    dname, dparams = spec[kind]["name"], spec[kind]["params"]
    key = (dname, _canonical(dparams))
    if key not in datasets_cache:
        try:
            datasets_cache[key] = build_dataset(registry, dname, dparams)
            datasets_cache[key].check_available()
        except DataUnavailable as exc:  # data not on this machine: skip its runs, say why
            datasets_cache[key] = f"dataset {dname!r} is not available: {exc}"
        except GridError:
            raise
        except PluginError as exc:
            raise GridError(f"{where}: dataset {dname!r}: {exc}") from None
    return datasets_cache[key]


def _check_buildable(registry: Registry, spec: dict, dataset: Any, built: set, where: str) -> None:
    """Build each distinct plugin configuration once, so that what only its constructor checks
    (a width that must divide by the heads, r1 <= k < r2) fails at planning, not as failed runs."""
    from benchbase.compute import loading

    for kind in RUN_KINDS[1:]:  # every kind but the dataset
        name, params = spec[kind]["name"], spec[kind]["params"]
        if name == NO_PRETEXT and kind in ("pretext", "rebalancer"):
            continue
        key = (kind, name, _canonical(params), repr(dataset.features) if kind == "encoder" else "")
        if key in built:
            continue
        try:
            if kind == "encoder":
                loading.build_encoder(registry, name, params, dataset.features)
            else:
                getattr(loading, f"build_{kind}")(registry, name, params)
        except GridError:
            raise
        except PluginError as exc:  # plugins name themselves in their messages
            raise GridError(f"{where}: {exc}") from None
        except Exception as exc:  # a value its declaration let through, which the plugin cannot take
            raise GridError(
                f"{where}: {kind} {name!r} cannot be built with {params}: {type(exc).__name__}: {exc}"
            ) from None
        built.add(key)


def _pretraining_datasets(spec: dict, dataset: Any, pretraining: Any) -> list[Any]:
    """The datasets whose graphs a run's pretraining pool holds (none without a pretext task)."""
    if spec["pretext"]["name"] == NO_PRETEXT:
        return []
    if pretraining is None:
        return [dataset]
    return [pretraining] if spec["train"]["pretrain_pool"] == "all" else [pretraining, dataset]


def _check_pretraining(spec: dict, dataset: Any, pretraining: Any, where: str) -> None:
    """What makes pretraining on another dataset impossible stops the grid: features that differ
    (the encoder is built from them in both stages) or, for a pool that adds the fine-tuning graphs,
    datasets that augment their batches differently (one batch holds graphs of both)."""
    pname, dname = spec["pretrain_dataset"]["name"], spec["dataset"]["name"]
    ours, theirs = pretraining.features, dataset.features
    if ours != theirs:
        differences = "; ".join(
            f"{f.name} {getattr(ours, f.name)!r} vs {getattr(theirs, f.name)!r}"
            for f in dataclasses.fields(ours)
            if getattr(ours, f.name) != getattr(theirs, f.name)
        )
        raise GridError(
            f"{where}: pretraining dataset {pname!r} and dataset {dname!r} have different features ({differences}): "
            f"an encoder pretrained on one does not fit the other; give {pname!r} parameters under which they agree "
            f'([params.dataset."{pname}"]) or pretrain on another dataset'
        )
    if spec["train"]["pretrain_pool"] != "all" and type(pretraining).augment is not type(dataset).augment:
        raise GridError(
            f"{where}: pretraining dataset {pname!r} and dataset {dname!r} augment their batches differently, so "
            f"their graphs cannot share a pool (pretrain_pool = {spec['train']['pretrain_pool']!r}); use 'all'"
        )


def _capabilities(dataset: Any) -> set[str]:
    """What `dataset` provides, as far as it can be used: 'smiles' only with a ``smiles()`` method
    (older datasets declared the capability without one), so that a task needing it is skipped at
    planning rather than failing every run."""
    provides = set(dataset.provides)
    if SMILES in provides and not callable(getattr(dataset, "smiles", None)):
        provides.discard(SMILES)
    return provides


def _pretext_is_multilabel(registry: Registry, spec: dict) -> bool:
    from benchbase.compute import loading

    try:
        return bool(loading.build_pretext(registry, spec["pretext"]["name"], spec["pretext"]["params"]).is_multilabel())
    except Exception:  # noqa: BLE001 - not buildable: `_check_buildable` reports it
        return False


def _skip_reason(registry: Registry, spec: dict, dataset: Any, pretraining: Any = None) -> str | None:
    if isinstance(dataset, str):
        return dataset
    if isinstance(pretraining, str):
        return f"pretraining {pretraining}"
    dname = spec["dataset"]["name"]
    provides = set(dataset.provides)
    pool = _pretraining_datasets(spec, dataset, pretraining)
    pname = spec.get("pretrain_dataset", {}).get("name")
    for kind, datasets in (("encoder", [dataset, *(d for d in pool if d is not dataset)]), ("pretext", pool)):
        name = spec[kind]["name"]
        for data in datasets:  # the encoder runs on both datasets, the pretext task on its pool
            needed = set(getattr(registry.get(kind, name).obj, "requires", ()))
            missing = needed - _capabilities(data)
            if missing:
                which = f"dataset {dname!r}" if data is dataset else f"pretraining dataset {pname!r}"
                if missing == {SMILES} & needed and SMILES in data.provides:
                    return f"{kind} {name!r} needs smiles(), which {which} declares ('smiles') but does not define"
                return f"{kind} {name!r} needs {sorted(missing)}, which {which} does not provide"
    encoder_cls = registry.get("encoder", spec["encoder"]["name"]).obj
    pretext_name = spec["pretext"]["name"]
    if pretext_name != NO_PRETEXT and not getattr(encoder_cls, "supports_pretext", True):
        return f"encoder {encoder_cls.name!r} never sees the corrupted input, so pretext tasks cannot train it"
    if pretext_name != NO_PRETEXT and getattr(registry.get("pretext", pretext_name).obj, "reads_labels", False):
        mode = spec["train"]["pretrain_pool"]
        if mode == "all+finetune" or (mode == "all" and pretraining is None):
            return (
                f"pretext {pretext_name!r} reads labels, so it pretrains only with pretrain_pool = 'train' "
                "(or 'all' with a pretrain_dataset): with this pool it would see the test labels"
            )
    protocol_cls = registry.get("protocol", spec["protocol"]["name"]).obj
    missing = set(protocol_cls.requires) - provides
    if missing:
        return f"protocol {protocol_cls.name!r} needs {sorted(missing)}, which dataset {dname!r} does not provide"
    reason = protocol_cls(**spec["protocol"]["params"]).incompatibility(dataset)
    if reason:
        return reason
    if spec["rebalancer"]["name"] != NO_REBALANCER:
        labelled_pretext = pretext_name != NO_PRETEXT and registry.get("pretext", pretext_name).obj.class_labelled
        classification = any(t.kind == "classification" for t in dataset.tasks)
        if not (labelled_pretext or classification):
            why = "pretext 'none'" if pretext_name == NO_PRETEXT else f"pretext {pretext_name!r} has no class labels"
            return f"rebalancer has no class-labelled loss to act on ({why}, and every task is regression)"
        rebalancer_cls = registry.get("rebalancer", spec["rebalancer"]["name"]).obj
        if not getattr(rebalancer_cls, "supports_multilabel", True):
            # classification tasks train through one multi-label loss; so does a multi-label pretext task
            if classification:
                return (
                    f"rebalancer {rebalancer_cls.name!r} does not support multi-label losses, which the "
                    f"classification tasks of dataset {dname!r} use"
                )
            if labelled_pretext and _pretext_is_multilabel(registry, spec):
                why = f"does not support multi-label losses, which pretext {pretext_name!r} uses"
                return f"rebalancer {rebalancer_cls.name!r} {why}"
        if getattr(rebalancer_cls, "data_side", False):
            chooses = pretext_name != NO_PRETEXT and registry.get("pretext", pretext_name).obj.uses_selection_weights
            if not chooses:
                return f"data-side rebalancer {rebalancer_cls.name!r} needs a pretext task that chooses what to corrupt"
    return None
