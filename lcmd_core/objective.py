"""The LCMD loss terms as pure functions (per sample, float32/64), plus time and drop sampling.

Every term returns a FloatTensor[B] summed over positions (and embedding dimensions); callers
average over the batch and divide by L to report per-token values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def low_discrepancy_times(
    n: int, *, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """n times in [0, 1): one uniform offset plus an evenly spaced grid (VDM's antithetic draw)."""
    u0 = torch.rand((), generator=generator, device=device, dtype=torch.float64)
    return torch.remainder(u0 + torch.arange(n, device=device, dtype=torch.float64) / n, 1.0)


def drop_mask(
    shape: tuple[int, ...],
    prob: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """BoolTensor[shape], True with probability `prob` (positions whose latent is dropped)."""
    if prob <= 0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    return torch.rand(shape, generator=generator, device=device) < prob


def per_token(values: Tensor) -> Tensor:
    """A factor per sequence [B] or per position [B, L], shaped to broadcast over [B, L, D]."""
    return values[:, None, None] if values.dim() == 1 else values[..., None]


def diffusion_loss(embeds: Tensor, x_hat: Tensor, snr_prime: Tensor, keep: Tensor) -> Tensor:
    """L_diff = −½ Σ_{i kept} SNR′_i(t) ‖e_i − x̂_i‖².

    embeds, x_hat: [B, L, D]; snr_prime: [B] or, for per-position schedules, [B, L] (negative or
    0); keep: Bool[B, L] (dropped positions are scored by cross-entropy instead: their MSE under
    the huge low-noise weight dominates).
    """
    sq = (embeds - x_hat).pow(2).sum(-1) * keep
    if snr_prime.dim() == 1:
        return -0.5 * snr_prime.to(sq.dtype) * sq.sum(-1)
    return -0.5 * (snr_prime.to(sq.dtype) * sq).sum(-1)


def prior_loss(embeds: Tensor, alpha_1: Tensor, sigma_1: Tensor) -> Tensor:
    """L_prior = KL(N(α₁e, σ₁²I) ‖ N(0, I)) = ½ Σ_{i,d} (α₁²e² + σ₁² − log σ₁² − 1).

    embeds: [B, L, D]; α₁, σ₁ at t = 1.
    """
    a2, s2 = alpha_1.to(embeds.dtype) ** 2, sigma_1.to(embeds.dtype) ** 2
    per_dim = a2 * embeds.pow(2) + s2 - torch.log(s2) - 1.0
    return 0.5 * per_dim.flatten(1).sum(-1)


def cross_entropy(logits: Tensor, tokens: Tensor, where: Tensor | None = None) -> Tensor:
    """Σ_i −log softmax(logits_i)[x_i] over positions `where` (all if None). logits: [B, L, K]."""
    nll = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none")
    nll = nll.view(tokens.shape)
    if where is not None:
        nll = nll * where
    return nll.sum(-1)


def consistency_loss(target_logits: Tensor, logits: Tensor) -> Tensor:
    """L_CM = Σ_i KL(softmax(target_i) ‖ softmax(logits_i)); the target carries no gradient."""
    target_logp = F.log_softmax(target_logits.detach(), dim=-1)
    logp = F.log_softmax(logits, dim=-1)
    kl = (target_logp.exp() * (target_logp - logp)).sum(-1)
    return kl.clamp_min(0.0).sum(-1)


def consistency_times(
    t: Tensor, mode: str, delta: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Earlier times s < t for the CM pair: `uniform` s = u·t, `delta` s = max(t − Δ, 0)."""
    if mode == "uniform":
        u = torch.rand(t.shape, generator=generator, device=t.device, dtype=t.dtype)
        return u * t
    if mode == "delta":
        return (t - delta).clamp_min(0.0)
    raise ValueError(f"cm_pairs must be uniform or delta, got {mode!r}")


def bayes_readout(
    z: Tensor,
    table: Tensor,
    alpha: Tensor,
    sigma: Tensor,
    keep: Tensor | None = None,
    base: Tensor | None = None,
    gate: Tensor | None = None,
) -> Tensor:
    """log q(x_i = k | z_i) up to a constant: (α/σ²) z·E_k − (α²/2σ²)‖E_k‖², plus `base`.

    The exact posterior over tokens of the forward process alone (Plaid's "output prior"); with it
    added, the network only has to learn a correction. z: [B, L, D], table: [K, D], α, σ: [B] or
    [B, L]; keep: Bool[B, L] (the readout is 0 elsewhere); gate: [B] or [B, L] (the readout's
    weight at that noise level); base: [B, L, K] logits to add it to. Both terms
    come from one matmul of [(α/σ²) z, −α²/2σ²] with [E, ‖E‖²], added to `base` in the same call.
    """
    b, length, _ = z.shape
    a = per_token(alpha.to(z.dtype))
    s2 = per_token(sigma.to(z.dtype)) ** 2
    rows = torch.cat([z * (a / s2), (-(a * a) / (2 * s2)).expand(b, length, 1)], -1)
    if keep is not None:
        rows = rows * keep[..., None].to(rows.dtype)
    if gate is not None:
        rows = rows * per_token(gate.to(rows.dtype))
    columns = torch.cat([table, table.pow(2).sum(-1, keepdim=True)], -1)
    flat = rows.reshape(b * length, -1)
    if base is None:
        out = flat @ columns.T
    else:
        out = torch.addmm(base.reshape(b * length, -1).to(z.dtype), flat, columns.T)
    return out.view(b, length, -1)


def expected_embedding(logits: Tensor, table: Tensor) -> Tensor:
    """x̂ = softmax(logits) E: logits[B, L, K], table[K, D] → [B, L, D], in the table's dtype.

    Autocast is switched off: x̂ feeds an MSE whose weight reaches ~10⁶, so it must not be bf16.
    """
    with torch.autocast(logits.device.type, enabled=False):
        return logits.float().softmax(-1).to(table.dtype) @ table


def bits(nats: Tensor, num_tokens: int) -> Tensor:
    """Nats per sequence → bits per token."""
    return nats / (num_tokens * math.log(2.0))
