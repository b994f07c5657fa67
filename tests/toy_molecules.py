"""A handful of real molecules featurised the OGB way (the project's molecular convention), with
RDKit 3D coordinates, shared by the encoder and pretext-task tests."""

from __future__ import annotations

import numpy as np
from ogb.utils import smiles2graph
from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims
from rdkit import Chem
from rdkit.Chem import AllChem

from benchbase.contract.api import Dataset, FeatureSpec, GraphArrays

SMILES = ["CCO", "c1ccccc1O", "CC(=O)N", "C1CC1Cl", "FC(F)(F)C#N", "OC1CCCCC1S"]


def heavy_atom_coordinates(smiles: str) -> np.ndarray:
    """RDKit ETKDG 3D coordinates (Angstrom) of the heavy atoms, in SMILES atom order."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return mol.GetConformer().GetPositions()[heavy].astype(np.float32)


class ToyMolecules(Dataset):
    name = "toy-molecules"
    provides = frozenset({"x_categorical", "edge_attr", "smiles", "pos"})
    features = FeatureSpec(
        node_vocab=tuple(get_atom_feature_dims()), edge_vocab=tuple(get_bond_feature_dims()), has_pos=True
    )

    def __init__(self, smiles: list[str] = SMILES) -> None:
        self._smiles = list(smiles)
        graphs = [smiles2graph(s) for s in self._smiles]
        self._arrays = GraphArrays(
            node_ptr=np.cumsum([0] + [g["num_nodes"] for g in graphs]),
            edge_ptr=np.cumsum([0] + [g["edge_index"].shape[1] for g in graphs]),
            edge_index=np.concatenate([g["edge_index"] for g in graphs], axis=1),
            x=np.concatenate([g["node_feat"] for g in graphs]),
            edge_attr=np.concatenate([g["edge_feat"] for g in graphs]),
            pos=np.concatenate([heavy_atom_coordinates(s) for s in self._smiles]),
        )

    def arrays(self) -> GraphArrays:
        return self._arrays

    def ids(self) -> np.ndarray:
        return np.arange(len(self._smiles))

    def smiles(self) -> list[str]:
        return self._smiles
