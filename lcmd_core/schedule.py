"""The shifted cosine log-SNR schedule, as pure functions of t (variance preserving)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class ShiftedCosineSchedule:
    """λ(t) = −2 log tan(θ(t)) + shift, with θ(t) linear in t so that λ(0)=λ_max, λ(1)=λ_min.

    `logsnr_min`/`logsnr_max` clip the *base* curve (before the shift), so the shift moves every
    λ by exactly `shift`. Negative shifts add noise at every t. All maths run in float64 and the
    result is returned in the dtype of `t` (float32 at least).
    """

    def __init__(self, shift: float = 0.0, logsnr_min: float = -15.0, logsnr_max: float = 15.0):
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min ({logsnr_min}) must be below logsnr_max ({logsnr_max})")
        self.shift = float(shift)
        self.logsnr_min = float(logsnr_min)
        self.logsnr_max = float(logsnr_max)
        self.theta_min = math.atan(math.exp(-0.5 * self.logsnr_max))
        self.theta_max = math.atan(math.exp(-0.5 * self.logsnr_min))

    def __repr__(self) -> str:
        return (
            f"ShiftedCosineSchedule(shift={self.shift}, logsnr_min={self.logsnr_min}, "
            f"logsnr_max={self.logsnr_max})"
        )

    @staticmethod
    def _as_tensor(t: Tensor | float) -> tuple[Tensor, torch.dtype]:
        t = torch.as_tensor(t)
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
        out_dtype = t.dtype if t.dtype == torch.float64 else torch.float32
        return t.to(torch.float64), out_dtype

    def _theta(self, t: Tensor) -> Tensor:
        return self.theta_min + t.clamp(0.0, 1.0) * (self.theta_max - self.theta_min)

    def _lam(self, t64: Tensor) -> Tensor:
        return -2.0 * torch.log(torch.tan(self._theta(t64))) + self.shift

    def _dlam(self, t64: Tensor) -> Tensor:
        return -4.0 * (self.theta_max - self.theta_min) / torch.sin(2.0 * self._theta(t64))

    def log_snr(self, t: Tensor | float) -> Tensor:
        """λ(t) for t in [0, 1] (values outside are clamped)."""
        t64, dtype = self._as_tensor(t)
        return self._lam(t64).to(dtype)

    def dlog_snr_dt(self, t: Tensor | float) -> Tensor:
        """dλ/dt = −4 (θ_max − θ_min) / sin(2θ(t)), always negative; the shift does not enter."""
        t64, dtype = self._as_tensor(t)
        return self._dlam(t64).to(dtype)

    def alpha_sigma(self, t: Tensor | float) -> tuple[Tensor, Tensor]:
        """(α_t, σ_t) with α² = sigmoid(λ), σ² = sigmoid(−λ), so α² + σ² = 1."""
        t64, dtype = self._as_tensor(t)
        return alpha_sigma_from_log_snr(self._lam(t64), dtype)

    def snr_prime(self, t: Tensor | float) -> Tensor:
        """dSNR/dt = dλ/dt · exp(λ), negative; −½ SNR′ is the weight of the diffusion loss."""
        t64, dtype = self._as_tensor(t)
        return (self._dlam(t64) * torch.exp(self._lam(t64))).to(dtype)

    def t_from_log_snr(self, log_snr: Tensor | float) -> Tensor:
        """Inverse of `log_snr` on the clipped range (for grids uniform in λ)."""
        lam, dtype = self._as_tensor(log_snr)
        theta = torch.atan(torch.exp(-0.5 * (lam - self.shift)))
        t = (theta - self.theta_min) / (self.theta_max - self.theta_min)
        return t.clamp(0.0, 1.0).to(dtype)


def alpha_sigma_from_log_snr(
    log_snr: Tensor, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """(α, σ) = (sqrt(sigmoid(λ)), sqrt(sigmoid(−λ))), computed in float64."""
    lam = log_snr.to(torch.float64)
    dtype = dtype or log_snr.dtype
    return torch.sigmoid(lam).sqrt().to(dtype), torch.sigmoid(-lam).sqrt().to(dtype)


def staggered_times(t: Tensor, length: int, stagger: float) -> tuple[Tensor, Tensor]:
    """Each position's own time under a staggered schedule, and its rate dτ/dt.

    Position i of L runs the whole schedule inside its own window of t:
    τ_i(t) = clamp((1 + s) t − s (1 − i / (L − 1)), 0, 1), so every position is clean at t = 0
    and pure noise at t = 1, and for s > 0 earlier positions clear first as t falls (s → ∞
    approaches left-to-right generation). t: [B] → τ, dτ/dt: [B, L] (dτ/dt is 1 + s inside the
    window, 0 outside).
    """
    ranks = torch.arange(length, dtype=t.dtype, device=t.device) / max(length - 1, 1)
    raw = t[:, None] - stagger * (1.0 - ranks - t[:, None])  # exactly ≤ 0 at t = 0, ≥ 1 at t = 1
    inside = (raw > 0) & (raw < 1)
    return raw.clamp(0.0, 1.0), inside.to(t.dtype) * (1.0 + stagger)
