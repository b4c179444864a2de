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
    positional encodings. `fingerprint` identifies the fitted codec: tokens from codecs with
    different fingerprints are not interchangeable.
    """

    vocab_size: int
    token_shape: tuple[int, ...]
    fingerprint: str
    num_classes: int = 0
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {self.vocab_size}")
        if not self.token_shape or any(int(n) < 1 for n in self.token_shape):
            raise ValueError(f"token_shape must be positive sizes, got {self.token_shape}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
        object.__setattr__(self, "token_shape", tuple(int(n) for n in self.token_shape))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def seq_len(self) -> int:
        """Number of token positions L."""
        return math.prod(self.token_shape)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of this spec."""
        data = asdict(self)
        data["token_shape"] = list(self.token_shape)
        data["class_names"] = list(self.class_names)
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
        )


def fingerprint_of(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (codec name, options, fitted state)."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@runtime_checkable
class Codec(Protocol):
    """Turns a modality's items into integer tokens and back.

    `encode(items) -> LongTensor[N, L]` with values in `[0, vocab_size)`, `decode(tokens) -> items`.
    A trainable codec (VQ-VAE, BPE) is fitted once by `fit(items)` before `token_spec` is valid.
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
