"""The `molecule` codec: the adjacency codec with atom and bond types, writing SMILES.

Tokens are those of `AdjacencyCodec` (diagonal cells hold atom types, the others "no bond" or
a bond type); the defaults fit QM9 (9 heavy atoms, the 8 charged or neutral atom types QM9
holds, single/double/triple bonds). `write` stores `samples.smi`, one SMILES a line (canonical
for valid molecules, RDKit's unsanitised SMILES for invalid ones, an empty line for a sample
without atoms), and `grid.png`, an RDKit drawing of every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import networkx as nx

from lcmd_graph.codec import AdjacencyCodec
from lcmd_graph.molecules import BOND_TYPES, draw_grid, written_smiles
from lcmd_graph.qm9 import ATOM_TYPES, MAX_ATOMS


class MoleculeCodec(AdjacencyCodec):
    """Molecule graphs with at most `max_nodes` heavy atoms ↔ adjacency tokens."""

    name = "molecule"

    def __init__(
        self,
        max_nodes: int = MAX_ATOMS,
        node_types: Sequence[str] = ATOM_TYPES,
        edge_types: Sequence[str] = BOND_TYPES,
    ) -> None:
        super().__init__(max_nodes, node_types, edge_types)

    def write(self, items: Sequence[nx.Graph], directory: Path) -> list[Path]:
        """Write `samples.smi` (one SMILES a line) and `grid.png` (RDKit drawings)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        smiles = directory / "samples.smi"
        smiles.write_text("".join(f"{written_smiles(g)}\n" for g in items))
        grid = directory / "grid.png"
        draw_grid(list(items)).save(grid)
        return [smiles, grid]
