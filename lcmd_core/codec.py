"""What a plugin's codec promises the core: a token spec and items ↔ tokens."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class TokenSpec:
    """Shape and vocabulary of a codec's tokens.

    `token_shape` is the grid the tokens come from: `(L,)` for sequences, `(H, W)` for images and
    adjacency grids; the core flattens it to `seq_len = prod(token_shape)` and uses the grid for
    positional encodings. Tokens that come from no grid (the upper triangle of an adjacency
    matrix) give `positions` instead: one integer coordinate tuple per token, all of one
    dimension, e.g. `((0, 1), (0, 2), (1, 2))`; the encodings then use those coordinates.
    `fingerprint` identifies the fitted codec: tokens from codecs with different fingerprints are
    not interchangeable.
    """

    vocab_size: int
    token_shape: tuple[int, ...]
    fingerprint: str
    num_classes: int = 0
    class_names: tuple[str, ...] = field(default=())
    positions: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {self.vocab_size}")
        if not self.token_shape or any(int(n) < 1 for n in self.token_shape):
            raise ValueError(f"token_shape must be positive sizes, got {self.token_shape}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        object.__setattr__(self, "token_shape", tuple(int(n) for n in self.token_shape))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.positions is not None:
            positions = check_positions(self.positions, self.seq_len)
            object.__setattr__(self, "positions", positions)

    @property
    def seq_len(self) -> int:
        """Number of token positions L."""
        return math.prod(self.token_shape)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of this spec."""
        data = asdict(self)
        data["token_shape"] = list(self.token_shape)
        data["class_names"] = list(self.class_names)
        if self.positions is None:
            del data["positions"]  # specs without explicit positions read as before
        else:
            data["positions"] = [list(p) for p in self.positions]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenSpec:
        """Inverse of `to_json`."""
        return cls(
            vocab_size=int(data["vocab_size"]),
            token_shape=tuple(data["token_shape"]),
            fingerprint=str(data["fingerprint"]),
            num_classes=int(data.get("num_classes", 0)),
            class_names=tuple(data.get("class_names", ())),
            positions=data.get("positions"),
        )


def check_positions(
    positions: Sequence[Sequence[int]], seq_len: int
) -> tuple[tuple[int, ...], ...]:
    """Token coordinates as int tuples; ValueError unless one per token, all of one dimension."""
    coords = tuple(tuple(int(c) for c in p) for p in positions)
    if len(coords) != seq_len:
        raise ValueError(
            f"positions must give one coordinate per token ({seq_len}), got {len(coords)}"
        )
    dims = {len(c) for c in coords}
    if len(dims) != 1 or 0 in dims:
        raise ValueError(
            f"positions must all have one positive dimension, got dimensions {sorted(dims)}"
        )
    return coords


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (codec name, options, fitted state)."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@runtime_checkable
class Codec(Protocol):
    """Turns a modality's items into integer tokens and back.

    `encode(items) -> LongTensor[N, L]` with values in `[0, vocab_size)`, `decode(tokens) -> items`.
    A trainable codec (VQ-VAE, BPE) is fitted once by `fit(items)` before `token_spec` is valid.

    Optional capabilities are the protocols `PromptCodec` (prompts for `lcmd sample --prompt`)
    and `StreamCodec` (a split encoded as one token stream).
    """

    name: str

    @property
    def token_spec(self) -> TokenSpec: ...

    @property
    def needs_fit(self) -> bool: ...

    def fit(self, items: Sequence[Any]) -> None: ...

    def encode(self, items: Sequence[Any]) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor) -> list[Any]: ...

    def write(self, items: Sequence[Any], directory: Path) -> list[Path]: ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


@runtime_checkable
class PromptCodec(Protocol):
    """A codec that takes prompts: `prompt_tokens(prompt, seq_len) -> LongTensor[seq_len]`.

    Turns a user's prompt (`lcmd sample --prompt`) into the tokens to keep, −1 at free
    positions; the sampler clamps the kept ones (prefix completion, infilling). Raises a
    `PluginError` for a prompt the codec cannot encode. A codec without it takes no prompts.
    """

    def prompt_tokens(self, prompt: str, seq_len: int) -> torch.Tensor: ...


@runtime_checkable
class StreamCodec(Protocol):
    """A codec that encodes an unlabelled split as one token stream cut into sequences:
    `encode_stream(items) -> LongTensor[N, seq_len]` (BPE over text); `prepare` uses it instead
    of `encode` when the split has no labels."""

    def encode_stream(self, items: Sequence[Any]) -> torch.Tensor: ...
