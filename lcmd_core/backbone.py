"""The denoiser network of a model: the built-in DiT `Denoiser` or a backbone a plugin registers.

A backbone maps z[B, L, D] (already input-scaled), λ[B], labels[B] or None and self-conditioning
[B, L, D] or None to logits[B, L, K]. `model.backbone` names it; the core knows this contract,
not the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import pluggy
import torch
from torch import Tensor, nn

from .config import ModelConfig
from .denoiser import Denoiser
from .plugins import BackboneFactory, PluginError, collect_plugins, get_plugin_manager

BUILTIN = "dit"


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone factory builds a network for.

    `positions` are the tokens' coordinates (`TokenSpec.positions`) or None for a grid of
    `token_shape`; label id `num_classes` is the null class; `model` carries the width, depth,
    heads, MLP ratio, dropout, positional encoding, self-conditioning and attention options.
    """

    vocab_size: int
    embed_dim: int
    token_shape: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...] | None
    num_classes: int
    model: ModelConfig

    @property
    def seq_len(self) -> int:
        """Number of token positions L."""
        n = 1
        for size in self.token_shape:
            n *= size
        return n


def registered_backbones(
    plugins: pluggy.PluginManager | None = None,
) -> dict[str, tuple[str, BackboneFactory]]:
    """Every backbone the plugins register (default: the installed ones): name → (plugin,
    factory)."""
    found: dict[str, tuple[str, BackboneFactory]] = {}
    pm = plugins if plugins is not None else get_plugin_manager()
    for plugin in collect_plugins(pm).values():
        for name, factory in plugin.backbones.items():
            if name == BUILTIN or name in found:
                owner = "lcmd_core" if name == BUILTIN else f"plugin {found[name][0]!r}"
                raise PluginError(
                    f"plugin {plugin.name!r} registers backbone {name!r}, which {owner} already "
                    "provides; rename one of them"
                )
            found[name] = (plugin.name, factory)
    return found


def build_backbone(
    spec: BackboneSpec, plugins: pluggy.PluginManager | None = None
) -> tuple[nn.Module, str]:
    """The network `spec.model.backbone` names and who provides it ("lcmd_core" or a plugin);
    `plugins` is the plugin manager to look in (default: the installed plugins)."""
    name = spec.model.backbone
    if name == BUILTIN:
        return _dit(spec), "lcmd_core"
    known = registered_backbones(plugins)
    if name not in known:
        raise PluginError(
            f"unknown backbone {name!r} (model.backbone; installed: "
            f"{', '.join([BUILTIN, *known])}); install the plugin that registers it or pick one"
        )
    owner, factory = known[name]
    net = factory(spec)
    if not isinstance(net, nn.Module):
        raise PluginError(
            f"plugin {owner!r}: backbone {name!r} factory returned {type(net).__name__}, "
            "not a torch.nn.Module"
        )
    return net, owner


def check_logits(logits: object, expected: tuple[int, int, int], name: str, owner: str) -> Tensor:
    """The backbone's output, or a PluginError naming its plugin when it is not [B, L, K]."""
    if not isinstance(logits, Tensor) or tuple(logits.shape) != expected:
        got = list(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise PluginError(
            f"plugin {owner!r}: backbone {name!r} returned logits of shape {got}, expected "
            f"{list(expected)} (batch, positions, vocabulary)"
        )
    return logits


def describe(net: nn.Module, name: str, owner: str, device: torch.device) -> str:
    """What the run log says about the network."""
    if isinstance(net, Denoiser):
        return f"attention {net.backend_for(device)}"
    return f"backbone {name} (plugin {owner})"


def _dit(spec: BackboneSpec) -> Denoiser:
    mc = spec.model
    return Denoiser(
        spec.vocab_size,
        spec.embed_dim,
        spec.token_shape,
        num_classes=spec.num_classes,
        size=mc.size,
        width=mc.width,
        depth=mc.depth,
        heads=mc.heads,
        mlp_ratio=mc.mlp_ratio,
        dropout=mc.dropout,
        pos_encoding=mc.pos_encoding,
        positions=spec.positions,
        self_condition=mc.self_condition,
        attention_backend=mc.attention,
    )
