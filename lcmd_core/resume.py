"""Resuming a run: the config a resumed run keeps, and its latest checkpoint read back in.

A run continues exactly: weights, EMA, optimizer, RNG and data position come from the newest
complete checkpoint, and metric records logged after it are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import sharding
from .checkpoint import CheckpointError, load_checkpoint, restore_rng, resume_hint
from .codec import TokenSpec
from .config import ConfigError, RunConfig, validate_config
from .ema import EMA
from .readback import TrainingState, check_schema, read_json
from .run_dir import RunDir, RunError
from .shards import BatchOrder
from .tracking import read_records


def read_config(run: RunDir) -> RunConfig:
    """The config a run directory was started with (`config.json`)."""
    if not run.config_path.is_file():
        raise RunError(f"{run.path} is not a run directory (no config.json)")
    fix = "restore it from a copy, or start a new run"
    data = read_json(run.config_path, RunError, fix)
    if not isinstance(data, dict):
        raise RunError(f"{run.config_path} holds a {type(data).__name__}, not a config; {fix}")
    try:
        return validate_config(data)
    except ConfigError as err:
        raise RunError(f"{run.config_path}: {err}; {fix}") from None


# What a resumed run may change: how long it trains, what it logs and keeps, where the raw data
# lies, how it samples.
SAFE_ON_RESUME = (
    "train.max_steps",
    "train.keep_checkpoints",
    "train.log_to",
    "train.sample_every",
    "train.log_every",
    "data.data_root",
    "sample.",
)


def resumed_config(run: RunDir, requested: RunConfig) -> RunConfig:
    """The config a resumed run trains with: its own, with the requested values of the
    `SAFE_ON_RESUME` keys; any other difference is refused with the keys listed."""
    saved = read_config(run)
    if (saved.data.plugin, saved.data.dataset) != (
        requested.data.plugin,
        requested.data.dataset,
    ):
        raise RunError(
            f"{run.path} was trained on {saved.data.plugin}/{saved.data.dataset}, "
            f"not {requested.data.plugin}/{requested.data.dataset}"
        )
    old, new = _flat(saved.model_dump(mode="json")), _flat(requested.model_dump(mode="json"))
    changed = [key for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]
    unsafe = [key for key in changed if not key.startswith(SAFE_ON_RESUME)]
    if unsafe:
        shown = ", ".join(f"{key} {old.get(key)!r} → {new.get(key)!r}" for key in unsafe[:4])
        more = f" and {len(unsafe) - 4} more" if len(unsafe) > 4 else ""
        raise RunError(
            f"{run.path} was trained with another config ({shown}{more}); resume it with the "
            f"settings in {run.config_path} (e.g. `lcmd train --out {run.path} --resume`), or "
            "start a new run"
        )
    return requested


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` → `{"a.b": 1}` (lists and free-form mappings stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "codec_options":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_matches(
    checkpoint: Path, state: dict[str, Any], spec: TokenSpec, config: RunConfig, run: RunDir
) -> None:
    """Refuse a checkpoint trained with another codec or diffusion process than the run's (or
    whose training state is malformed)."""
    check_schema(
        TrainingState,
        state,
        checkpoint / "state.json",
        UnreadableCheckpoint,
        resume_hint(checkpoint),
    )
    saved_fp = state.get("fingerprint")
    if saved_fp != spec.fingerprint:
        raise CheckpointError(
            f"{checkpoint} was trained with codec fingerprint {saved_fp}, but the codec in "
            f"{run.codec_dir} has {spec.fingerprint}; use the matching run"
        )
    # Checkpoints from before the masked process have no "process": they are continuous.
    saved_process = state.get("process", "continuous")
    if saved_process != config.diffusion.process:
        raise CheckpointError(
            f"{checkpoint} was trained with diffusion.process={saved_process}, but "
            f"{run.config_path} says {config.diffusion.process}; use the matching run"
        )


def check_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse weights of the wrong kind (integer, bool or complex where `module` holds floats)
    or with NaN/Inf: loading would cast or spread them without a word."""
    expected = module.state_dict()
    for key, tensor in tensors.items():
        target = expected.get(key)
        if target is None or not target.is_floating_point():
            continue
        if not tensor.is_floating_point():
            raise UnreadableCheckpoint(
                f"{source}: {key} is {str(tensor.dtype).removeprefix('torch.')}, not floating "
                f"point; {resume_hint(source.parent)}"
            )
        if not bool(torch.isfinite(tensor).all()):
            raise UnreadableCheckpoint(
                f"{source}: {key} holds NaN or Inf; {resume_hint(source.parent)}"
            )


