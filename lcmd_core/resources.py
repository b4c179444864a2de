"""Memory a run will need, estimated from its config before anything is built.

The estimates are deliberately rough upper bounds (fp32, attention scores materialised); they
exist to refuse, in one line naming the option to change, requests that cannot fit — a width
of 10⁷, a sequence of 10⁹ tokens, 10⁹ samples — instead of allocating until the system kills
the process. Anything that fits the estimate is attempted.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .codec import TokenSpec
from .config import ModelConfig
from .denoiser import SIZES
from .run_dir import RunError

FLOAT = 4  # bytes of an fp32 value
TRAINING_COPIES = 5  # weights, gradients, two Adam moments, the EMA


def available_bytes(device: torch.device) -> int:
    """Free memory on `device`: CUDA's free memory, or the system's available memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def network_shape(model: ModelConfig) -> tuple[int, int, int]:
    """(width, depth, heads) of the configured network."""
    base = SIZES[model.size]
    return model.width or base.width, model.depth or base.depth, model.heads or base.heads


def parameter_count(spec: TokenSpec, model: ModelConfig) -> int:
    """An upper estimate of the parameters: blocks with adaLN, embeddings, input and output."""
    width, depth, _ = network_shape(model)
    hidden = int(width * model.mlp_ratio)
    block = 4 * width * width + 2 * width * hidden + 6 * width * width
    edges = spec.vocab_size * (model.embed_dim + width) + model.embed_dim * width
    return depth * block + edges + spec.seq_len * width


def check_training(
    spec: TokenSpec, model: ModelConfig, micro_batch: int, device: torch.device
) -> None:
    """Refuse a training run whose weights and one micro-batch's activations cannot fit."""
    width, depth, heads = network_shape(model)
    weights = parameter_count(spec, model) * FLOAT * TRAINING_COPIES
    tokens = micro_batch * spec.seq_len
    activations = depth * (tokens * width * 16 + micro_batch * heads * spec.seq_len**2 * 2) * FLOAT
    logits = tokens * spec.vocab_size * 3 * FLOAT
    _refuse_beyond(
        device,
        {
            "model.width / model.depth (the weights)": weights,
            "train.micro_batch_size (or global_batch_size) × the codec's sequence length "
            "(activations)": activations + logits,
        },
    )


def check_sampling(spec: TokenSpec, model: ModelConfig, n: int, device: torch.device) -> None:
    """Refuse drawing `n` samples at once when their logits and activations cannot fit."""
    width, _, heads = network_shape(model)
    tokens = n * spec.seq_len
    per_step = (tokens * (width * 8 + spec.vocab_size * 3) + n * heads * spec.seq_len**2) * FLOAT
    weights = parameter_count(spec, model) * FLOAT * 2
    _refuse_beyond(
        device, {"model.width / model.depth": weights, "--n (samples drawn at once)": per_step}
    )


def check_encoding(items: int, seq_len: int, where: str) -> None:
    """Refuse encoding `items` sequences of `seq_len` tokens when the tokens cannot fit."""
    needs = items * seq_len * 8 * 2  # int64 tokens, and the copy written to shards
    _refuse_beyond(torch.device("cpu"), {f"the codec's sequence length ({where})": needs})


def _refuse_beyond(device: torch.device, needs: dict[str, int]) -> None:
    free = available_bytes(device)
    total = sum(needs.values())
    if total > free:
        cause = max(needs, key=needs.__getitem__)
        raise RunError(
            f"this needs about {_gib(total)} of memory on {device.type}, more than the "
            f"{_gib(free)} available; the largest part comes from {cause}: make it smaller"
        )


def _gib(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB"
