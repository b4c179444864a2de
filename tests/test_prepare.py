"""prepare: unreadable items are skipped and counted, labels stay aligned."""

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from lcmd_core.codec import TokenSpec
from lcmd_core.config import DataConfig
from lcmd_core.plugins import CorruptItemError, DatasetInfo, Plugin
from lcmd_core.prepare import prepare_data
from lcmd_core.shards import ShardError, TokenDataset


class PairCodec:
    """Digits 0..9 → the token pair (d, d)."""

    name = "pair"
    needs_fit = False
    token_spec = TokenSpec(vocab_size=10, token_shape=(2,), fingerprint="pair")

    def fit(self, items: Sequence[int]) -> None: ...

    def encode(self, items: Sequence[int]) -> torch.Tensor:
        return torch.tensor([[int(d), int(d)] for d in items])

    def decode(self, tokens: torch.Tensor) -> list[int]:
        return tokens[:, 0].tolist()

    def write(self, items: Sequence[int], directory: Path) -> list[Path]:
        return []

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


class LazyDigits(Sequence):
    """Digits 0..9 read on access; the ones in `bad` cannot be read."""

    def __init__(self, bad: set[int]):
        self.bad = bad

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i in self.bad:
            raise CorruptItemError(f"item {i} is unreadable")
        return i


def test_unreadable_items_are_skipped_and_counted(tmp_path):
    def read(root, split):
        return LazyDigits({3, 7}), list(range(10))

    info = DatasetInfo(
        name="digits",
        description="",
        read=read,
        default_codec="pair",
        splits=("train",),
        num_classes=10,
    )
    plugin = Plugin(
        name="t",
        codecs={"pair": lambda options: PairCodec()},
        datasets={"digits": info},
        default_dataset="digits",
    )
    logged = []
    prepare_data(
        plugin, DataConfig(plugin="t"), tmp_path / "codec", tmp_path / "shards", log=logged.append
    )
    data = TokenDataset(tmp_path / "shards", "train")
    idx = torch.arange(len(data))
    assert data.tokens(idx)[:, 0].tolist() == [0, 1, 2, 4, 5, 6, 8, 9]
    assert data.labels(idx).tolist() == [0, 1, 2, 4, 5, 6, 8, 9]  # labels follow their items
    assert any("skipped 2 unreadable items" in line for line in logged)


def test_augmentations_add_copies_of_the_train_split_only(tmp_path):
    def read(root, split):
        return list(range(10)), list(range(10))

    info = DatasetInfo(
        name="digits",
        description="",
        read=read,
        default_codec="pair",
        splits=("train", "test"),
        num_classes=10,
        augmentations={"mirror": lambda d: 9 - d},
    )
    plugin = Plugin(
        name="t",
        codecs={"pair": lambda options: PairCodec()},
        datasets={"digits": info},
        default_dataset="digits",
    )
    dirs = (tmp_path / "codec", tmp_path / "shards")
    prepare_data(plugin, DataConfig(plugin="t"), *dirs)
    assert len(TokenDataset(dirs[1], "train")) == 10
    logged = []
    prepare_data(plugin, DataConfig(plugin="t", augment=["mirror"]), *dirs, log=logged.append)
    assert any("other augmentations" in line for line in logged)  # the shards were redone
    train, test = TokenDataset(dirs[1], "train"), TokenDataset(dirs[1], "test")
    idx = torch.arange(20)
    assert train.tokens(idx)[:, 0].tolist() == [*range(10), *range(9, -1, -1)]
    assert train.labels(idx).tolist() == [*range(10), *range(10)]  # a copy keeps its label
    assert len(test) == 10
    with pytest.raises(ShardError, match="no augmentation 'flip'"):
        prepare_data(plugin, DataConfig(plugin="t", augment=["flip"]), *dirs)
