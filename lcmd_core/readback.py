"""Every JSON file lcmd reads back from disk goes through here: bounded, typed, confined.

`read_json` bounds the size and nesting of a file and turns every decoding failure into one
line naming the file; `check_schema` validates the decoded value against a pydantic model of
that file; `confined` keeps a file name an index or a record holds inside its directory. The
schemas (`CheckpointRecord`, `TrainingState`, `OptimizerRecord`, `ShardIndex`, `CodecMarker`)
describe the files lcmd writes; anything else is refused with what to do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_JSON_BYTES = 256 * 2**20  # the largest JSON file lcmd reads back (an optimizer record)
MAX_DEPTH = 64  # nesting deeper than any file lcmd writes
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
SHA256 = r"^[0-9a-f]{64}$"
BIG = 2**62  # integer fields: counts, steps, sizes

Model = TypeVar("Model", bound=BaseModel)


def read_json(path: Path, error: type[ValueError], fix: str) -> Any:
    """The JSON value in `path`, or `error("<path> ... (<why>); <fix>")` — never a traceback."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise error(f"{path} is {size:,} bytes, more than lcmd ever writes there; {fix}")
        value = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise error(f"{path} cannot be read ({err.strerror or err}); {fix}") from None
    except RecursionError:
        raise error(f"{path} is nested too deeply to be a file lcmd wrote; {fix}") from None
    except ValueError as err:  # JSON syntax, UTF-8, integers beyond Python's digit limit
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(f"{path} is not valid JSON ({first}); {fix}") from None
    if _depth(value) > MAX_DEPTH:
        raise error(f"{path} is nested too deeply to be a file lcmd wrote; {fix}")
    return value


def check_schema(
    model: type[Model], value: Any, path: Path, error: type[ValueError], fix: str
) -> Model:
    """`value` as a `model`, or one line naming the first field that is wrong."""
    try:
        return model.model_validate(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise error(f"{path}: {where}: {first['msg']}; {fix}") from None


def confined(directory: Path, name: str, error: type[ValueError], fix: str) -> Path:
    """`directory / name` for a plain file name; a path, `..` or an absolute name is refused."""
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or set(name) == {"."}:
        raise error(f"{directory}: {name!r} is not a file name inside it; {fix}")
    return directory / name


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


def _count(default: Any = ...) -> Any:
    """A non-negative integer field that takes only integers (not "5", not True)."""
    return Field(default, ge=0, le=BIG, strict=True)


class CheckpointRecord(_Record):
    """`checkpoints/step-N/state.json`: what the checkpoint holds and how to check it."""

    format_version: int = Field(strict=True)
    step: int = _count()
    files: dict[str, str]
    rng: dict[str, Any]
    state: dict[str, Any]


class BatchOrderState(_Record):
    epoch: int = _count()
    position: int = _count()


class TrainingState(_Record):
    """The `state` of a checkpoint record: codec fingerprint, process, counters, data order."""

    fingerprint: str
    process: str = "continuous"
    ema_updates: int = _count(0)
    nonfinite_steps: int = _count(0)
    batch_order: BatchOrderState | None = None
    sampler: BatchOrderState | None = None  # checkpoints written before the rename


class OptimizerRecord(_Record):
    """`optimizer.json`: the optimizer's state by parameter id, and its parameter groups."""

    state: list[tuple[int, dict[str, Any]]]
    param_groups: list[dict[str, Any]]


class ShardEntry(_Record):
    file: str
    rows: int = _count()
    sha256: str = Field(pattern=SHA256)


class SplitEntry(_Record):
    size: int = _count()
    has_labels: bool
    shards: list[ShardEntry]


class ShardIndex(_Record):
    """`shards/index.json`: the token spec and, per split, its shard files with checksums."""

    format: str
    format_version: int
    codec: str
    spec: dict[str, Any]
    token_dtype: str
    splits: dict[str, SplitEntry]


class CodecMarker(_Record):
    """`codec/codec.json`: which codec of which plugin was fitted, with which options."""

    plugin: str
    dataset: str
    codec: str
    options: dict[str, Any]
