"""Text data sets: each split is one character stream cut into chunks of `CHUNK` characters.

Items are strings of exactly `CHUNK` characters except the last of a split, which may be shorter
(the codec pads it), so every sequence but the corpus's last is a full window of the stream.
Joining a split's items gives its text back.
"""

from __future__ import annotations

import json
from pathlib import Path

from lcmd_core.plugins import DataNotFoundError, PluginError

CHUNK = 256
TEXT8_SOURCE = "http://mattmahoney.net/dc/text8.zip (unzip it into DATA_ROOT/text8)"
TEXT8_SPLIT = (90_000_000, 95_000_000)  # train | valid | test boundaries, the standard split
FILES_SOURCE = "your own UTF-8 *.txt files or *.jsonl files with a 'text' field under DATA_ROOT"
FRACTIONS = (0.90, 0.95)  # train | valid | test boundaries of a text_files corpus


def chunks(text: str, size: int = CHUNK) -> list[str]:
    """`text` cut into consecutive pieces of `size` characters (the last may be shorter)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def read_utf8(path: Path) -> str:
    """The text of a UTF-8 file; a one-line PluginError when it is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise PluginError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); convert it to UTF-8"
        ) from None


def split_text(text: str, split: str, bounds: tuple[int, int]) -> str:
    """The `train`/`valid`/`test` part of `text` cut at the character offsets `bounds`."""
    start, stop = {"train": (0, bounds[0]), "valid": bounds, "test": (bounds[1], len(text))}[split]
    return text[start:stop]


def read_text8(root: Path | None, split: str) -> tuple[list[str], None]:
    """text8 (`DATA_ROOT/text8`, 100M characters a–z and space): the 90M/5M/5M split."""
    path = (root or Path(".")) / "text8"
    if not path.is_file():
        raise DataNotFoundError(f"text8: no file {path}; get it from {TEXT8_SOURCE}")
    text = read_utf8(path)
    if not text:
        raise PluginError(f"text8: {path} is empty")
    return chunks(split_text(text, split, TEXT8_SPLIT)), None


def _jsonl_texts(path: Path) -> list[str]:
    texts = []
    for number, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PluginError(f"{path}:{number}: not JSON ({err.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PluginError(f"{path}:{number}: expected an object with a string 'text' field")
        texts.append(record["text"])
    return texts


def read_corpus(root: Path) -> str:
    """Every `*.txt` and `*.jsonl` file under `root` (sorted, recursive) as one text.

    Documents (a file, a JSONL record) are joined with a blank line.
    """
    paths = sorted(p for p in root.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
    if not paths:
        raise DataNotFoundError(f"text_files: no *.txt or *.jsonl files under {root}")
    documents: list[str] = []
    for path in paths:
        documents.extend(_jsonl_texts(path) if path.suffix == ".jsonl" else [read_utf8(path)])
    text = "\n\n".join(d for d in documents if d)
    if not text.strip():
        raise PluginError(f"text_files: the files under {root} hold no text")
    return text


def read_text_files(root: Path | None, split: str) -> tuple[list[str], None]:
    """Your own corpus under DATA_ROOT, split 90/5/5 by position in the joined text."""
    text = read_corpus(root or Path("."))
    cut = tuple(round(f * len(text)) for f in FRACTIONS)
    return chunks(split_text(text, split, cut)), None
