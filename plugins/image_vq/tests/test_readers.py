"""Image readers on small files in the real formats: IDX, LMDB with WebP/JPEG values, folders."""

from __future__ import annotations

import gzip
import io
import multiprocessing
import struct
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lcmd_image_vq.readers import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_FILES,
    FASHION_MNIST_ROOT,
    CorruptImageError,
    LazyImages,
    center_crop_resize,
    read_fashion_mnist,
    read_idx,
    read_image_folder,
    read_lsun,
)
from PIL import Image, features

from lcmd_core.plugins import DataNotFoundError, PluginError

SPLITS = ("train", "valid", "test")
SIZE = 8
webp = pytest.mark.skipif(not features.check("webp"), reason="this Pillow has no WebP support")


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def colour(i: int) -> tuple[int, int, int]:
    """A colour that names image `i` (up to 65,535) after a lossless round trip."""
    return (i % 256, i // 256, 77)


def identity(image: np.ndarray) -> int:
    r, g, _ = image[SIZE // 2, SIZE // 2].tolist()
    return r + 256 * g


def encoded(i: int, fmt: str, size: tuple[int, int] = (12, 9)) -> bytes:
    """A solid image of `colour(i)`: WebP lossless, PNG, or JPEG."""
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.new("RGB", size, colour(i)).save(buffer, fmt, **options)
    return buffer.getvalue()


def lsun_key(i: int) -> bytes:
    return f"{i * 7919:040x}".encode()  # hex ids like the official release's


def write_lmdb(directory: Path, values: dict[bytes, bytes]) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with lmdb.open(str(directory), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for key, value in values.items():
            txn.put(key, value)


def ids(items: LazyImages) -> list[int]:
    return [identity(item) for item in items]


# --- center_crop_resize ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    size=st.integers(1, 64),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "1"]),
)
def test_center_crop_resize_any_shape_gives_size_square_rgb(
    width: int, height: int, size: int, mode: str
) -> None:
    out = center_crop_resize(Image.new(mode, (width, height)), size)
    assert out.shape == (size, size, 3)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("wide", [True, False])
def test_center_crop_resize_keeps_the_central_square(wide: bool) -> None:
    # Three 100-px bands across the long side; only the middle (green) one survives the crop.
    bands = np.zeros((100, 300, 3), np.uint8)
    bands[:, :100, 0] = bands[:, 100:200, 1] = bands[:, 200:, 2] = 255
    image = Image.fromarray(bands if wide else bands.transpose(1, 0, 2))
    out = center_crop_resize(image, 16).astype(int)
    assert (out[..., 1] > 200).all()
    assert (out[..., [0, 2]] < 60).all()
    assert (out[2:-2, 2:-2] == (0, 255, 0)).all()


def test_zero_image_size_is_rejected_when_reading(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(encoded(1, "PNG"))
    with pytest.raises(PluginError, match="at least 1"):
        read_image_folder(tmp_path, "test", 0, classes=False)


# --- IDX / Fashion-MNIST ------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [True, False])
@pytest.mark.parametrize(
    ("dtype", "code"), [(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float64, 0x0E)]
)
def test_read_idx_round_trips(tmp_path: Path, zipped: bool, dtype: type, code: int) -> None:
    offset = 0 if dtype is np.uint8 else 7  # negative values for the signed types
    array = (np.arange(30) - offset).reshape(2, 3, 5).astype(dtype)
    data = idx_bytes(array, code)
    path = tmp_path / "a-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if zipped else data)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x00", "not an IDX file"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX data type"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x00\x01", "needs 11 bytes, file has 10"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x00\x01", "needs 9 bytes, file has 10"),
        (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-6], "corrupt gzip"),
        (b"", "not an IDX file"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(data)
    with pytest.raises(PluginError, match=message):
        read_idx(path)


def write_fashion_mnist(directory: Path, n_train: int, n_test: int, zipped: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for (images, labels), n in zip(FASHION_MNIST_FILES.values(), (n_train, n_test), strict=True):
        pixels = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        for name, data in (
            (images, idx_bytes(pixels, 0x08)),
            (labels, idx_bytes(rng.integers(0, 10, n).astype(np.uint8), 0x08)),
        ):
            if zipped:
                (directory / name).write_bytes(gzip.compress(data))
            else:
                (directory / name.removesuffix(".gz")).write_bytes(data)


@pytest.mark.parametrize("zipped", [True, False])
def test_read_fashion_mnist_splits(tmp_path: Path, zipped: bool) -> None:
    write_fashion_mnist(tmp_path / "fashion-mnist", n_train=24, n_test=5, zipped=zipped)
    sizes = {}
    seen: list[int] = []
    for split in SPLITS:
        # `root` may be the folder of the files or the folder above it.
        root = tmp_path if split == "valid" else tmp_path / "fashion-mnist"
        items, labels = read_fashion_mnist(root, split)
        assert all(item.shape == (28, 28, 1) and item.dtype == np.uint8 for item in items)
        assert len(labels) == len(items)
        assert all(isinstance(y, int) and 0 <= y < len(FASHION_MNIST_CLASSES) for y in labels)
        sizes[split] = len(items)
        if split != "test":
            seen += [int(item[0, 0, 0]) for item in items]
    assert sizes == {"train": 22, "valid": 2, "test": 5}
    assert seen == list(range(24))  # train then valid: the training file in order, disjoint


def test_read_fashion_mnist_missing_names_the_files(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, n_train=3, n_test=3, zipped=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    read_fashion_mnist(tmp_path, "train")
    for root in (tmp_path, tmp_path / "nowhere"):
        with pytest.raises(DataNotFoundError) as info:
            read_fashion_mnist(root, "test")
        message = str(info.value)
        assert "\n" not in message
        assert "t10k-labels-idx1-ubyte.gz" in message
        assert "train-images-idx3-ubyte.gz" in message
        assert "dataset-fashion-mnist" in message


def test_read_fashion_mnist_rejects_mismatched_labels(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, n_train=4, n_test=3, zipped=False)
    labels = np.array([1, 2, 3], np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels, 0x08))
    with pytest.raises(PluginError, match=r"3 labels .* for 4 images"):
        read_fashion_mnist(tmp_path, "train")


@pytest.mark.skipif(
    not (FASHION_MNIST_ROOT / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION_MNIST_ROOT} missing)",
)
def test_read_fashion_mnist_debian_files() -> None:
    for split, n in (("train", 55_000), ("valid", 5_000), ("test", 10_000)):
        items, labels = read_fashion_mnist(None, split)
        assert len(items) == len(labels) == n
        assert items[0].shape == (28, 28, 1)
        assert items[0].dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


# --- LSUN ---------------------------------------------------------------------------------------

N_LSUN = 400


def lsun_splits(root: Path, **kwargs: int) -> dict[str, list[int]]:
    out = {}
    for split in SPLITS:
        items, labels = read_lsun(root, "church_outdoor", split, size=SIZE, **kwargs)
        assert labels is None
        assert isinstance(items, LazyImages)
        out[split] = ids(items)
    return out


def check_partition(splits: dict[str, list[int]], n: int) -> None:
    assert sorted(i for part in splits.values() for i in part) == list(range(n))
    assert all(splits.values())  # 400 keys: each split gets some


@webp
def test_read_lsun_lmdb_webp_splits_are_a_deterministic_partition(tmp_path: Path) -> None:
    db = tmp_path / "church_outdoor_train_lmdb"
    write_lmdb(db, {lsun_key(i): encoded(i, "WEBP") for i in range(N_LSUN)})
    splits = lsun_splits(tmp_path)
    check_partition(splits, N_LSUN)
    assert lsun_splits(tmp_path) == splits
    assert len(splits["train"]) > 0.9 * N_LSUN
    items, _ = read_lsun(tmp_path, "church_outdoor", "train", size=SIZE)
    assert items[0].shape == (SIZE, SIZE, 3)
    assert items[0].dtype == np.uint8
    assert ids(items[3:6]) == splits["train"][3:6]
    # Keys come in LMDB (sorted) order; `limit` keeps the first ones of the split.
    assert splits["train"] == sorted(splits["train"], key=lsun_key)
    limited, _ = read_lsun(tmp_path, "church_outdoor", "valid", size=SIZE, limit=2)
    assert ids(limited) == splits["valid"][:2]


@webp
def test_lsun_folder_layout_matches_lmdb_splits(tmp_path: Path) -> None:
    db = tmp_path / "lmdb" / "church_outdoor_train_lmdb"
    write_lmdb(db, {lsun_key(i): encoded(i, "WEBP") for i in range(N_LSUN)})
    for i in range(N_LSUN):  # the `lsun` tool's export layout: nested by the key's first chars
        key = lsun_key(i).decode()
        path = tmp_path / "folder" / "church_outdoor" / "/".join(key[:6]) / f"{key}.webp"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded(i, "WEBP"))
    from_lmdb = lsun_splits(tmp_path / "lmdb")
    from_folder = lsun_splits(tmp_path / "folder")
    assert {k: sorted(v) for k, v in from_lmdb.items()} == {
        k: sorted(v) for k, v in from_folder.items()
    }
    assert len(read_lsun(tmp_path / "folder", "church_outdoor", "train", SIZE, limit=7)[0]) == 7


def test_read_lsun_lmdb_jpeg_values_any_aspect(tmp_path: Path) -> None:
    db = tmp_path / "bedroom_train_lmdb"
    shapes = [(40, 30), (30, 40), (17, 17), (5, 90)]
    write_lmdb(db, {lsun_key(i): encoded(i, "JPEG", shapes[i % 4]) for i in range(200)})
    items, _ = read_lsun(tmp_path, "bedroom", "train", size=SIZE)
    for image in items[:8]:
        assert image.shape == (SIZE, SIZE, 3)
        assert image.dtype == np.uint8
        assert abs(int(image[..., 2].mean()) - 77) < 8  # JPEG: the colour, approximately


def first_identity(items: LazyImages) -> int:
    return identity(items[0])


@webp
def test_lsun_lazy_images_in_worker_processes_and_corrupt_values(tmp_path: Path) -> None:
    values = {lsun_key(i): encoded(i, "WEBP") for i in range(40)}
    write_lmdb(tmp_path / "good" / "church_outdoor_train_lmdb", values)
    items, _ = read_lsun(tmp_path / "good", "church_outdoor", "train", size=SIZE)
    first = identity(items[0])
    # DataLoader-style workers: forked after the parent opened the LMDB, sent the sequence.
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(first_identity, [items, items[:3]]) == [first, first]
    bad_key = items.keys[1]
    write_lmdb(tmp_path / "bad" / "church_outdoor_train_lmdb", {**values, bad_key: b"RIFF junk"})
    items, _ = read_lsun(tmp_path / "bad", "church_outdoor", "train", size=SIZE)
    with pytest.raises(CorruptImageError, match=bad_key.decode()):
        items[1]
    assert identity(items[0]) == first


def test_read_lsun_missing_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        read_lsun(tmp_path, "church_outdoor", "train")
    message = str(info.value)
    assert "\n" not in message
    assert "church_outdoor_train_lmdb/data.mdb" in message
    assert "fyu/lsun" in message


def test_read_lsun_rejects_a_broken_lmdb(tmp_path: Path) -> None:
    db = tmp_path / "church_outdoor_train_lmdb"
    db.mkdir()
    (db / "data.mdb").write_bytes(b"not an lmdb" * 100)
    with pytest.raises(PluginError, match="cannot open as an LMDB"):
        read_lsun(tmp_path, "church_outdoor", "train")


# --- FFHQ-style flat folders and ImageNet-style class trees --------------------------------------


def test_read_flat_folder_splits_by_sorted_index(tmp_path: Path) -> None:
    for i in range(28):  # FFHQ's layout: 00000/00000.png, … in folders of 1,000 (here 10)
        path = tmp_path / f"{i // 10 * 1000:05d}" / f"{i:05d}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encoded(i, "PNG", (10, 10)))
    (tmp_path / "LICENSE.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    splits = {}
    for split in SPLITS:
        items, labels, names = read_image_folder(tmp_path, split, SIZE, classes=False)
        assert labels is None
        assert names == ()
        assert isinstance(items, LazyImages)
        splits[split] = ids(items)
    assert splits == {"train": list(range(24)), "valid": [24, 25], "test": [26, 27]}


def test_read_class_tree_labels_and_splits(tmp_path: Path) -> None:
    wnids = ("n01440764", "n01443537", "n02102040")
    hues = ((250, 0, 0), (0, 250, 0), (0, 0, 250))
    for folder, count in (("train", 100), ("val", 3)):
        for wnid, hue in zip(wnids, hues, strict=True):
            (tmp_path / folder / wnid).mkdir(parents=True)
            for j in range(count):
                path = tmp_path / folder / wnid / f"{wnid}_{j}.JPEG"
                Image.new("RGB", (20 + j % 7, 15), hue).save(path, "JPEG")
    files = {}
    for split in SPLITS:
        items, labels, names = read_image_folder(tmp_path, split, SIZE, classes=True)
        assert names == wnids
        assert labels is not None
        assert len(labels) == len(items)
        for image, label in zip(items, labels, strict=True):
            assert image.shape == (SIZE, SIZE, 3)
            assert int(np.argmax(image.reshape(-1, 3).mean(0))) == label
        files[split] = set(items.keys)
    assert len(files["test"]) == 9
    assert all("/val/" in p for p in files["test"])
    assert files["valid"]
    assert not files["valid"] & files["train"]
    assert len(files["valid"] | files["train"]) == 300


@pytest.mark.parametrize("classes", [True, False])
def test_read_image_folder_missing_names_the_layout(tmp_path: Path, classes: bool) -> None:
    with pytest.raises(DataNotFoundError) as info:
        read_image_folder(tmp_path / "imagenet", "train", SIZE, classes, source="image-net.org")
    message = str(info.value)
    assert "\n" not in message
    assert "image-net.org" in message
    assert ("train/<class>/*.JPEG" in message) if classes else (".png" in message)


def test_image_folder_corrupt_file_raises_on_access(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(encoded(1, "PNG"))
    (tmp_path / "b.png").write_bytes(encoded(2, "PNG")[:30])
    items, _, _ = read_image_folder(tmp_path, "train", SIZE, classes=False)
    assert len(items) == 1  # 2 images: 12/14 of 2 → 1 train
    assert identity(items[0]) == 1
    items, _, _ = read_image_folder(tmp_path, "test", SIZE, classes=False)
    with pytest.raises(CorruptImageError, match=r"b\.png"):
        items[0]


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="unknown split 'val'"):
        read_fashion_mnist(tmp_path, "val")


@pytest.mark.parametrize("data", ["lsun_church", "lsun_bedroom", "ffhq", "imagenet"])
def test_real_datasets_without_root_are_one_line_errors(data: str, capsys, tmp_path: Path) -> None:
    from lcmd_core.cli import main

    assert main(["prepare", "--plugin", "image_vq", "--data", data, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data-root" in err[0]


def test_prepare_encodes_a_real_format_lsun_lmdb(tmp_path: Path) -> None:
    """`lcmd prepare --data lsun_church` on a WebP LMDB: crop/resize to 256, VQ fit, shards."""
    from lcmd_core.cli import main
    from lcmd_core.shards import read_index

    if not features.check("webp"):
        pytest.skip("this Pillow has no WebP support")
    values = {lsun_key(i): encoded(i, "WEBP", (40 + i, 30)) for i in range(12)}
    write_lmdb(tmp_path / "church_outdoor_train_lmdb", values)
    small = "{hidden: 8, code_dim: 8, codebook_size: 16, train_steps: 2, batch_size: 4}"
    out = tmp_path / "run"
    argv = [
        "prepare",
        "--plugin",
        "image_vq",
        "--data",
        "lsun_church",
        "--data-root",
        str(tmp_path),
        "--out",
        str(out),
        "--set",
        f"data.codec_options={small}",
    ]
    assert main(argv) == 0
    index = read_index(out / "shards")
    assert index["spec"]["token_shape"] == [16, 16] and index["spec"]["vocab_size"] == 16
    assert sum(split["size"] for split in index["splits"].values()) == 12


def test_hflip_mirrors_left_to_right() -> None:
    from lcmd_image_vq.readers import hflip

    image = np.arange(12, dtype=np.uint8).reshape(2, 3, 2)
    flipped = hflip(image)
    assert flipped.flags["C_CONTIGUOUS"] and flipped[0, 0].tolist() == image[0, 2].tolist()
    assert np.array_equal(hflip(flipped), image)
