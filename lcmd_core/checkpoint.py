"""Checkpoints in a run directory, written so that a crash never leaves a bad latest one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .readback import CheckpointRecord, OptimizerRecord, check_schema, confined, read_json
from .run_dir import RunDir

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or corrupt."""


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as JSON to `path` via a temporary file and rename."""
    path = Path(path)
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def write_safetensors_atomic(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor]
) -> None:
    """Write `tensors` to a safetensors file at `path` via a temporary file and rename."""
    path = Path(path)
    _write_atomic(path, lambda tmp: save_file(_saveable(tensors), tmp))


def save_checkpoint(
    run: RunDir,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor] | None,
    optimizer: dict[str, Any],
    state: dict[str, Any],
    keep_last: int = 3,
) -> Path:
    """Write checkpoint `step` of `run` and prune all but the `keep_last` newest up to it.

    `model`/`ema` are state dicts, `optimizer` a torch optimizer's `state_dict()`, `state` any
    JSON-ready training state (e.g. the data position). RNG states are captured here. The
    checkpoint is built under a temporary name and renamed, so it is complete or absent.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    final = run.step_dir(step)
    tmp = run.checkpoints_dir / f".tmp-{final.name}-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        optimizer_tensors: dict[str, torch.Tensor] = {}
        optimizer_json = {
            "state": [
                [key, _pack(value, f"state.{key}", optimizer_tensors)]
                for key, value in optimizer["state"].items()
            ],
            "param_groups": _pack(optimizer["param_groups"], "param_groups", optimizer_tensors),
        }
        files = {"model.safetensors": model, "optimizer.safetensors": optimizer_tensors}
        if ema is not None:
            files["ema.safetensors"] = ema
        for name, tensors in files.items():
            save_file(_saveable(tensors), tmp / name)
        (tmp / "optimizer.json").write_text(json.dumps(optimizer_json) + "\n")
        checksums = {name: sha256_file(tmp / name) for name in [*files, "optimizer.json"]}
        # state.json is written last: its presence marks a complete checkpoint.
        record = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "files": checksums,
            "rng": capture_rng(),
            "state": state,
        }
        (tmp / "state.json").write_text(json.dumps(record, indent=2) + "\n")
        for path in tmp.iterdir():
            fsync_path(path)
        fsync_path(tmp)
        replace_dir(tmp, final)
    except OSError as err:  # disk full, read-only or vanished directory
        shutil.rmtree(tmp, ignore_errors=True)
        latest = run.latest()
        kept = f"the previous checkpoint {latest} is intact" if latest else "no checkpoint yet"
        raise CheckpointError(
            f"could not write checkpoint {final} ({err.strerror or err}); {kept}"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Only checkpoints up to this step are pruned: later ones belong to another branch of the run.
    older = [path for path in run.checkpoints() if _step_of(path) <= step]
    for path in older[:-keep_last]:
        shutil.rmtree(path)
    return final


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint directory onto the CPU, verifying every file's checksum.

    Returns `model`, `ema` (None if not saved), `optimizer` (for `Optimizer.load_state_dict`),
    `state` (as given to `save_checkpoint`), `step` and `rng` (for `restore_rng`).
    """
    path = Path(path)
    record = _verified_record(path, None)
    optimizer_path = path / "optimizer.json"
    optimizer_json = check_schema(
        OptimizerRecord,
        _read_json(optimizer_path),
        optimizer_path,
        CheckpointError,
        resume_hint(path),
    )
    optimizer_tensors = _load_tensors(path / "optimizer.safetensors")
    try:
        optimizer = {
            "state": {
                key: _unpack(value, optimizer_tensors) for key, value in optimizer_json.state
            },
            "param_groups": _unpack(optimizer_json.param_groups, optimizer_tensors),
        }
    except KeyError as err:
        raise CheckpointError(
            f"{optimizer_path} refers to tensor {err} that optimizer.safetensors lacks; "
            f"{resume_hint(path)}"
        ) from None
    return {**_weights(path, record), "optimizer": optimizer, "rng": record["rng"]}


def load_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The weights of a checkpoint for sampling: `model`, `ema` (None if not saved), `state` and
    `step`, their files' checksums verified; the optimizer's files are neither read nor needed."""
    path = Path(path)
    return _weights(path, _verified_record(path, WEIGHT_FILES))


WEIGHT_FILES = ("model.safetensors", "ema.safetensors")


def _verified_record(path: Path, names: tuple[str, ...] | None) -> dict[str, Any]:
    """`state.json` of a checkpoint, after checking the files it lists (`names` of them only)."""
    record_path = path / "state.json"
    raw = _read_json(record_path)
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{record_path} has checkpoint format version {version}, "
            f"this lcmd reads version {FORMAT_VERSION}; resume with a matching lcmd version"
        )
    record = check_schema(CheckpointRecord, raw, record_path, CheckpointError, resume_hint(path))
    needed = {"model.safetensors", *(["optimizer.safetensors"] if names is None else [])}
    if missing := sorted(needed - set(record.files)):
        raise CheckpointError(f"{record_path} lists no {missing[0]}; {resume_hint(path)}")
    for name, digest in record.files.items():
        file = confined(path, name, CheckpointError, resume_hint(path))
        if names is not None and name not in names:
            continue
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing; {resume_hint(path)}")
        if sha256_file(file) != digest:
            raise CheckpointError(
                f"checkpoint file {file} is corrupt (checksum mismatch); {resume_hint(path)}"
            )
    return record.model_dump()


