"""The diffusion processes by name, and the model a run's config asks for."""

from __future__ import annotations

import pluggy

from .codec import TokenSpec
from .config import DiffusionConfig, ModelConfig
from .diffusion_model import DiffusionModel
from .masked import MaskedDiffusion
from .model import LCMD

PROCESSES: dict[str, type[DiffusionModel]] = {"continuous": LCMD, "masked": MaskedDiffusion}


def build_model(
    spec: TokenSpec,
    model: ModelConfig,
    diffusion: DiffusionConfig,
    plugins: pluggy.PluginManager | None = None,
) -> DiffusionModel:
    """The model of `diffusion.process` for a codec's token spec and a RunConfig's sections;
    `plugins` is where a plugin backbone is looked up (default: the installed plugins)."""
    return PROCESSES[diffusion.process](
        spec.vocab_size,
        spec.seq_len,
        num_classes=spec.num_classes,
        token_shape=spec.token_shape,
        positions=spec.positions,
        model=model,
        diffusion=diffusion,
        plugins=plugins,
    )
