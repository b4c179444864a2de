"""Readers for the image data sets in their published formats, and the paper's preprocessing.

Items are `numpy.ndarray` uint8 of shape (H, W, C), C ∈ {1, 3}.

- Fashion-MNIST: the four IDX files (gzipped or not), (28, 28, 1) images, 10 classes. `train` is
  the first 11/12 of the training file (55,000), `valid` its last 1/12 (5,000), `test` t10k.
- LSUN: the official LMDB release (`<category>_train_lmdb/`, values WebP or JPEG bytes) or an
  image folder `<category>/` at any depth (as the `lsun` tool's `export` writes it). A key (the
  file stem in a folder) goes to `test` or `valid` when the first 4 bytes of its SHA-256 are 0 or
  1 mod 100, else `train` (98/1/1 %), so an image keeps its split across both layouts. The
  official 300-image val LMDB is not used.
- FFHQ and other flat folders: images at any depth sorted by path; the first 6/7 are `train`
  (60,000 of 70,000, taming-transformers' `ffhqtrain.txt`), the next 1/14 `valid`, the last 1/14
  `test`. The usual FFHQ FID protocol uses all 70,000 as reference.
- ImageNet: `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG`, labels = index of the sorted wnid;
  `test` is `val/`, `valid` the 1 % of `train/` whose relative path hashes to 0 mod 100.

LSUN and folder images are decoded on access by a lazy sequence, resized and centre-cropped by
`center_crop_resize`; an undecodable image raises `CorruptImageError` when accessed.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

import numpy as np
from PIL import Image

from lcmd_core.plugins import CorruptItemError, DataNotFoundError, PluginError

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_SOURCE = (
    "Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist/) "
    "or https://github.com/zalandoresearch/fashion-mnist"
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
LSUN_SOURCE = "the official LSUN release (https://github.com/fyu/lsun, download.py -c <category>)"
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

Key = TypeVar("Key", str, bytes)


class CorruptImageError(CorruptItemError):
    """An image file or LMDB value that Pillow cannot decode; callers count and skip it."""


def hflip(image: np.ndarray) -> np.ndarray:
    """The image mirrored left to right (the paper's horizontal-flip augmentation)."""
    return np.ascontiguousarray(image[:, ::-1])


def center_crop_resize(image: Image.Image, size: int) -> np.ndarray:
    """RGB (size, size, 3) uint8: the central square of side min(W, H), resized with BICUBIC.

    Equal, up to rounding, to resizing the shorter side to `size` then centre-cropping (LDM's
    LSUN loader crops first too); Pillow's BICUBIC filter antialiases when it downsamples.
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    rgb = image.convert("RGB")
    box = (left, top, left + side, top + side)
    return np.asarray(rgb.resize((size, size), Image.Resampling.BICUBIC, box=box))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise PluginError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")


def _bucket(key: bytes) -> int:
    """A key's hash bucket in 0..99, stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % 100


def _hash_split(key: bytes) -> str:
    bucket = _bucket(key)
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


# --- Fashion-MNIST (IDX) ------------------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """The array in an IDX file (gzipped or not), in native byte order; PluginError if malformed."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise PluginError(f"{path}: corrupt gzip data ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0":
        raise PluginError(f"{path}: not an IDX file (magic number must start with two zero bytes)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise PluginError(f"{path}: unknown IDX data type code 0x{code:02X}")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise PluginError(f"{path}: IDX header declares {ndim} dimensions but is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise PluginError(
            f"{path}: IDX shape {dims} of {dtype.name} needs {expected} bytes, file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _fashion_mnist_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_fashion_mnist(root: Path | None, split: str) -> tuple[list[np.ndarray], list[int]]:
    """Images (28, 28, 1) uint8 and labels 0..9 of one split, from `root` (or its
    `fashion-mnist/`), by default Debian's /usr/share/datasets/fashion-mnist/."""
    _check_split(split)
    root = FASHION_MNIST_ROOT if root is None else Path(root)
    names = FASHION_MNIST_FILES["test" if split == "test" else "train"]
    for directory in (root, root / "fashion-mnist"):
        paths = [_fashion_mnist_file(directory, name) for name in names]
        if None not in paths:
            break
    else:
        expected = ", ".join(n for pair in FASHION_MNIST_FILES.values() for n in pair)
        raise DataNotFoundError(
            f"Fashion-MNIST not found: expected {expected} (or un-gzipped) in {root}/ or "
            f"{root}/fashion-mnist/; "
            f"they come from {FASHION_MNIST_SOURCE}"
        )
    images, labels = (read_idx(p) for p in paths)
    if (images.ndim, labels.ndim, images.dtype, labels.dtype) != (3, 1, np.uint8, np.uint8):
        raise PluginError(
            f"{paths[0]}, {paths[1]}: expected uint8 images [N, H, W] and labels [N], "
            f"got {images.dtype.name} {images.shape} and {labels.dtype.name} {labels.shape}"
        )
    if len(images) != len(labels) or labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise PluginError(
            f"{paths[1]}: {len(labels)} labels in 0..{labels.max(initial=0)} for "
            f"{len(images)} images; expected one label in 0..9 per image"
        )
    if split != "test":
        cut = len(images) - len(images) // 12
        part = slice(0, cut) if split == "train" else slice(cut, None)
        images, labels = images[part], labels[part]
    return list(images[..., None]), labels.tolist()


# --- lazily decoded images ----------------------------------------------------------------------


def _decode(source: Path | bytes, size: int, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            return center_crop_resize(image, size)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"{where}: cannot decode image ({err})") from None


class LazyImages(Sequence[np.ndarray], Generic[Key]):
    """Images decoded and `center_crop_resize`d to `size` on access; `keys` says which."""

    def __init__(self, keys: Sequence[Key], size: int) -> None:
        if size < 1:
            raise PluginError(f"image size must be at least 1, got {size}")
        self.keys = keys
        self.size = size

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> LazyImages[Key]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | LazyImages[Key]:
        if isinstance(index, slice):
            subset = copy.copy(self)
            subset.keys = self.keys[index]
            return subset
        return self._load(self.keys[index])

    def _load(self, key: Key) -> np.ndarray:
        raise NotImplementedError


class ImageFiles(LazyImages[str]):
    """Image files by path."""

    def _load(self, key: str) -> np.ndarray:
        return _decode(Path(key), self.size, key)


class LmdbImages(LazyImages[bytes]):
    """Values of the LMDB at `path` (encoded images) by key."""

    def __init__(self, path: Path, keys: Sequence[bytes], size: int) -> None:
        super().__init__(keys, size)
        self.path = path

    def _load(self, key: bytes) -> np.ndarray:
        with _lmdb_env(str(self.path)).begin(buffers=False) as txn:
            value = txn.get(key)
        where = f"{self.path} key {key.decode(errors='replace')}"
        if value is None:
            raise CorruptImageError(f"{where}: key missing from the LMDB")
        return _decode(value, self.size, where)


@functools.cache
def _lmdb_env(path: str) -> Any:
    """The read-only environment of the LMDB at `path`, opened once per process and kept open.

    py-lmdb refuses to open an environment twice in a process, and a forked child (a DataLoader
    worker) inherits that refusal, so every reader shares this one; without locks (`lock=False`)
    reading through the inherited environment is safe.
    """
    import lmdb  # only LSUN needs it; keeps the plugin's entry point light

    try:
        return lmdb.open(path, readonly=True, lock=False, readahead=False)
    except lmdb.Error as err:
        raise PluginError(f"{path}: cannot open as an LMDB ({err})") from None


def _image_paths(directory: Path) -> list[str]:
    """Sorted paths of the image files under `directory`, at any depth (hidden files skipped)."""
    return sorted(
        os.path.join(parent, name)
        for parent, _, names in os.walk(directory, followlinks=True)
        for name in names
        if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)
    )


# --- LSUN ---------------------------------------------------------------------------------------


def read_lsun(
    root: Path, category: str, split: str, size: int = 256, limit: int | None = None
) -> tuple[LmdbImages | ImageFiles, None]:
    """LSUN `category` (e.g. `church_outdoor`, `bedroom`) from `root/<category>_train_lmdb/` or
    an image folder `root/<category>/`; the first `limit` images of the split in key order."""
    _check_split(split)
    lmdb_dir, folder = Path(root) / f"{category}_train_lmdb", Path(root) / category
    if (lmdb_dir / "data.mdb").is_file():
        keys: list[bytes] = []
        with _lmdb_env(str(lmdb_dir)).begin() as txn:
            for key in txn.cursor().iternext(keys=True, values=False):
                if limit is not None and len(keys) >= limit:
                    break
                if _hash_split(key) == split:
                    keys.append(key)
        return LmdbImages(lmdb_dir, keys, size), None
    paths = _image_paths(folder) if folder.is_dir() else []
    if not paths:
        raise DataNotFoundError(
            f"LSUN {category} not found: expected {lmdb_dir}/data.mdb or images under {folder}/; "
            f"they come from {LSUN_SOURCE}"
        )
    paths = [p for p in paths if _hash_split(Path(p).stem.encode()) == split]
    return ImageFiles(paths[:limit], size), None


# --- image folders (FFHQ, ImageNet) -------------------------------------------------------------


def read_image_folder(
    root: Path, split: str, size: int, classes: bool, source: str = ""
) -> tuple[LazyImages[str], list[int] | None, tuple[str, ...]]:
    """(images, labels, class names) from a flat folder (`classes=False`, FFHQ: images at any
    depth, no labels) or a class tree `train/<class>/*`, `val/<class>/*` (ImageNet).

    `source`, where the files come from, is added to the missing-data message.
    """
    _check_split(split)
    root = Path(root)
    where = f"; they come from {source}" if source else ""
    if not classes:
        paths = _image_paths(root) if root.is_dir() else []
        if not paths:
            raise DataNotFoundError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}/, at any depth{where}"
            )
        bounds = {"train": (0, 12), "valid": (12, 13), "test": (13, 14)}[split]
        lo, hi = (len(paths) * b // 14 for b in bounds)
        return ImageFiles(paths[lo:hi], size), None, ()
    train, tree = root / "train", root / ("val" if split == "test" else "train")
    names = sorted(d.name for d in train.iterdir() if d.is_dir()) if train.is_dir() else []
    files = [(p, label) for label, name in enumerate(names) for p in _image_paths(tree / name)]
    if not files:
        raise DataNotFoundError(
            f"no images under {tree}/<class>/: expected {root}/train/<class>/*.JPEG and "
            f"{root}/val/<class>/*.JPEG{where}"
        )
    if split != "test":
        held_out = split == "valid"
        files = [
            (p, label)
            for p, label in files
            if (_bucket(os.path.relpath(p, tree).encode()) == 0) == held_out
        ]
    return ImageFiles([p for p, _ in files], size), [label for _, label in files], tuple(names)