def _weights(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    has_ema = "ema.safetensors" in record["files"]
    return {
        "model": _load_tensors(path / "model.safetensors"),
        "ema": _load_tensors(path / "ema.safetensors") if has_ema else None,
        "state": record["state"],
        "step": record["step"],
    }


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators, JSON-ready."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
        "cuda": [_b64(s) for s in cuda],
    }


def restore_rng(state: dict[str, Any], source: Path | None = None) -> None:
    """Set the global generators to a `capture_rng()` state; a malformed one (from `source`)
    is a CheckpointError and leaves them as they were."""
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        _set_rng(state)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, OverflowError) as err:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
        where = f"{source}: " if source else ""
        fix = f"; {resume_hint(source.parent)}" if source else ""
        raise CheckpointError(
            f"{where}malformed RNG state ({type(err).__name__}: {err}){fix}"
        ) from None


def _set_rng(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_unb64(state["torch"]))
    if torch.cuda.is_available():
        for device, encoded in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_unb64(encoded), device)


def append_metrics(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
    """Append `record` as one JSON line to `path` and flush it."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished directory `src` to `dst`, replacing an existing `dst`.

    rename(2) cannot replace a non-empty directory, so an old `dst` is moved aside first; a crash
    between the two renames leaves `dst` missing, never half-written.
    """
    if dst.exists():
        old = dst.parent / f".{dst.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)
    fsync_path(dst.parent)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or directory's contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call `write(tmp)` on a temporary sibling of `path`, fsync it and rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def _saveable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no storage shared between them, as safetensors requires."""
    out = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if not tensor.is_contiguous() or tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _pack(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """`value` as JSON, each tensor moved into `tensors` under `name` and left as a reference."""
    if isinstance(value, torch.Tensor):
        tensors[name] = value
        return {"__tensor__": name}
    if isinstance(value, dict):
        return {key: _pack(item, f"{name}.{key}", tensors) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_pack(item, f"{name}.{i}", tensors) for i, item in enumerate(value)]
    return value


def _unpack(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `_pack`."""
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            return tensors[value["__tensor__"]]
        return {key: _unpack(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_unpack(item, tensors) for item in value]
    return value


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(
            f"checkpoint file {path} is unreadable ({error}); {resume_hint(path.parent)}"
        ) from None


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path.parent} ({path.name} missing); pass a checkpoint "
            "directory such as checkpoints/step-0001000"
        )
    value = read_json(path, CheckpointError, resume_hint(path.parent))
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path} holds a {type(value).__name__}, not a record; {resume_hint(path.parent)}"
        )
    return value


def resume_hint(checkpoint: Path) -> str:
    """What to do about a damaged checkpoint directory."""
    return f"delete {checkpoint} to resume from the previous checkpoint"


def _step_of(path: Path) -> int:
    return int(path.name.removeprefix("step-"))


def _b64(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def _unb64(encoded: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(encoded)), dtype=torch.uint8)
