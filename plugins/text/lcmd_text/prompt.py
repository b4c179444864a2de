"""Prompts for completion and infilling: literal text with `{gap:N}` holes.

`"ROMEO:\\n{gap:40}\\nJULIET:"` keeps `ROMEO:\\n` at the start, leaves 40 positions free, keeps
`\\nJULIET:` after them; every position after the last literal is free too. Positions are tokens
of the codec (characters for `char`, BPE tokens for `bpe`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from lcmd_core.plugins import PluginError

GAP = re.compile(r"\{gap:(\d+)\}")


class PromptError(PluginError):
    """A prompt the codec cannot encode; the message is for the user."""


def parse_prompt(prompt: str) -> list[str | int]:
    """Literal strings and gap lengths in order: `"a{gap:3}b"` → `["a", 3, "b"]` (no empties)."""
    parts: list[str | int] = []
    for i, piece in enumerate(GAP.split(prompt)):
        if i % 2:
            parts.append(int(piece))
        elif piece:
            parts.append(piece)
    return parts


def _positions(prompt: str, encode: Callable[[str], list[int]]) -> int:
    """How many positions a prompt takes, its gaps counted without being built."""
    return sum(
        part if isinstance(part, int) else len(encode(part)) for part in parse_prompt(prompt)
    )


def literal_text(prompt: str) -> str:
    """The characters a prompt keeps (its `{gap:N}` holes removed)."""
    return GAP.sub("", prompt)


def prompt_tokens(
    prompt: str, seq_len: int, encode: Callable[[str], list[int]], codec: str
) -> torch.Tensor:
    """`LongTensor[seq_len]` of a prompt: literal tokens from `encode`, −1 at free positions."""
    known: list[int] = []
    for part in parse_prompt(prompt):
        # A gap longer than the sequence is refused below without building it.
        known.extend([-1] * min(part, seq_len + 1) if isinstance(part, int) else encode(part))
        if len(known) > seq_len:
            break
    if len(known) > seq_len:
        taken = _positions(prompt, encode)
        raise PromptError(
            f"codec {codec}: the prompt takes {taken} positions, more than the "
            f"sequence length {seq_len}"
        )
    if not any(token >= 0 for token in known):
        raise PromptError(f"codec {codec}: the prompt has no text to keep")
    return torch.tensor(known + [-1] * (seq_len - len(known)), dtype=torch.long)
