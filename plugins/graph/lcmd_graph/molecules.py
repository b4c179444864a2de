"""Molecules ↔ typed graphs (RDKit): heavy atoms as nodes, kekulised bonds as edges.

A molecule becomes a networkx graph whose nodes carry `type` = the element with its formal
charge ("C", "N+", "O-") and whose edges carry `type` = "single", "double" or "triple" (after
kekulisation, so no aromatic bonds). Hydrogens stay implicit: RDKit restores them from the
valences when the graph is read back, so SMILES → graph → SMILES gives the same canonical SMILES
for every QM9 molecule. Reading a graph back builds the molecule without any correction; a
graph that breaks valence rules is an invalid molecule, as the field counts it.

Needs the graph plugin's `molecules` extra (RDKit).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
from rdkit import Chem, RDLogger

from lcmd_core.plugins import CorruptItemError

BOND_TYPES = ("single", "double", "triple")
_BONDS = {
    "single": Chem.BondType.SINGLE,
    "double": Chem.BondType.DOUBLE,
    "triple": Chem.BondType.TRIPLE,
}
_NAMES = {bond: name for name, bond in _BONDS.items()}

RDLogger.DisableLog("rdApp.*")  # invalid samples are expected; their errors are counted, not logged


def atom_type(symbol: str, charge: int) -> str:
    """The node type of an atom: "N", "N+", "O-", "C+2"."""
    if charge == 0:
        return symbol
    sign = "+" if charge > 0 else "-"
    return f"{symbol}{sign}" if abs(charge) == 1 else f"{symbol}{sign}{abs(charge)}"


def parse_atom_type(name: str) -> tuple[str, int]:
    """(element, formal charge) of a node type made by `atom_type`."""
    for sign, unit in (("+", 1), ("-", -1)):
        if sign in name:
            symbol, _, count = name.partition(sign)
            return symbol, unit * (int(count) if count else 1)
    return name, 0


def smiles_to_graph(smiles: str) -> nx.Graph:
    """A SMILES string → a typed graph (heavy atoms, kekulised bonds); CorruptItemError if RDKit
    cannot read it or it holds bonds other than single, double or triple."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise CorruptItemError(f"molecules: RDKit cannot read SMILES {smiles!r}")
    Chem.Kekulize(mol, clearAromaticFlags=True)
    graph = nx.Graph()
    for atom in mol.GetAtoms():
        graph.add_node(atom.GetIdx(), type=atom_type(atom.GetSymbol(), atom.GetFormalCharge()))
    for bond in mol.GetBonds():
        name = _NAMES.get(bond.GetBondType())
        if name is None:
            raise CorruptItemError(
                f"molecules: SMILES {smiles!r} has a {bond.GetBondType()} bond "
                f"(only {', '.join(BOND_TYPES)})"
            )
        graph.add_edge(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), type=name)
    return graph


def graph_to_mol(graph: nx.Graph) -> Chem.Mol:
    """A typed graph → an RDKit molecule, not sanitised (no valence check, no correction)."""
    mol = Chem.RWMol()
    index = {}
    for node, data in graph.nodes(data=True):
        symbol, charge = parse_atom_type(str(data.get("type", "C")))
        atom = Chem.Atom(symbol)
        atom.SetFormalCharge(charge)
        index[node] = mol.AddAtom(atom)
    for u, v, data in graph.edges(data=True):
        mol.AddBond(index[u], index[v], _BONDS.get(str(data.get("type")), Chem.BondType.SINGLE))
    return mol.GetMol()


def _unsanitised(graph: nx.Graph) -> Chem.Mol:
    """The molecule as generated, with implicit valences and rings computed leniently so that
    RDKit can write or draw it."""
    mol = Chem.Mol(graph_to_mol(graph))
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return mol


def sanitized(graph: nx.Graph) -> Chem.Mol | None:
    """The molecule of a graph if it passes RDKit's sanitisation (valences, kekulé structure,
    aromaticity), else None."""
    mol = Chem.Mol(graph_to_mol(graph))
    if mol.GetNumAtoms() == 0:
        return None
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):  # RDKit's sanitisation errors derive from ValueError
        return None
    return mol


def canonical_smiles(graph: nx.Graph) -> str | None:
    """Canonical SMILES of a valid molecule graph, None for an invalid one."""
    mol = sanitized(graph)
    return None if mol is None else Chem.MolToSmiles(mol)


def largest_fragment(graph: nx.Graph) -> nx.Graph:
    """The connected component with the most atoms (the first such; empty for an empty graph)."""
    if graph.number_of_nodes() == 0:
        return graph
    return graph.subgraph(max(nx.connected_components(graph), key=len)).copy()


def written_smiles(graph: nx.Graph) -> str:
    """What `samples.smi` holds for a graph: canonical SMILES when valid, else RDKit's SMILES of
    the unsanitised molecule (so invalid samples can still be read), "" for an empty graph."""
    valid = canonical_smiles(graph)
    if valid is not None:
        return valid
    return Chem.MolToSmiles(_unsanitised(graph), kekuleSmiles=True, canonical=False)


def draw_grid(graphs: Sequence[nx.Graph], columns: int = 8, size: int = 160):  # -> PIL.Image
    """RDKit drawings of the molecules, `columns` a row; invalid ones drawn unsanitised and
    captioned "invalid"."""
    from rdkit.Chem import Draw

    mols, captions = [], []
    for graph in graphs:
        mol = sanitized(graph)
        captions.append("" if mol is not None else "invalid")
        mols.append(mol if mol is not None else _unsanitised(graph))
    return Draw.MolsToGridImage(
        mols, molsPerRow=columns, subImgSize=(size, size), legends=captions, returnPNG=False
    )
