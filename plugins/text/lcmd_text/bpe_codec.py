"""The `bpe` codec: byte-level BPE from Hugging Face `tokenizers`, trained or given as a file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.plugins import PluginError
from lcmd_text.corpus import CHUNK
from lcmd_text.prompt import prompt_tokens
from lcmd_text.writing import write_texts

TOKENIZER_FILE = "tokenizer.json"
STATE_FILE = "bpe_codec.json"


def train_tokenizer(texts: Sequence[str], vocab_size: int):  # -> tokenizers.Tokenizer
    """A byte-level BPE tokenizer trained on `texts` (lossless: no normalizer, no prefix space)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


class BPECodec:
    """Strings ↔ `LongTensor[N, seq_len]` of byte-level BPE tokens.

    A split is encoded as one token stream cut into `seq_len` tokens (`encode_stream`, padded
    only at the end); `encode` maps each string to its own padded row (for a single text).

    `fit` trains a tokenizer of `vocab_size` tokens on the training text, or loads
    `tokenizer_file` when one is given (a `tokenizer.json` of any Hugging Face tokenizer; the
    round trip is exact only if it is lossless). The id after the tokenizer's last pads.
    English takes ~3-4 characters a token, so the default `seq_len` of 256 holds ~900
    characters; `encode` of a string that needs more tokens is an error.
    """

    name = "bpe"
    needs_fit = True

    def __init__(
        self, seq_len: int = CHUNK, vocab_size: int = 1024, tokenizer_file: str | None = None
    ) -> None:
        if seq_len < 1 or vocab_size < 257:
            raise PluginError(
                f"bpe codec: need seq_len >= 1 and vocab_size >= 257, got {seq_len}, {vocab_size}"
            )
        self.seq_len, self.vocab_size, self.tokenizer_file = seq_len, vocab_size, tokenizer_file
        self._tokenizer = None

    @property
    def tokenizer(self):  # -> tokenizers.Tokenizer
        if self._tokenizer is None:
            raise PluginError("bpe codec is not fitted: call fit(items) or load(directory)")
        return self._tokenizer

    @property
    def pad(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def token_spec(self) -> TokenSpec:
        return TokenSpec(
            vocab_size=self.pad + 1,
            token_shape=(self.seq_len,),
            fingerprint=fingerprint_of(self.name, self.seq_len, self.tokenizer.to_str()),
        )

    def fit(self, items: Sequence[str]) -> None:
        """Load `tokenizer_file`, or train a tokenizer on `items`."""
        if self.tokenizer_file:
            from tokenizers import Tokenizer

            path = Path(self.tokenizer_file).expanduser()
            if not path.is_file():
                raise PluginError(f"bpe codec: tokenizer_file {path} does not exist")
            try:
                self._tokenizer = Tokenizer.from_file(str(path))
            except Exception as err:  # tokenizers raises a bare Exception for a bad file
                raise PluginError(f"bpe codec: cannot read {path}: {err}") from None
            return
        if not any(items):
            raise PluginError("bpe codec: the training text is empty")
        self._tokenizer = train_tokenizer(items, self.vocab_size)

    def _ids_of(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode(self, items: Sequence[str]) -> torch.Tensor:
        """Strings → `LongTensor[N, seq_len]`, padded after the last token."""
        tokens = torch.full((len(items), self.seq_len), self.pad, dtype=torch.long)
        encodings = self.tokenizer.encode_batch(list(items), add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            ids = encoding.ids
            if len(ids) > self.seq_len:
                raise PluginError(
                    f"bpe codec: a chunk of {len(items[row])} characters takes {len(ids)} tokens, "
                    f"more than seq_len={self.seq_len}; raise data.codec_options.seq_len"
                )
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens

    def encode_stream(self, items: Sequence[str]) -> torch.Tensor:
        """Consecutive pieces of one text → `LongTensor[M, seq_len]`: the token stream cut into
        sequences, padded only at its end (how `lcmd prepare` encodes a split)."""
        stream: list[int] = []
        for start in range(0, len(items), 1024):
            batch = self.tokenizer.encode_batch(list(items[start : start + 1024]),
                                                add_special_tokens=False)  # fmt: skip
            for encoding in batch:
                stream.extend(encoding.ids)
        rows = max(1, -(-len(stream) // self.seq_len))
        tokens = torch.full((rows * self.seq_len,), self.pad, dtype=torch.long)
        tokens[: len(stream)] = torch.tensor(stream, dtype=torch.long)
        return tokens.view(rows, self.seq_len)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """`LongTensor[N, seq_len]` → strings; PAD is dropped wherever it appears."""
        pad = self.pad
        rows = [[i for i in row if i != pad] for row in tokens.tolist()]
        return self.tokenizer.decode_batch(rows, skip_special_tokens=False)

    def prompt_tokens(self, prompt: str, seq_len: int) -> torch.Tensor:
        """`LongTensor[seq_len]` of a prompt (see `lcmd_text.prompt`); gaps count tokens."""
        return prompt_tokens(prompt, seq_len, self._ids_of, self.name)

    def write(self, items: Sequence[str], directory: Path) -> list[Path]:
        """One UTF-8 file per sample, `sample-0000.txt`, ..."""
        return write_texts(items, directory)

    def save(self, directory: Path) -> None:
        """Write `tokenizer.json` and the sequence length."""
        directory = Path(directory)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        state = {"codec": self.name, "seq_len": self.seq_len, "vocab_size": self.vocab_size}
        (directory / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Restore what `save` wrote."""
        from tokenizers import Tokenizer

        directory = Path(directory)
        if not (directory / STATE_FILE).is_file():
            raise PluginError(f"bpe codec: no {STATE_FILE} in {directory}")
        state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        self.seq_len, self.vocab_size = int(state["seq_len"]), int(state["vocab_size"])
        self._tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
