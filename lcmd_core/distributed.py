"""Data-parallel training across processes started by `torchrun` (torch.distributed).

Every process holds the whole model and takes its share of each global batch; after the
micro-batches of a step, one all-reduce sums the gradients, so every process applies the same
update. The batch split and the per-micro-batch random streams depend only on the global batch,
so a run gives the same losses whatever the number of processes.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and samples."""
        return self.rank == 0


def world_from_env() -> World:
    """The `World` that torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) describe."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"malformed torchrun environment: {err}") from None
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={size}")
    return World(rank, size, local)


def init(world: World, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU) unless alone or already joined."""
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=world.rank,
            world_size=world.size,
            device_id=device if device.type == "cuda" else None,
        )
        # Leaving with the group alive lets its threads abort the process at exit (SIGABRT).
        atexit.register(shutdown)


def shutdown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every process (no-op for one process)."""
    if world.size > 1:
        dist.barrier()


def sum_gradients(parameters: list[torch.nn.Parameter], world: World) -> None:
    """Replace each gradient by its sum over the processes (one flattened all-reduce).

    A parameter without a gradient on every process keeps none, as in a single process.
    """
    if world.size == 1:
        return
    device = parameters[0].device
    has_grad = torch.tensor([p.grad is not None for p in parameters], device=device)
    flat = torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
            for p in parameters
        ]
        + [has_grad.float()]
    )
    dist.all_reduce(flat)
    offset = 0
    for p in parameters:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
    for p, count in zip(parameters, flat[offset:].tolist(), strict=True):
        if count == 0:
            p.grad = None


def sum_values(values: dict[str, float], world: World, device: torch.device) -> dict[str, float]:
    """Each value summed over the processes (the same keys on every process)."""
    if world.size == 1:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist(), strict=True))


def max_int(value: int, world: World, device: torch.device) -> int:
    """The largest of the processes' `value`s (`value` itself for one process)."""
    if world.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def micro_batch_seed(seed: int, step: int, attempt: int, index: int) -> int:
    """A 63-bit seed for global micro-batch `index` of optimizer step `step` (and retry
    `attempt` after a non-finite step), the same on every process."""
    mask = (1 << 64) - 1
    x = seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + attempt * 0x94D049BB133111EB
    x = (x + index) & mask
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & mask
    x ^= x >> 32
    return x & ((1 << 63) - 1)
