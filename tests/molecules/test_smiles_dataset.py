"""The molecular plugin's public building blocks (`benchbase_molecules.smiles_dataset`): a dataset
from (ids, SMILES, labels) in memory or from a subclass, with the cache, skipped-row bookkeeping and
graph properties - and every molecular protocol, encoder and pretext task working on it."""

from __future__ import annotations

import numpy as np
import pytest
from qm9_csv import qm9_rows

from benchbase.contract.api import TaskInfo
from benchbase.contract.errors import PluginError
from benchbase.contract.registry import default_registry
from benchbase.testing import check_dataset, check_registered
from benchbase_molecules.smiles_dataset import MoleculeRecords, SmilesDataset, molecule_dataset

GAP = TaskInfo("gap", unit="eV")


@pytest.fixture(scope="module")
def rows():
    return qm9_rows(120, stride=150, part=1)  # molecules of every size, for the `size` protocol


def _dataset(rows, **changes):
    ids = [f"qm9-{r['mol_id']}" for r in rows]
    smiles = [r["smiles"] for r in rows]
    labels = np.array([[float(r["gap"])] for r in rows])
    split = [("train", "train", "train", "valid", "test")[i % 5] for i in range(len(rows))]
    args = {"ids": ids, "smiles": smiles, "labels": labels, "official_split": split, **changes}
    return molecule_dataset("lab/gaps", [GAP], **args)


def test_records_in_memory_become_a_cached_dataset_with_every_row_accounted_for(synthetic_env, rows):
    smiles = [r["smiles"] for r in rows]
    smiles[3], smiles[4], smiles[5] = "C1CC", "", "."
    labels = np.array([[float(r["gap"])] for r in rows])
    labels[6] = np.nan
    data = _dataset(rows, smiles=smiles, labels=labels)
    check_dataset(data)
    assert data.arrays().num_graphs == 116 and data.ids()[0] == "qm9-" + rows[0]["mol_id"]
    assert dict(data.skipped) == {
        f"qm9-{rows[3]['mol_id']}": "SMILES rejected by RDKit: 'C1CC'",
        f"qm9-{rows[4]['mol_id']}": "empty SMILES",
        f"qm9-{rows[5]['mol_id']}": "SMILES rejected by RDKit: '.'",
        f"qm9-{rows[6]['mol_id']}": f"no label: {rows[6]['smiles']!r}",
    }
    assert data.graph_property("official_split")[:3].tolist() == ["train", "train", "train"]
    assert len(data.graph_property("group")) == 116 and data.node_class_names() == ["C", "N", "O"]
    cached = data._graph_file()
    assert cached.exists() and _dataset(rows, smiles=smiles, labels=labels)._graph_file() == cached
    assert _dataset(rows, smiles=smiles, labels=labels + 1)._graph_file() != cached  # keyed on the content


class LabFile(SmilesDataset):
    """A third party's dataset: tasks known only from the data, records read on a cache miss."""

    def __init__(self, rows: list[dict]) -> None:
        super().__init__("lab/file")
        self.rows, self.reads = rows, 0

    def task_infos(self) -> list[TaskInfo]:
        return [GAP]

    def source_key(self) -> str:
        return f"{len(self.rows)} rows"

    def records(self) -> MoleculeRecords:
        self.reads += 1
        return MoleculeRecords([int(r["mol_id"]) for r in self.rows], [r["smiles"] for r in self.rows],
                               [float(r["gap"]) for r in self.rows])  # fmt: skip


def test_a_subclass_gets_the_cache_and_the_graph_properties(synthetic_env, rows):
    first = LabFile(rows)
    first.check_available()
    assert first.reads == 1 and first.arrays().num_graphs == 120 and not first.skipped
    again = LabFile(rows)
    assert again.arrays().num_graphs == 120 and again.reads == 0  # from the cache
    assert np.array_equal(again.graph_property("size"), first.graph_property("size"))
    with pytest.raises(NotImplementedError, match="must implement source_key"):
        SmilesDataset("lab/none", [GAP]).arrays()


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"ids": ["a"] * 120}, "ids must be unique; 'a' appears more than once"),
        ({"labels": np.zeros((120, 2))}, "labels must have shape (120, 1)"),
        ({"labels": np.r_[np.inf, np.zeros(119)]}, "the label of task 0 of id 'qm9-"),
        ({"official_split": ["dev"] * 120}, "official_split needs one of 'train', 'valid', 'test', ''"),
        ({"smiles": ["C"] * 119}, "119 SMILES for 120 ids"),
    ],
)
def test_malformed_records_are_one_clear_line(synthetic_env, rows, changes, message):
    with pytest.raises(PluginError, match="dataset 'lab/gaps': ") as error:
        _dataset(rows, **changes).check_available()
    assert message in str(error.value)


def _applicable(kind: str, provides: frozenset[str]) -> list[str]:
    registry = default_registry()
    names = [n for n in registry.names(kind) if registry.get(kind, n).distribution == "benchbase"]
    return [n for n in names if set(getattr(registry.get(kind, n).obj, "requires", ())) <= provides]


@pytest.mark.slow
def test_every_molecular_protocol_encoder_and_pretext_task_works_on_it(synthetic_env, rows):
    data = _dataset(rows)
    provides = data.provides
    checked = {kind: _applicable(kind, provides) for kind in ("protocol", "encoder", "pretext")}
    assert {"scaffold", "size", "imbalance", "extrapolation-threshold"} <= set(checked["protocol"])
    assert {"motif", "graph-pattern", "node-masking"} <= set(checked["pretext"])
    for kind, names in checked.items():
        for name in names:
            if not name.startswith("glass"):
                check_registered(kind, name, data)
