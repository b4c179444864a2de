"""The `unicode_names` data set: names of Unicode characters, read from the stdlib `unicodedata`.

Items are the names of code points 0..0x2FFFF (`"LATIN SMALL LETTER A"`) of at most 32 characters
from A–Z, 0–9, space and hyphen. Names generated from the code point carry no words and would
swamp the rest, so they are left out: those ending in the code point's hex (`CJK UNIFIED
IDEOGRAPH-4E00`, about 89,000) and the 11,172 `HANGUL SYLLABLE` names. About 25,700 names remain
(Unicode 14.0, Python 3.11); newer Pythons ship newer Unicode and add names.

Each name goes to `train`, `valid` or `test` (~90/5/5) by a hash of the name, so a name keeps its
split across Unicode versions. The label is the general-category group of the character: letter,
mark, number, punctuation, symbol, or other (separators and format characters, ~0.3 %).
"""

from __future__ import annotations

import functools
import hashlib
import unicodedata
from pathlib import Path

MAX_LENGTH = 32
SPLITS = ("train", "valid", "test")
CLASS_NAMES = ("letter", "mark", "number", "punctuation", "symbol", "other")
_CLASS_OF_CATEGORY = {"L": 0, "M": 1, "N": 2, "P": 3, "S": 4}
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -")
_HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)


def split_of(name: str) -> str:
    """The split a name belongs to: 1 in 20 `valid`, 1 in 20 `test`, the rest `train`."""
    bucket = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % 20
    return SPLITS[1] if bucket == 0 else SPLITS[2] if bucket == 1 else SPLITS[0]


@functools.cache
def all_names() -> tuple[tuple[str, int], ...]:
    """Every kept (name, label) pair, in code-point order."""
    pairs = []
    for code_point in range(0x30000):
        char = chr(code_point)
        name = unicodedata.name(char, "")
        if not name or len(name) > MAX_LENGTH or not _ALPHABET.issuperset(name):
            continue
        if name.endswith(f"-{code_point:04X}") or code_point in _HANGUL_SYLLABLES:
            continue
        pairs.append((name, _CLASS_OF_CATEGORY.get(unicodedata.category(char)[0], 5)))
    return tuple(pairs)


def read_unicode_names(data_root: Path | None, split: str) -> tuple[list[str], list[int]]:
    """Names and labels of one split; `data_root` is unused (the data ships with Python)."""
    if split not in SPLITS:
        raise ValueError(f"unicode_names has no split {split!r} (splits: {', '.join(SPLITS)})")
    pairs = [(name, label) for name, label in all_names() if split_of(name) == split]
    return [name for name, _ in pairs], [label for _, label in pairs]
