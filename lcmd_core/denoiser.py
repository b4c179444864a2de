"""DiT-style transformer f_θ(z_t, λ_t, c) → logits over the vocabulary at every position."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from .attention import attention, resolve_backend


@dataclass(frozen=True)
class Size:
    """Width, depth and heads of a named denoiser size."""

    width: int
    depth: int
    heads: int


SIZES: dict[str, Size] = {
    "tiny": Size(width=128, depth=4, heads=4),
    "S": Size(width=384, depth=12, heads=6),
    "B": Size(width=768, depth=12, heads=12),
    "L": Size(width=1024, depth=24, heads=16),
}


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of float positions[N] → [N, dim] (dim even)."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float64, device=positions.device)
    freqs = torch.exp(-math.log(10000.0) * steps / half)
    angles = positions.double()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


def grid_coordinates(token_shape: tuple[int, ...]) -> Tensor:
    """Integer coordinates of every cell of a grid, row-major → LongTensor[prod(shape), axes]."""
    grids = torch.meshgrid(*[torch.arange(n) for n in token_shape], indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


def sincos_positions(coords: Tensor, dim: int) -> Tensor:
    """Fixed positional encodings of integer coordinates[L, axes] → [L, dim].

    The width is split evenly across axes (DiT's 2-D sin-cos for images, one axis for
    sequences); any remainder of channels stays zero. A grid's encodings are those of
    `grid_coordinates(token_shape)`.
    """
    axes = coords.shape[1]
    per_axis = (dim // axes) // 2 * 2
    out = torch.zeros(coords.shape[0], dim)
    out[:, : per_axis * axes] = torch.cat(
        [sincos_1d(coords[:, a], per_axis) for a in range(axes)], dim=-1
    )
    return out


def rotary_angles(coords: Tensor, head_dim: int) -> Tensor:
    """Rotary angles of integer coordinates[L, axes] → float64 [L, head_dim // 2] (float32 would
    blur large angles; callers cast cos and sin).

    The head's channel pairs are split evenly across axes (2-D RoPE on an image grid, 1-D on a
    sequence), each axis with frequencies 10000^(−k/n); leftover pairs get angle 0 (no rotation).
    """
    axes, pairs = coords.shape[1], head_dim // 2
    per_axis = pairs // axes
    freqs = torch.exp(-math.log(10000.0) * torch.arange(per_axis, dtype=torch.float64) / per_axis)
    out = torch.zeros(coords.shape[0], pairs, dtype=torch.float64)
    for a in range(axes):
        out[:, a * per_axis : (a + 1) * per_axis] = coords[:, a, None].double() * freqs
    return out


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (i, i + Dh/2) of x[B, H, L, Dh] by angles with cos, sin [L, Dh/2]
    (RoPE)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation: x[B, L, W] * (1 + scale[B, W]) + shift[B, W]."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero conditioning (DiT)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
        )
        self.drop = nn.Dropout(dropout)
        # adaLN-Zero: the conditioning produces shift/scale/gate for both sub-layers; zero init
        # makes every block the identity at initialisation.
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(
        self, x: Tensor, cond: Tensor, backend: str, rotary: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """x: [B, L, W], cond: [B, W], rotary: (cos, sin) [L, Dh/2] or None → [B, L, W]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = rearrange(self.qkv(h), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        if rotary is not None:
            q, k = rotate(q, *rotary), rotate(k, *rotary)
        h = rearrange(attention(q, k, v, backend), "b h l d -> b l (h d)")
        x = x + gate1[:, None] * self.drop(self.proj(h))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None] * self.mlp(h)


