"""Where a run computes: the device and the autocast precision its config asks for."""

from __future__ import annotations

import contextlib

import torch

from .config import TrainConfig
from .run_dir import RunError


def resolve_device(requested: str) -> torch.device:
    """`auto` → CUDA when available, else CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RunError("train.device=cuda but no CUDA device is visible; use device=auto")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_dtype(train: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 for `precision=bf16` (and `auto` on CUDA), None (fp32, no autocast) otherwise."""
    precision = train.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
