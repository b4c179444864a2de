"""lcmd: latent consistency-matching diffusion over any sequence of discrete tokens.

Exports are resolved lazily so that plugin entry points can import `lcmd_core.plugins` without
loading torch.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Codec": "codec",
    "TokenSpec": "codec",
    "RunConfig": "config",
    "EMA": "ema",
    "DiffusionModel": "diffusion_model",
    "LCMD": "model",
    "MaskedDiffusion": "masked",
    "build_model": "processes",
    "Sampler": "sampler",
    "ShiftedCosineSchedule": "schedule",
    "hookimpl": "plugins",
    "PLUGIN_API": "plugins",
    "Trainer": "trainer",
    "load_run": "sampling",
    "Run": "sampling",
    "RunSetup": "run_setup",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'lcmd_core' has no attribute {name!r}")
