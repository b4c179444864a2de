"""Writing decoded text samples to files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_texts(items: Sequence[str], directory: Path) -> list[Path]:
    """Write each text to `directory/sample-NNNN.txt` (UTF-8); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(items):
        path = directory / f"sample-{i:04d}.txt"
        path.write_text(text if text.endswith("\n") else f"{text}\n", encoding="utf-8")
        paths.append(path)
    return paths
