"""Learnable token embeddings Ψ (K×D), the mask vector for random dropping, collapse diagnostics."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EmbedNorm = Literal["none", "l2", "l2_scaled"]


class TokenEmbedding(nn.Module):
    """Ψ ∈ R^{K×D} with optional row normalisation and a learned mask vector.

    Rows start as N(0, s²/D) (norm ≈ s, the `scale`). `norm="l2"` renormalises rows to norm s on
    every use, `"l2_scaled"` to norm s·√D (unit per-dimension scale for s = 1); `frozen=True`
    keeps the random table fixed (the "fixed embeddings" baseline). The mask vector always learns.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        norm: EmbedNorm = "none",
        scale: float = 1.0,
        frozen: bool = False,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if norm not in ("none", "l2", "l2_scaled"):
            raise ValueError(f"embed_norm must be none, l2 or l2_scaled, got {norm!r}")
        if not scale > 0:
            raise ValueError(f"embed_scale must be > 0, got {scale}")
        self.vocab_size = vocab_size
        self.dim = dim
        self.norm = norm
        self.scale = float(scale)
        table = torch.randn(vocab_size, dim, generator=generator) / math.sqrt(dim) * scale
        self.table = nn.Parameter(table, requires_grad=not frozen)
        self.mask_vector = nn.Parameter(torch.randn(dim, generator=generator) / math.sqrt(dim))

    @property
    def weight(self) -> Tensor:
        """The effective table E: FloatTensor[K, D] (normalised if configured)."""
        if self.norm == "none":
            return self.table
        norm = self.scale * (math.sqrt(self.dim) if self.norm == "l2_scaled" else 1.0)
        return F.normalize(self.table, dim=-1) * norm

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: LongTensor[B, L] → FloatTensor[B, L, D]."""
        return F.embedding(tokens, self.weight)

    @torch.no_grad()
    def diagnostics(self) -> dict[str, float]:
        """Collapse diagnostics of the table (see `collapse_diagnostics`)."""
        return collapse_diagnostics(self.weight.detach().float())


def distinguishable_log_snr(nn_dist: float) -> float:
    """The log-SNR λ at which rows `nn_dist` apart are two noise standard deviations apart:
    e^{λ/2} · nn_dist = 2 (d′ = 2), so λ = 2 log(2 / nn_dist)."""
    return 2.0 * math.log(2.0 / nn_dist)


def collapse_diagnostics(table: Tensor, max_rows: int = 2048) -> dict[str, float]:
    """Spread of an embedding table E: FloatTensor[K, D].

    Returns mean pairwise Euclidean and cosine distance, trace of the covariance across rows,
    effective rank (exp of the entropy of the normalised singular values of the centred table)
    and mean nearest-neighbour distance. Collapse drives all of them toward 0 (rank toward 1).
    Pairwise statistics use an evenly strided subset of at most `max_rows` rows.
    """
    table = table.double()
    centred = table - table.mean(0, keepdim=True)
    rows = table[:: math.ceil(table.shape[0] / max_rows)]
    k = rows.shape[0]
    dist = torch.cdist(rows, rows)
    off = ~torch.eye(k, dtype=torch.bool, device=table.device)
    unit = F.normalize(rows, dim=-1)
    cos_dist = 1.0 - unit @ unit.T
    singular = torch.linalg.svdvals(centred)
    total = singular.sum()
    if total > 0:
        p = singular / total
        p = p[p > 0]
        eff_rank = float(torch.exp(-(p * p.log()).sum()))
    else:
        eff_rank = 0.0
    nn_dist = dist.masked_fill(~off, float("inf")).min(dim=1).values
    return {
        "mean_pairwise_dist": float(dist[off].mean()),
        "mean_cosine_dist": float(cos_dist[off].mean()),
        "cov_trace": float(centred.pow(2).sum() / max(table.shape[0] - 1, 1)),
        "effective_rank": eff_rank,
        "mean_nn_dist": float(nn_dist.mean()),
        "mean_norm": float(table.norm(dim=-1).mean()),
    }
