"""Fully sharded data parallelism (`train.strategy=fsdp`, PyTorch's FSDP2 `fully_shard`).

Each block of the backbone (its `blocks`, when it has them) and then the whole model
(embeddings, input/output layers, the time and class layers) become FSDP units: every process
keeps 1/N of each parameter, of its gradient and of its AdamW moments, and all-gathers a unit's
weights only while it runs. The EMA shadow is sharded the same way, so its update is local.
Gradients are summed, not averaged, over the processes, as `distributed.sum_gradients` does for
the replicated strategy: the loss is already divided by the global number of micro-batches.

Checkpoints stay in the one-process format (full tensors, written by rank 0), so a run trained
sharded resumes on one process and the other way round.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor, distribute_tensor

# Methods of the models that run the network and so must all-gather the weights first, like forward.
FORWARD_METHODS = ("loss",)


def shard(modules: list[nn.Module], device: torch.device, processes: int) -> None:
    """Shard each model in `modules` (the model and its EMA) over `processes` processes, in place.

    Every process must call this with identically initialised modules.
    """
    mesh = init_device_mesh(device.type, (processes,))
    for module in modules:
        for block in getattr(module.denoiser, "blocks", ()):
            _unit(block, mesh)
        _unit(module, mesh)
        for name in FORWARD_METHODS:
            register_fsdp_forward_method(module, name)


def _unit(module: nn.Module, mesh: Any) -> None:
    fully_shard(module, mesh=mesh)
    # Sum gradients over processes (gloo has no pre-multiplied sum, so force a plain SUM).
    module.set_gradient_divide_factor(1.0)
    module.set_force_sum_reduction_for_comms(True)


def full(value: Any, keep: bool = True) -> Any:
    """`value` with every DTensor replaced by the whole tensor on the CPU; other tensors and
    values are left alone. A collective: every process calls it on the same structure, and
    those with `keep=False` drop each whole tensor at once (None in its place)."""
    if isinstance(value, DTensor):
        whole = value.full_tensor()
        return whole.cpu() if keep else None
    if isinstance(value, dict):
        return {k: full(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [full(v, keep) for v in value]
    return value


def _like(value: Any, reference: Tensor) -> Any:
    """A whole tensor cut into this process's shard of `reference` (no communication)."""
    if isinstance(reference, DTensor) and isinstance(value, Tensor):
        if value.shape != reference.shape:
            raise ValueError(f"shape {tuple(value.shape)} does not fit {tuple(reference.shape)}")
        local = value.to(reference.device, reference.dtype)
        return distribute_tensor(
            local, reference.device_mesh, reference.placements, src_data_rank=None
        )
    return value


def shard_state(state: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, Any]:
    """A whole-tensor state dict cut into the shards of `reference` (a sharded state dict).

    Keys missing from `reference` are passed through, so `load_state_dict` reports them."""
    return {k: _like(v, reference[k]) if k in reference else v for k, v in state.items()}


def shard_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict:
    """A whole-tensor `optimizer.state_dict()` cut into the shards of `optimizer`'s parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param = {}
    for key, values in state["state"].items():
        index = int(key)
        if not 0 <= index < len(params):
            raise ValueError(f"optimizer state for parameter {index} of {len(params)}")
        param = params[index]
        per_param[key] = {
            name: _like(v, param) if isinstance(v, Tensor) and v.shape == param.shape else v
            for name, v in values.items()
        }
    return {**state, "state": per_param}