def load_into(
    module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path, run: RunDir
) -> None:
    """`module.load_state_dict(tensors)` (read from the checkpoint file `source`) after
    `check_weights`, a mismatch as one line naming the run's config."""
    check_weights(module, tensors, source)
    try:
        module.load_state_dict(tensors)
    except (RuntimeError, ValueError, KeyError) as err:
        raise _misfit(source.parent, run, err) from None


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint whose files are missing, corrupt or malformed (not one that misfits)."""


def restore_newest(run: RunDir, warn: Callable[[str], None], **parts: Any) -> dict[str, Any] | None:
    """`restore_training` from the newest checkpoint that reads back, telling `warn` about each
    newer one skipped; None when the run has no checkpoint. `parts` as for `restore_training`."""
    checkpoints = run.checkpoints()
    for checkpoint in reversed(checkpoints):
        try:
            return restore_training(checkpoint, run=run, **parts)
        except UnreadableCheckpoint as err:
            if checkpoint == checkpoints[0]:
                raise
            warn(f"skipping {checkpoint.name}: {str(err).split('; ')[0]}")
    return None


def restore_training(
    checkpoint: Path,
    *,
    model: torch.nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    spec: TokenSpec,
    config: RunConfig,
    run: RunDir,
    sharded: bool,
) -> dict[str, Any]:
    """Load `checkpoint` into model, EMA and optimizer; returns its state with `step` and `rng`.

    Under FSDP (`sharded`) every process cuts its own shards out of the whole tensors.
    """
    try:
        ckpt = load_checkpoint(checkpoint)
    except CheckpointError as err:
        raise UnreadableCheckpoint(str(err)) from None
    state = ckpt["state"]
    check_matches(checkpoint, state, spec, config, run)
    weights, ema_weights, optimizer_state = ckpt["model"], ckpt["ema"], ckpt["optimizer"]
    check_weights(model, weights, checkpoint / "model.safetensors")
    if ema_weights is not None:
        check_weights(ema.module, ema_weights, checkpoint / "ema.safetensors")
    try:
        if sharded:
            weights = sharding.shard_state(weights, model.state_dict())
            if ema_weights is not None:
                ema_weights = sharding.shard_state(ema_weights, ema.state_dict())
            optimizer_state = sharding.shard_optimizer_state(optimizer, optimizer_state)
        model.load_state_dict(weights)
        if ema_weights is not None:
            ema.load_state_dict(ema_weights, state["ema_updates"])
        optimizer.load_state_dict(optimizer_state)
    except (RuntimeError, ValueError, KeyError) as err:
        raise _misfit(checkpoint, run, err) from None
    return {**state, "step": ckpt["step"], "rng": ckpt["rng"]}


def restore_position(state: dict[str, Any], order: BatchOrder, checkpoint: Path) -> None:
    """Put the data order and the global RNGs where `checkpoint` (its restored `state`) was."""
    source = checkpoint / "state.json"
    # Checkpoints written before the rename keep the batch order under "sampler".
    position = state.get("batch_order", state.get("sampler"))
    try:
        if position:
            order.load_state_dict(position)
    except ValueError as err:
        fix = resume_hint(checkpoint)
        raise CheckpointError(
            f"{source}: the data position does not fit the shards ({err}); {fix}"
        ) from None
    restore_rng(state["rng"], source)


def trim_metrics(path: Path, step: int, warn: Callable[[str], None]) -> None:
    """Drop the records of `metrics.jsonl` logged after `step` (the checkpoint resumed from),
    and lines that are not records (a torn last line of a killed run), telling `warn`."""
    if not path.is_file():
        return
    records, unreadable = read_records(path)
    if unreadable:
        warn(f"dropped {unreadable} unreadable line(s) of {path} (a torn write of a killed run)")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))
    tmp.replace(path)


def _misfit(checkpoint: Path, run: RunDir, err: Exception) -> CheckpointError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"{checkpoint} does not fit the model in {run.config_path} ({first})")
