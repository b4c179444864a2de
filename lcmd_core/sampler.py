"""Ancestral (VDM posterior) and DDIM samplers with classifier-free guidance and known tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from .objective import expected_embedding
from .schedule import ShiftedCosineSchedule

# denoise(z[B, L, D], log_snr[B], labels[B] | None, self_cond[B, L, D] | None) -> logits[B, L, K]
DenoiseFn = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]
# token_times(t[N]) -> (each position's time [N, L] or t itself, its rate dτ/dt or None)
TokenTimesFn = Callable[[Tensor], tuple[Tensor, Tensor | None]]
SAMPLERS = ("ancestral", "ddim")


def guided_logits(
    denoise: DenoiseFn,
    z: Tensor,
    log_snr: Tensor,
    labels: Tensor | None,
    null_label: int | None,
    self_cond: Tensor | None,
    guidance: float,
) -> Tensor:
    """denoise(z, …), with classifier-free guidance ℓ_u + w (ℓ_c − ℓ_u) when labels are given
    and w ≠ 1 (both halves in one batched call). z is any batch-first input: latents or tokens."""
    if labels is None or guidance == 1.0:
        return denoise(z, log_snr, labels, self_cond)
    if null_label is None:
        raise ValueError("guidance needs a class-conditional model (num_classes > 0)")
    both = denoise(
        torch.cat([z, z]),
        torch.cat([log_snr, log_snr]),
        torch.cat([labels, torch.full_like(labels, null_label)]),
        None if self_cond is None else torch.cat([self_cond, self_cond]),
    )
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


class Sampler:
    """Runs N denoising steps from z_1 ~ N(0, I) down to t = 0, then reads tokens out.

    One step from t to s < t uses x̂ = softmax(ℓ) E and ε̂ = (z_t − α_t x̂)/σ_t:
    ancestral  z_s = (α_s/α_t)(z_t − σ_t c ε̂) + σ_s √c ξ  with c = 1 − SNR(t)/SNR(s) ∈ (0, 1];
    DDIM       z_s = α_s x̂ + σ_s ε̂.
    `x0_temperature` τ sharpens the estimate the update moves towards, x̂ = softmax(ℓ/τ) E (τ = 0:
    the row of the most likely token); self-conditioning still gets the plain softmax(ℓ) E the
    network was trained with. Guidance mixes logits, ℓ = ℓ_u + w (ℓ_c − ℓ_u), with both halves in
    one batched call.
    Under a staggered schedule (`token_times`) every position steps between its own times, so α,
    σ, λ and c are per position, and a position outside its window stays where it is (c = 0).
    """

    def __init__(
        self,
        schedule: ShiftedCosineSchedule,
        *,
        kind: Literal["ancestral", "ddim"] = "ancestral",
        steps: int = 100,
        guidance: float = 1.0,
        temperature: float = 0.0,
        token_times: TokenTimesFn | None = None,
        x0_temperature: float = 1.0,
    ):
        if kind not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {kind!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = argmax), got {temperature}")
        if not x0_temperature >= 0:
            raise ValueError(f"x0_temperature must be >= 0 (0 = argmax), got {x0_temperature}")
        self.schedule = schedule
        self.kind = kind
        self.steps = steps
        self.guidance = guidance
        self.temperature = temperature
        self.token_times = token_times
        self.x0_temperature = x0_temperature

    @torch.no_grad()
    def sample(
        self,
        denoise: DenoiseFn,
        table: Tensor,
        num_samples: int,
        seq_len: int,
        *,
        labels: Tensor | None = None,
        null_label: int | None = None,
        known: Tensor | None = None,
        self_condition: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw LongTensor[num_samples, seq_len] tokens.

        table: FloatTensor[K, D] embeddings; known: LongTensor[num_samples, seq_len] with the
        token to keep at known positions and −1 elsewhere (prefixes, inpainting); known positions
        are re-noised from their true embeddings at every step and returned unchanged.
        """
        device, dtype = table.device, table.dtype
        shape = (num_samples, seq_len, table.shape[1])
        known_mask = None if known is None else known >= 0
        known_embeds = None if known is None else table[known.clamp_min(0)]
        times = torch.linspace(1.0, 0.0, self.steps + 1, dtype=torch.float64, device=device)
        if self.token_times is not None:
            times, _ = self.token_times(times)
        log_snrs = self.schedule.log_snr(times).to(torch.float64)
        alphas, sigmas = (_over_positions(v) for v in self.schedule.alpha_sigma(times))
        shares = _over_positions(-torch.expm1(log_snrs[:-1] - log_snrs[1:]))  # c of each step

        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        draft = torch.zeros_like(z) if self_condition else None  # the self-conditioning input
        for i in range(self.steps):
            a_t, s_t = alphas[i].to(dtype), sigmas[i].to(dtype)
            a_s, s_s = alphas[i + 1].to(dtype), sigmas[i + 1].to(dtype)
            if known_mask is not None:
                noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
                z = torch.where(known_mask[..., None], a_t * known_embeds + s_t * noise, z)
            lam = log_snrs[i].expand(num_samples, *log_snrs[i].shape).to(dtype)
            logits = guided_logits(denoise, z, lam, labels, null_label, draft, self.guidance)
            x_hat = self._estimate(logits, table)
            eps_hat = (z - a_t * x_hat) / s_t
            if self.kind == "ddim":
                z = a_s * x_hat + s_s * eps_hat
            else:
                c = shares[i].to(dtype)
                xi = torch.randn(shape, generator=generator, device=device, dtype=dtype)
                z = (a_s / a_t) * (z - s_t * c * eps_hat) + s_s * c.sqrt() * xi
            if self_condition:
                plain = self.x0_temperature == 1
                draft = x_hat if plain else expected_embedding(logits, table)

        if known_mask is not None:
            z = torch.where(known_mask[..., None], alphas[-1].to(dtype) * known_embeds, z)
        lam = log_snrs[-1].expand(num_samples, *log_snrs[-1].shape).to(dtype)
        logits = guided_logits(denoise, z, lam, labels, null_label, draft, self.guidance)
        logits = logits.float()
        if self.temperature > 0:
            probs = (logits / self.temperature).softmax(-1).flatten(0, 1)
            tokens = torch.multinomial(probs, 1, generator=generator).view(num_samples, seq_len)
        else:
            tokens = logits.argmax(-1)
        if known_mask is not None:
            tokens = torch.where(known_mask, known, tokens)
        return tokens

    def _estimate(self, logits: Tensor, table: Tensor) -> Tensor:
        """x̂ = softmax(ℓ/τ) E at τ = `x0_temperature`; the most likely token's row at τ = 0."""
        tau = self.x0_temperature
        if tau == 0:
            return table[logits.argmax(-1)]
        return expected_embedding(logits if tau == 1 else logits / tau, table)


def _over_positions(values: Tensor) -> Tensor:
    """Per-step values [N] as they are, per-position ones [N, L] as [N, L, 1] (to broadcast over
    latents [B, L, D] once indexed by step)."""
    return values if values.dim() == 1 else values[..., None]
