"""The `chars` codec: strings ↔ fixed-length character ids, padded with PAD (id 0)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lcmd_core.codec import TokenSpec, fingerprint_of

PAD = 0
VOCAB_FILE = "vocab.json"


class CharsCodec:
    """Strings of at most `length` characters ↔ `LongTensor[N, length]`.

    Id 0 is PAD; ids 1.. are the characters seen by `fit`, sorted. `decode` drops PAD wherever it
    appears, so a sample with PAD inside reads as the characters around it.
    """

    name = "chars"
    needs_fit = True

    def __init__(self, length: int = 32) -> None:
        if length < 1:
            raise ValueError(f"chars codec: length must be at least 1, got {length}")
        self.length = length
        self._chars = ""
        self._ids: dict[str, int] = {}

    def _fitted_chars(self) -> str:
        if not self._chars:
            raise ValueError("chars codec is not fitted: call fit(items) or load(directory) first")
        return self._chars

    def _set_chars(self, chars: str) -> None:
        self._chars = chars
        self._ids = {char: i + 1 for i, char in enumerate(chars)}

    @property
    def token_spec(self) -> TokenSpec:
        chars = self._fitted_chars()
        return TokenSpec(
            vocab_size=len(chars) + 1,
            token_shape=(self.length,),
            fingerprint=fingerprint_of(self.name, self.length, chars),
        )

    def fit(self, items: Sequence[str]) -> None:
        """Take the vocabulary from the characters of `items`."""
        chars = "".join(sorted(set("".join(items))))
        if not chars:
            raise ValueError("chars codec: cannot fit on items without characters")
        self._set_chars(chars)

    def encode(self, items: Sequence[str]) -> torch.Tensor:
        """Strings → `LongTensor[N, length]`, PAD after the last character."""
        self._fitted_chars()
        tokens = torch.full((len(items), self.length), PAD, dtype=torch.long)
        for row, item in enumerate(items):
            if not isinstance(item, str):
                raise ValueError(f"chars codec encodes strings, got {type(item).__name__}")
            if len(item) > self.length:
                raise ValueError(
                    f"chars codec: {item!r} has {len(item)} characters, more than length="
                    f"{self.length}; raise codec_options.length"
                )
            unknown = sorted(set(item) - self._ids.keys())
            if unknown:
                raise ValueError(
                    f"chars codec: {item!r} has characters outside the fitted vocabulary "
                    f"({''.join(unknown)!r}); fit the codec on data that contains them"
                )
            tokens[row, : len(item)] = torch.tensor([self._ids[c] for c in item], dtype=torch.long)
        return tokens

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """`LongTensor[N, length]` → strings without PAD."""
        chars = self._fitted_chars()
        if tokens.ndim != 2 or tokens.shape[1] != self.length:
            raise ValueError(
                f"chars codec decodes tokens of shape [N, {self.length}], got {list(tokens.shape)}"
            )
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) <= len(chars):
            raise ValueError(f"chars codec: token ids must lie in [0, {len(chars)}]")
        return ["".join(chars[i - 1] for i in row if i != PAD) for row in tokens.tolist()]

    def write(self, items: Sequence[str], directory: Path) -> list[Path]:
        """Write `samples.txt`, one string a line."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "samples.txt"
        path.write_text("".join(f"{item}\n" for item in items), encoding="utf-8")
        return [path]

    def save(self, directory: Path) -> None:
        """Write the vocabulary to `vocab.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {"codec": self.name, "length": self.length, "chars": self._fitted_chars()}
        (directory / VOCAB_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Restore the vocabulary (and length) saved by `save`."""
        path = Path(directory) / VOCAB_FILE
        if not path.is_file():
            raise ValueError(
                f"chars codec: no {VOCAB_FILE} in {directory}; save a fitted codec there"
            )
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("codec") != self.name:
            raise ValueError(f"chars codec: {path} holds codec {state.get('codec')!r}, not 'chars'")
        self.length = int(state["length"])
        self._set_chars(state["chars"])