class Denoiser(nn.Module):
    """Transformer over L positions: (z_t[B, L, D], λ[B], class[B]) → network logits[B, L, K].

    The input is rescaled to unit variance, projected to the model width, given positions
    (learned or fixed sin-cos encodings added to the input, or rotary angles applied to queries
    and keys; fixed ones come from the explicit `positions`, else from the token grid) and
    conditioned through adaLN-Zero on a sinusoidal embedding of λ plus a class embedding whose
    last row is the null class used for classifier-free guidance. The output layer starts at
    zero, so at initialisation the logits are exactly the Bayes readout the caller adds
    (`LCMD.denoise`).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        token_shape: tuple[int, ...],
        *,
        num_classes: int = 0,
        size: str = "tiny",
        width: int | None = None,
        depth: int | None = None,
        heads: int | None = None,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pos_encoding: str = "sincos",
        positions: Sequence[Sequence[int]] | None = None,
        self_condition: bool = False,
        attention_backend: str = "auto",
    ):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        base = SIZES[size]
        width, depth, heads = width or base.width, depth or base.depth, heads or base.heads
        if width % heads:
            raise ValueError(f"width ({width}) must be divisible by heads ({heads})")
        self.width, self.depth, self.heads = width, depth, heads
        self.num_classes = num_classes
        self.self_condition = self_condition
        self.attention_backend = attention_backend
        seq_len = math.prod(token_shape)
        in_dim = embed_dim * (2 if self_condition else 1)
        self.in_proj = nn.Linear(in_dim, width)
        coords = grid_coordinates(token_shape) if positions is None else torch.tensor(positions)
        self.register_buffer("angles", None, persistent=False)
        if pos_encoding == "learned":
            self.pos = nn.Parameter(torch.randn(seq_len, width) * 0.02)
        elif pos_encoding == "sincos":
            self.register_buffer("pos", sincos_positions(coords, width), persistent=False)
        elif pos_encoding == "rope":
            if (width // heads) // 2 < coords.shape[1]:
                raise ValueError(
                    f"rope needs at least {2 * coords.shape[1]} channels a head for "
                    f"{coords.shape[1]} position axes; got {width // heads}"
                )
            self.pos = None
            self.angles = rotary_angles(coords, width // heads)
        else:
            raise ValueError(f"pos_encoding must be learned, sincos or rope, got {pos_encoding!r}")
        self.time_mlp = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.class_embed = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.zeros_(block.ada[1].weight)
            nn.init.zeros_(block.ada[1].bias)
        for layer in (self.final_ada[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=0.02)

    @property
    def null_class(self) -> int:
        """Label id of the unconditional (null) class."""
        return self.num_classes

    def backend_for(self, device: torch.device) -> str:
        """The attention backend this model uses on `device`."""
        return resolve_backend(self.attention_backend, device)

    def forward(
        self,
        z: Tensor,
        log_snr: Tensor,
        labels: Tensor | None = None,
        self_cond: Tensor | None = None,
    ) -> Tensor:
        """z: [B, L, D] (already input-scaled), log_snr: [B] or [B, L], labels: [B] → logits
        [B, L, K].

        A per-position log-SNR [B, L] (a staggered schedule) is embedded for every position and
        added to its input; the blocks' adaLN takes the mean of those embeddings.
        """
        if self.self_condition:
            z = torch.cat([z, self_cond if self_cond is not None else torch.zeros_like(z)], -1)
        x = self.in_proj(z)
        if self.pos is not None:
            x = x + self.pos.to(z.dtype)
        # λ spans about [-20, 20]; a fixed rescale keeps the sinusoid frequencies useful.
        lam = log_snr.float()
        cond = self.time_mlp(sincos_1d(lam.reshape(-1) * 25.0, 256).to(z)).view(*lam.shape, -1)
        if lam.dim() == 2:
            x = x + cond
            cond = cond.mean(1)
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full(
                    (z.shape[0],), self.null_class, dtype=torch.long, device=z.device
                )
            cond = cond + self.class_embed(labels)
        backend = self.backend_for(z.device)
        rotary = None
        if self.angles is not None:  # one table for every block
            rotary = (self.angles.cos().to(x.dtype), self.angles.sin().to(x.dtype))
        for block in self.blocks:
            x = block(x, cond, backend, rotary)
        shift, scale = self.final_ada(cond).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(x), shift, scale))
