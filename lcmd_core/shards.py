"""Token shards on disk: an `index.json` plus safetensors files of tokens (and labels) per split."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from lcmd_core.checkpoint import fsync_path, replace_dir, sha256_file
from lcmd_core.codec import TokenSpec
from lcmd_core.readback import ShardIndex, check_schema, confined, read_json

FORMAT = "lcmd-token-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"

# Narrowest dtype first: tokens are stored in the first one that holds every id below vocab_size.
_TOKEN_DTYPES = (
    (torch.uint8, 2**8),
    (torch.int16, 2**15),
    (torch.int32, 2**31),
    (torch.int64, 2**63),
)
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_]+")


REPREPARE = "re-run `lcmd prepare`"


class ShardError(ValueError):
    """A token shard set is missing, corrupt, or does not match the codec."""


def token_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer dtype that holds token ids in `[0, vocab_size)`."""
    return next(dtype for dtype, limit in _TOKEN_DTYPES if vocab_size <= limit)


def write_shards(
    directory: str | os.PathLike[str],
    splits: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
    spec: TokenSpec,
    codec_name: str,
    shard_size: int = 65536,
) -> dict[str, Any]:
    """Write `splits` (name -> (tokens: LongTensor[N, L], labels: LongTensor[N] | None)) as shards.

    Everything is built in a temporary sibling directory that replaces `directory` only once
    complete, so an interrupted write never leaves a shard set that looks finished.
    Returns the index.
    """
    directory = Path(directory)
    if shard_size < 1:
        raise ShardError(f"shard_size must be at least 1, got {shard_size}")
    if not splits:
        raise ShardError(
            "no splits to write; pass at least one split, e.g. {'train': (tokens, None)}"
        )
    if directory.exists() and not (
        directory.is_dir() and ((directory / INDEX_NAME).is_file() or not any(directory.iterdir()))
    ):
        raise ShardError(
            f"{directory} exists and is not a token shard directory; choose another output "
            "directory or remove it"
        )
    checked = {
        name: _check_split(name, tokens, labels, spec) for name, (tokens, labels) in splits.items()
    }

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        dtype = token_dtype(spec.vocab_size)
        index: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "codec": codec_name,
            "spec": spec.to_json(),
            "token_dtype": str(dtype).removeprefix("torch."),
            "splits": {},
        }
        for name, (tokens, labels) in checked.items():
            shards = []
            for i, start in enumerate(range(0, len(tokens), shard_size)):
                rows = slice(start, start + shard_size)
                tensors = {"tokens": tokens[rows].to(dtype)}
                if labels is not None:
                    tensors["labels"] = labels[rows]
                file = f"{name}-{i:05d}.safetensors"
                save_file(tensors, tmp / file)
                fsync_path(tmp / file)
                shards.append(
                    {
                        "file": file,
                        "rows": len(tensors["tokens"]),
                        "sha256": sha256_file(tmp / file),
                    }
                )
            index["splits"][name] = {
                "size": len(tokens),
                "has_labels": labels is not None,
                "shards": shards,
            }
        # The index is written last: a directory with index.json is a complete shard set.
        (tmp / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        fsync_path(tmp / INDEX_NAME)
        fsync_path(tmp)
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index


def read_index(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the `index.json` of a shard directory."""
    path = Path(directory) / INDEX_NAME
    if not path.is_file():
        raise ShardError(
            f"no token shards at {directory} ({INDEX_NAME} missing); run `lcmd prepare` first"
        )
    index = read_json(path, ShardError, REPREPARE)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ShardError(f"{path} is not a token shard index; {REPREPARE}")
    if index.get("format_version") != FORMAT_VERSION:
        raise ShardError(
            f"{path} has shard format version {index.get('format_version')}, this lcmd reads "
            f"version {FORMAT_VERSION}; {REPREPARE}"
        )
    checked = check_schema(ShardIndex, index, path, ShardError, REPREPARE)
    for split in checked.splits.values():
        for shard in split.shards:
            confined(Path(directory), shard.file, ShardError, REPREPARE)
    try:
        TokenSpec.from_json(index["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise ShardError(f"{path}: spec is malformed ({err}); {REPREPARE}") from None
    return checked.model_dump()


# Shards whose checksum this process verified: path → (size, mtime_ns) when it was verified.
_VERIFIED: dict[Path, tuple[int, int]] = {}


def verify_shard(path: Path, sha256: str) -> None:
    """Refuse a shard that is missing or whose sha256 differs from the index; once per process
    and file version (size and mtime)."""
    if not path.is_file():
        raise ShardError(f"token shard {path} is missing; {REPREPARE}")
    stat = path.stat()
    version = (stat.st_size, stat.st_mtime_ns)
    if _VERIFIED.get(path.resolve()) == version:
        return
    if sha256_file(path) != sha256:
        raise ShardError(
            f"token shard {path} is corrupt or replaced (sha256 mismatch); {REPREPARE}"
        )
    _VERIFIED[path.resolve()] = version


def verify_shards(directory: str | os.PathLike[str]) -> None:
    """Recompute every shard's sha256 and compare it with the index."""
    directory = Path(directory)
    for split in read_index(directory)["splits"].values():
        for shard in split["shards"]:
            verify_shard(directory / shard["file"], shard["sha256"])


def check_compatible(index: dict[str, Any], spec: TokenSpec) -> None:
    """Refuse shards whose codec fingerprint, vocabulary or token shape/positions differ."""
    stored = TokenSpec.from_json(index["spec"])
    if (stored.fingerprint, stored.vocab_size, stored.token_shape, stored.positions) != (
        spec.fingerprint,
        spec.vocab_size,
        spec.token_shape,
        spec.positions,
    ):
        raise ShardError(
            f"token shards were made by codec {stored.fingerprint} (vocab {stored.vocab_size}, "
            f"shape {list(stored.token_shape)}) but this codec is {spec.fingerprint} "
            f"(vocab {spec.vocab_size}, shape {list(spec.token_shape)}); re-run `lcmd prepare` "
            "or use the run that made these shards"
        )


class TokenDataset(Dataset):
    """One split of a shard directory, memory-mapped: items are `(tokens: LongTensor[L], label)`.

    `label` is a 0-d LongTensor, -1 when the split has no labels.
    """

    def __init__(self, directory: str | os.PathLike[str], split: str) -> None:
        directory = Path(directory)
        self.index = read_index(directory)
        if split not in self.index["splits"]:
            known = ", ".join(sorted(self.index["splits"]))
            raise ShardError(f"no split {split!r} in {directory}; available splits: {known}")
        entry = self.index["splits"][split]
        self.spec = TokenSpec.from_json(self.index["spec"])
        self.has_labels: bool = entry["has_labels"]
        self._tokens: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        for shard in entry["shards"]:
            path = directory / shard["file"]
            verify_shard(path, shard["sha256"])
            try:
                with safe_open(path, framework="pt") as f:
                    tokens = f.get_tensor("tokens")
                    if self.has_labels:
                        self._labels.append(f.get_tensor("labels"))
            except (SafetensorError, OSError) as err:
                raise ShardError(f"token shard {path} is unreadable ({err}); {REPREPARE}") from None
            integral = not (
                tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool
            )
            if tuple(tokens.shape) != (shard["rows"], self.spec.seq_len) or not integral:
                raise ShardError(f"token shard {path} does not match its index; {REPREPARE}")
            self._tokens.append(tokens)
        # _ends[s] is one past the last global row of shard s.
        self._ends = torch.tensor([s["rows"] for s in entry["shards"]], dtype=torch.long).cumsum(0)
        self._len = int(entry["size"])

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens `LongTensor[L]` and label (0-d, -1 if unlabelled) of item `i`."""
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for {self._len} items")
        index = torch.tensor([i % self._len])
        labels = self.labels(index)
        label = labels[0] if labels is not None else torch.tensor(-1)
        return self.tokens(index)[0], label

    def tokens(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokens of items `indices: LongTensor[B]` as `LongTensor[B, L]`."""
        return self._gather(self._tokens, indices)

    def labels(self, indices: torch.Tensor) -> torch.Tensor | None:
        """Labels of items `indices: LongTensor[B]` as `LongTensor[B]`, None when unlabelled."""
        return self._gather(self._labels, indices) if self.has_labels else None

    def _gather(self, parts: list[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self._len):
            raise IndexError(f"indices must be in [0, {self._len}), got {indices.tolist()}")
        if len(parts) == 1:
            return parts[0][indices].long()
        shard_of = torch.searchsorted(self._ends, indices, right=True)
        starts = self._ends - torch.tensor([len(p) for p in parts])
        out = torch.empty((len(indices), *parts[0].shape[1:]), dtype=torch.long)
        for s in shard_of.unique().tolist():
            mask = shard_of == s
            out[mask] = parts[s][indices[mask] - starts[s]].long()
        return out


class BatchOrder:
    """A deterministic, resumable stream of item indices that runs over epochs without end.

    Each epoch is a permutation of `range(num_items)` drawn from `seed + epoch`; rank `r` of
    `world_size` takes the strided slice `perm[r::world_size]` of its first
    `world_size * (num_items // world_size)` entries, so every rank sees the same number of items
    per epoch and all ranks share one `state_dict()`.
    """

    def __init__(
        self, num_items: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}"
            )
        if num_items < world_size:
            raise ValueError(
                f"need at least one item per rank, got {num_items} items for {world_size} ranks"
            )
        self.num_items = num_items
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.per_rank = num_items // world_size
        self.epoch = 0
        self.position = 0
        self._order: tuple[int, torch.Tensor] | None = None

    def _epoch_order(self) -> torch.Tensor:
        """This rank's indices for the current epoch, `LongTensor[per_rank]`."""
        if self._order is None or self._order[0] != self.epoch:
            if self.shuffle:
                generator = torch.Generator().manual_seed(self.seed + self.epoch)
                perm = torch.randperm(self.num_items, generator=generator)
            else:
                perm = torch.arange(self.num_items)
            order = perm[: self.per_rank * self.world_size][self.rank :: self.world_size]
            self._order = (self.epoch, order)
        return self._order[1]

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next indices, `LongTensor[batch_size]`, running on into the next epoch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        pieces = []
        needed = batch_size
        while needed:
            take = min(needed, self.per_rank - self.position)
            pieces.append(self._epoch_order()[self.position : self.position + take])
            self.position += take
            needed -= take
            if self.position == self.per_rank:
                self.epoch += 1
                self.position = 0
        return torch.cat(pieces)

    def state_dict(self) -> dict[str, int]:
        """Where the stream stands, JSON-ready."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a `state_dict()`."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position < self.per_rank:
            raise ValueError(
                f"sampler state {state} does not fit {self.per_rank} items per rank; "
                "resume with the same data and world size"
            )
        self.epoch, self.position = epoch, position


def _check_split(
    name: str, tokens: torch.Tensor, labels: torch.Tensor | None, spec: TokenSpec
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate one split's inputs; return them as CPU LongTensors."""
    if not _SPLIT_NAME.fullmatch(name):
        raise ShardError(
            f"split name {name!r} must be letters, digits or underscores, e.g. 'train'"
        )
    if not _is_int_tensor(tokens) or tokens.dim() != 2:
        got = (
            f"{tokens.dtype} {list(tokens.shape)}"
            if isinstance(tokens, torch.Tensor)
            else type(tokens).__name__
        )
        raise ShardError(f"split {name!r}: tokens must be an integer tensor [N, L], got {got}")
    if len(tokens) == 0:
        raise ShardError(f"split {name!r} is empty; leave it out or give it at least one item")
    if tokens.shape[1] != spec.seq_len:
        raise ShardError(
            f"split {name!r}: tokens have length {tokens.shape[1]}, the codec's token shape "
            f"{list(spec.token_shape)} needs {spec.seq_len}"
        )
    tokens = tokens.detach().cpu().long()
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= spec.vocab_size:
        raise ShardError(
            f"split {name!r}: token ids must be in [0, {spec.vocab_size}), "
            f"found values in [{low}, {high}]"
        )
    if labels is None:
        return tokens, None
    if not _is_int_tensor(labels) or labels.shape != (len(tokens),):
        raise ShardError(
            f"split {name!r}: labels must be an integer tensor [{len(tokens)}], one per item"
        )
    labels = labels.detach().cpu().long()
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (spec.num_classes and high >= spec.num_classes):
        bound = f"[0, {spec.num_classes})" if spec.num_classes else ">= 0"
        raise ShardError(f"split {name!r}: labels must be {bound}, found values in [{low}, {high}]")
    return tokens, labels


def _is_int_tensor(x: object) -> bool:
    return isinstance(x, torch.Tensor) and not (
        x.is_floating_point() or x.is_complex() or x.dtype == torch.bool
    )
