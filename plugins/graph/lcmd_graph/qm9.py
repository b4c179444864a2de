"""QM9 from the files of the `qm9pack` package (its code is never imported), split as DiGress.

`qm9pack` ships QM9's 130,831 characterised molecules (the 133,885 of GDB-9 less the 3,054
that failed the consistency check) as `qm9pack/data/qm9_part{1,2,3}.csv`, with the GDB index
(`Index`, 1 … 133,885) and the `SMILES` of each. `--data-root DIR` reads the same three files
from DIR instead.

**Split.** DiGress shuffles all 133,885 rows of QM9's table with pandas'
`sample(frac=1, random_state=42)` — NumPy's `RandomState(42).permutation(133885)` — and takes
the first 100,000 for train, the last int(0.1 · 133,885) = 13,388 for test and the 20,497
between them for valid; the uncharacterised molecules are dropped afterwards. Row r of that
table is GDB index r + 1, so the same permutation of the indices gives the same split here:
97,734 / 20,042 / 13,055 molecules.

Molecules become typed graphs (`lcmd_graph.molecules`): heavy atoms C, N, O, F with their formal
charge, kekulised bonds.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
from pathlib import Path

import networkx as nx
import numpy as np

from lcmd_core.plugins import DataNotFoundError, PluginError

PACKAGE = "qm9pack"
FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
COLUMNS = ("Index", "SMILES")
GDB_ROWS = 133_885  # QM9's full table, the index space DiGress shuffles
TRAIN_ROWS = 100_000
TEST_ROWS = int(0.1 * GDB_ROWS)
SPLITS = ("train", "valid", "test")
INSTALL = f"pip install {PACKAGE}==1.0.3 (make installs it)"
ATOM_TYPES = ("C", "N", "O", "F", "N+", "N-", "O-", "C-")  # every atom type QM9 holds
MAX_ATOMS = 9


def package_dir() -> Path:
    """`qm9pack`'s data directory, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"qm9: the package {PACKAGE} is not installed; {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def split_of_index() -> np.ndarray:
    """The split (0 train, 1 valid, 2 test) of every GDB index 1 … 133,885, at position index−1."""
    order = np.random.RandomState(42).permutation(GDB_ROWS)
    split = np.empty(GDB_ROWS, dtype=np.int8)
    split[order[:TRAIN_ROWS]] = 0
    split[order[TRAIN_ROWS : GDB_ROWS - TEST_ROWS]] = 1
    split[order[GDB_ROWS - TEST_ROWS :]] = 2
    return split


def _read_file(path: Path) -> list[tuple[int, str]]:
    """(GDB index, SMILES) of every row of one file; a one-line error for a bad file."""
    hint = f"reinstall it: {INSTALL}" if PACKAGE in path.parts else "replace it"
    if not path.is_file():
        raise DataNotFoundError(f"qm9: {path} is missing; {hint}")
    csv.field_size_limit(1 << 26)  # rows carry coordinates and spectra
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            if not set(COLUMNS) <= set(header):
                raise PluginError(
                    f"qm9: {path} has no {' and '.join(COLUMNS)} columns (header "
                    f"{header[:4]}...); {hint}"
                )
            at_index, at_smiles = header.index("Index"), header.index("SMILES")
            for line, row in enumerate(reader, start=2):
                try:
                    index, smiles = int(row[at_index]), row[at_smiles]
                except (IndexError, ValueError):
                    raise PluginError(f"qm9: {path} line {line} is malformed; {hint}") from None
                if not 1 <= index <= GDB_ROWS or not smiles:
                    raise PluginError(
                        f"qm9: {path} line {line}: index {index} outside 1…{GDB_ROWS} or no "
                        f"SMILES; {hint}"
                    )
                rows.append((index, smiles))
    except (UnicodeDecodeError, csv.Error) as err:
        raise PluginError(f"qm9: {path} is not a readable CSV ({err}); {hint}") from None
    return rows


@functools.cache
def read_rows(directory: Path) -> tuple[tuple[int, str], ...]:
    """(GDB index, SMILES) of every molecule in the three files of `directory`."""
    rows = [row for name in FILES for row in _read_file(directory / name)]
    indices = [index for index, _ in rows]
    if len(set(indices)) != len(indices):
        raise PluginError(f"qm9: {directory} lists a molecule twice; {INSTALL}")
    return tuple(rows)


@functools.cache
def _split_graphs(directory: Path, split: str) -> tuple[nx.Graph, ...]:
    from lcmd_graph.molecules import smiles_to_graph

    wanted = SPLITS.index(split)
    split_of = split_of_index()
    return tuple(
        smiles_to_graph(smiles)
        for index, smiles in read_rows(directory)
        if split_of[index - 1] == wanted
    )


def read_qm9(root: Path | None, split: str) -> tuple[list[nx.Graph], None]:
    """The molecule graphs of one split, from `root` or the installed `qm9pack`."""
    directory = Path(root).expanduser().resolve() if root else package_dir()
    return list(_split_graphs(directory, split)), None
