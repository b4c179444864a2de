"""The one attention call: xformers (CUDA, if installed) → torch SDPA → explicit math.

`resolve_backend("auto", device)` picks xformers only when the tensors live on CUDA and
`xformers.ops.memory_efficient_attention` imports and runs (probed once per process); the
environment variable `LCMD_ATTENTION` (xformers | sdpa | math) overrides the config value.
"""

from __future__ import annotations

import functools
import logging
import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("auto", "xformers", "sdpa", "math")
log = logging.getLogger(__name__)


@functools.cache
def xformers_available() -> bool:
    """True when xformers imports and its memory-efficient kernel runs on this CUDA device."""
    if not torch.cuda.is_available():
        return False
    try:
        from xformers.ops import memory_efficient_attention

        q = torch.zeros(1, 4, 1, 8, device="cuda", dtype=torch.float16)
        memory_efficient_attention(q, q, q)
    except Exception as err:  # any import or kernel failure means "not usable here"
        log.info("xformers unavailable, using torch SDPA: %s", err)
        return False
    return True


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """The backend that will run for `requested` (config value) on `device`."""
    requested = os.environ.get("LCMD_ATTENTION", requested) or "auto"
    if requested not in BACKENDS:
        raise ValueError(
            f"attention backend must be one of {', '.join(BACKENDS)}, got {requested!r}"
        )
    is_cuda = torch.device(device).type == "cuda"
    if requested == "xformers" and not (is_cuda and xformers_available()):
        raise ValueError(
            "attention=xformers needs a CUDA device and `pip install lcmd-core[gpu]`; "
            "use attention=auto to fall back to SDPA"
        )
    if requested == "auto":
        return "xformers" if is_cuda and xformers_available() else "sdpa"
    return requested


def attention(q: Tensor, k: Tensor, v: Tensor, backend: str) -> Tensor:
    """Bidirectional attention. q, k, v: [B, H, L, Dh] → [B, H, L, Dh]."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "xformers":
        from xformers.ops import memory_efficient_attention

        out = memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    if backend == "math":
        weights = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        return weights.softmax(dim=-1) @ v
    raise ValueError(f"unknown attention backend {backend!r}; expected xformers, sdpa or math")
