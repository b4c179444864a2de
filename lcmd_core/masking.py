"""Absorbing-state (masked) diffusion: the masking schedule, the loss weight and the unmasking
sampler, as small stateless pieces (float64 inside).

A token is kept with probability α(t) and replaced by [MASK] otherwise; α(0) = 1, α(1) = 0. The
continuous-time ELBO is E_t[w(t) Σ_{i masked} −log p(x_i | z_t)] with w(t) = −α′(t)/(1 − α(t)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .sampler import guided_logits

MASK_SCHEDULES = ("loglinear", "cosine")
# Training times are clamped to [T_MIN, 1]: w(t) ~ 1/t, and a t this small masks nothing in
# practice; the bias it adds is about T_MIN × the per-token CE (< 1e-4 bit).
T_MIN = 1e-4

# denoise(noisy[B, L] with mask ids, labels[B] | None, self_cond[B, L, D] | None) -> logits
UnmaskFn = Callable[[Tensor, Tensor | None, Tensor | None], Tensor]


class MaskingSchedule:
    """α(t) for t in [0, 1]: `loglinear` α = 1 − t (MDLM), `cosine` α = 1 − cos(π/2 · (1 − t))
    (MD4), written 1 − sin(πt/2) so that α(0) = 1 and α(1) = 0 exactly.

    The names follow MDLM/MD4: log-linear is linear in α, so log(1 − α) is linear in log t.
    """

    def __init__(self, kind: str = "loglinear"):
        if kind not in MASK_SCHEDULES:
            raise ValueError(
                f"mask_schedule must be one of {', '.join(MASK_SCHEDULES)}, got {kind!r}"
            )
        self.kind = kind

    def __repr__(self) -> str:
        return f"MaskingSchedule({self.kind!r})"

    def alpha(self, t: Tensor) -> Tensor:
        """α(t): the probability that a token is still unmasked at time t (float64)."""
        t = t.double().clamp(0.0, 1.0)
        if self.kind == "loglinear":
            return 1.0 - t
        return 1.0 - torch.sin(0.5 * math.pi * t)

    def weight(self, t: Tensor) -> Tensor:
        """w(t) = −α′(t) / (1 − α(t)) > 0, the ELBO weight of a masked token's CE (float64)."""
        t = t.double().clamp(T_MIN, 1.0)
        if self.kind == "loglinear":
            return 1.0 / t
        return 0.5 * math.pi / torch.tan(0.5 * math.pi * t)


def unmask_probability(alpha_t: Tensor, alpha_s: Tensor) -> Tensor:
    """P(a token masked at t is unmasked at s < t) = (α_s − α_t) / (1 − α_t) (1 at s = 0)."""
    return ((alpha_s - alpha_t) / (1.0 - alpha_t)).clamp(0.0, 1.0)


@torch.no_grad()
def unmask(
    denoise: UnmaskFn,
    schedule: MaskingSchedule,
    mask_id: int,
    num_samples: int,
    seq_len: int,
    *,
    steps: int,
    guidance: float = 1.0,
    temperature: float = 1.0,
    labels: Tensor | None = None,
    null_label: int | None = None,
    known: Tensor | None = None,
    self_condition: Callable[[Tensor, Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Ancestral unmasking (MDLM's update) from all-[MASK] at t = 1 to t = 0 over `steps` steps.

    At each step a masked token is revealed with probability (α_s − α_t)/(1 − α_t), drawn from
    softmax(ℓ / temperature) (argmax at temperature 0); revealed and known tokens never change.
    The network is not called again while no token changed (it does not see t), unless
    `self_condition(logits, noisy)` feeds its last prediction back. known: LongTensor[N, L], −1
    where free. Returns LongTensor[num_samples, seq_len] with no mask left.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax), got {temperature}")
    noisy = torch.full((num_samples, seq_len), mask_id, dtype=torch.long, device=device)
    if known is not None:
        noisy = torch.where(known >= 0, known, noisy)
    alphas = schedule.alpha(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64))
    no_time = torch.zeros(num_samples, device=device)

    def network(z: Tensor, _time: Tensor, lab: Tensor | None, s: Tensor | None) -> Tensor:
        return denoise(z, lab, s)

    logits = sc = None
    changed = True
    for i in range(steps):
        is_mask = noisy == mask_id
        if not bool(is_mask.any()):
            break
        if changed or self_condition is not None:
            logits = guided_logits(network, noisy, no_time, labels, null_label, sc, guidance)
            logits = logits.float()
            if self_condition is not None:
                sc = self_condition(logits, noisy)
        p = unmask_probability(alphas[i], alphas[i + 1]).item()
        reveal = is_mask & (
            torch.rand(noisy.shape, generator=generator, device=device, dtype=torch.float64) < p
        )
        changed = bool(reveal.any())
        if changed:  # draw only where a token is revealed: a few positions a step
            noisy = noisy.masked_scatter(reveal, draw(logits[reveal], temperature, generator))
    return noisy


def draw(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """Tokens[...] from logits[..., K]: argmax at temperature 0, else categorical draws by
    inverting the CDF with one uniform a token (in float64: float32 draws lose diversity;
    `torch.multinomial` draws K exponentials a token, a tenth of a tiny model's step)."""
    if temperature == 0:
        return logits.argmax(-1)
    cdf = (logits.double() / temperature).softmax(-1).reshape(-1, logits.shape[-1]).cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype)
    # right=True: the first token whose CDF exceeds u, so tokens of probability 0 never come
    tokens = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max(cdf.shape[1] - 1)
    return tokens.view(logits.shape[:-1])
