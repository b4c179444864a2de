"""Text data sets: text8, a folder of .txt/JSONL files, the embedded Shakespeare plays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lcmd_text import corpus
from lcmd_text.corpus import CHUNK, read_text8, read_text_files
from lcmd_text.shakespeare import plain_text, read_shakespeare, split_of

from lcmd_core.plugins import DataNotFoundError, PluginError


def write_text8(root: Path, n: int) -> str:
    """A text8 file in its real format: one line of a–z and spaces, no newline."""
    words = ["anarchism", "originated", "as", "a", "term", "of", "abuse", "first", "used"]
    text = " " + " ".join(words[i % len(words)] for i in range(n))
    text = text[:n]
    (root / "text8").write_bytes(text.encode("ascii"))
    return text


def test_text8_standard_split_and_chunks(tmp_path: Path, monkeypatch) -> None:
    text = write_text8(tmp_path, 3000)
    monkeypatch.setattr(corpus, "TEXT8_SPLIT", (2000, 2500))  # 90M/5M/5M, scaled down
    train, labels = read_text8(tmp_path, "train")
    assert labels is None
    assert "".join(train) == text[:2000]
    assert [len(c) for c in train] == [CHUNK] * 7 + [2000 - 7 * CHUNK]
    assert "".join(read_text8(tmp_path, "valid")[0]) == text[2000:2500]
    assert "".join(read_text8(tmp_path, "test")[0]) == text[2500:]


def test_missing_text8_names_the_file_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"text8: no file .*text8; get it from http"):
        read_text8(tmp_path, "train")


def test_text_files_join_txt_and_jsonl_and_split_by_position(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("First file.\n" * 50, encoding="utf-8")
    records = [{"text": "Record one."}, {"text": "Record two, ünïcode.", "id": 2}]
    (tmp_path / "b" / "c.jsonl").write_text(
        "\n".join(map(json.dumps, records)) + "\n\n", encoding="utf-8"
    )
    (tmp_path / "ignored.csv").write_text("x,y", encoding="utf-8")
    full = "First file.\n" * 50 + "\n\nRecord one.\n\nRecord two, ünïcode."
    parts = ["".join(read_text_files(tmp_path, s)[0]) for s in ("train", "valid", "test")]
    assert "".join(parts) == full
    assert len(parts[0]) == round(0.9 * len(full))


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("latin1.txt", "café".encode("latin-1"), r"latin1.txt: not UTF-8 text \(byte 3"),
        ("empty.txt", b"  \n", "hold no text"),
        ("bad.jsonl", b'{"text": 1}\n', r"bad.jsonl:1: expected an object with a string 'text'"),
        ("bad.jsonl", b"{oops\n", r"bad.jsonl:1: not JSON"),
    ],
)
def test_bad_text_files_are_one_line_errors(tmp_path: Path, name, content, match) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(PluginError, match=match) as err:
        read_text_files(tmp_path, "train")
    assert "\n" not in str(err.value)


def test_folder_without_text_files_is_data_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"no \*.txt or \*.jsonl files under"):
        read_text_files(tmp_path, "train")


MARKDOWN = """# Hamlet

## ACT I

### SCENE I. Elsinore. A platform before the castle.

_FRANCISCO at his post. Enter to him
BERNARDO_

**BERNARDO**$
Who's there?

**FRANCISCO**$
_\\[Aside]_ Nay, answer me:$
stand, and unfold yourself\\--

*Exit.*

I'll cross it, though it blast me.
""".replace("$", "  ")  # Markdown line breaks: two trailing spaces


def test_markdown_becomes_dialogue_with_speaker_names() -> None:
    assert plain_text(MARKDOWN) == (
        "BERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me:\nstand, and unfold yourself--\n\n"
        "I'll cross it, though it blast me."
    )


def test_shakespeare_is_split_by_play() -> None:
    splits = {s: "".join(read_shakespeare(None, s)[0]) for s in ("train", "valid", "test")}
    assert split_of("macbeth") == "test" and split_of("hamlet") == "train"
    assert "MACBETH:" in splits["test"] and "MACBETH:" not in splits["train"]
    assert "HAMLET:" in splits["train"] and "HAMLET:" not in splits["valid"]
    assert len(splits["train"]) > 4_000_000 and 100_000 < len(splits["valid"]) < 400_000
    assert not any(c in splits["train"] for c in "*_#\\")
