"""The `char` codec: one token per character, vocabulary fitted from the training text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.plugins import PluginError
from lcmd_text.corpus import CHUNK
from lcmd_text.prompt import PromptError, literal_text, prompt_tokens
from lcmd_text.writing import write_texts

PAD, UNK = 0, 1
UNK_CHAR = "\ufffd"
STATE_FILE = "char_codec.json"


class CharCodec:
    """Strings of at most `seq_len` characters ↔ `LongTensor[N, seq_len]`.

    Id 0 pads the end of a short (last) chunk, id 1 stands for any character `fit` did not see
    (decoded as U+FFFD), ids 2.. are the fitted characters in code-point order: text8 gives its
    27 symbols, so a vocabulary of 29. In-vocabulary text round-trips exactly.
    """

    name = "char"
    needs_fit = True

    def __init__(self, seq_len: int = CHUNK) -> None:
        if seq_len < 1:
            raise PluginError(f"char codec: seq_len must be at least 1, got {seq_len}")
        self.seq_len = seq_len
        self._chars = ""
        self._ids: dict[str, int] = {}

    def _fitted(self) -> str:
        if not self._chars:
            raise PluginError("char codec is not fitted: call fit(items) or load(directory)")
        return self._chars

    def _set_chars(self, chars: str) -> None:
        self._chars = chars
        self._ids = {char: i + 2 for i, char in enumerate(chars)}

    @property
    def token_spec(self) -> TokenSpec:
        chars = self._fitted()
        return TokenSpec(
            vocab_size=len(chars) + 2,
            token_shape=(self.seq_len,),
            fingerprint=fingerprint_of(self.name, self.seq_len, chars),
        )

    def fit(self, items: Sequence[str]) -> None:
        """Take the vocabulary from the characters of `items`."""
        chars = "".join(sorted(set().union(*map(set, items)))) if items else ""
        if not chars:
            raise PluginError("char codec: the training text is empty")
        self._set_chars(chars)

    def _ids_of(self, text: str) -> list[int]:
        return [self._ids.get(c, UNK) for c in text]

    def encode(self, items: Sequence[str]) -> torch.Tensor:
        """Strings → `LongTensor[N, seq_len]`, padded after the last character."""
        self._fitted()
        tokens = torch.full((len(items), self.seq_len), PAD, dtype=torch.long)
        for row, item in enumerate(items):
            if len(item) > self.seq_len:
                raise PluginError(
                    f"char codec: an item of {len(item)} characters is longer than "
                    f"seq_len={self.seq_len}"
                )
            tokens[row, : len(item)] = torch.tensor(self._ids_of(item), dtype=torch.long)
        return tokens

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """`LongTensor[N, seq_len]` → strings; PAD is dropped wherever it appears."""
        table = ["", UNK_CHAR, *self._fitted()]
        return ["".join(table[i] for i in row) for row in tokens.tolist()]

    def prompt_tokens(self, prompt: str, seq_len: int) -> torch.Tensor:
        """`LongTensor[seq_len]` of a prompt (see `lcmd_text.prompt`), −1 where free."""
        unknown = sorted(set(literal_text(prompt)) - self._ids.keys())
        if unknown:
            raise PromptError(
                f"codec char: the prompt has characters outside the vocabulary: "
                f"{''.join(unknown)!r}"
            )
        return prompt_tokens(prompt, seq_len, self._ids_of, self.name)

    def write(self, items: Sequence[str], directory: Path) -> list[Path]:
        """One UTF-8 file per sample, `sample-0000.txt`, ..."""
        return write_texts(items, directory)

    def save(self, directory: Path) -> None:
        """Write the vocabulary and sequence length to `char_codec.json`."""
        state = {"codec": self.name, "seq_len": self.seq_len, "chars": self._fitted()}
        (Path(directory) / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Restore what `save` wrote."""
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise PluginError(f"char codec: no {STATE_FILE} in {directory}")
        state = json.loads(path.read_text(encoding="utf-8"))
        self.seq_len = int(state["seq_len"])
        self._set_chars(state["chars"])
