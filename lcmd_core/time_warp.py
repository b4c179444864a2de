"""Importance sampling of the diffusion time from a monotone CDF fitted online to the loss.

The training objective is an expectation over t ~ U(0, 1). `TimeWarp` draws t from a proposal
q(t) instead, piecewise constant on `bins` equal bins of [0, 1] (so its CDF is piecewise linear
and monotone), with each bin's mass proportional to a running mean of the per-sample loss that
fell in it, mixed with the uniform density so that no weight exceeds 1/`uniform_mix`. Weighting
each sample's loss by 1/q(t) keeps every estimate unbiased: E_q[ℓ(t)/q(t)] = ∫ ℓ(t) dt, so only
the variance changes (minimal, for a loss of fixed sign, when q ∝ E|ℓ(t)|). This is CDCD's
"time warping" with the reweighting that keeps the ELBO the same objective.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class TimeWarp(nn.Module):
    """Proposal q(t) on [0, 1]: `sample` maps uniforms to times, `density` gives q(t), `update`
    folds a batch of (t, loss) into the running per-bin loss (an EMA with `decay`), at once or,
    while `deferred`, at the next `commit()`.

    The running loss is a buffer (float64, arithmetic in float64 whatever its dtype), so it is
    saved in checkpoints and copied by the EMA.
    Under torch.distributed every rank applies the same update (batch sums are all-reduced).
    """

    def __init__(self, bins: int = 64, decay: float = 0.99, uniform_mix: float = 0.1):
        super().__init__()
        if bins < 1:
            raise ValueError(f"time-warp bins must be >= 1, got {bins}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"time-warp decay must be in [0, 1), got {decay}")
        if not 0.0 < uniform_mix <= 1.0:
            raise ValueError(f"time-warp uniform_mix must be in (0, 1], got {uniform_mix}")
        self.bins = bins
        self.decay = decay
        self.uniform_mix = uniform_mix
        self.register_buffer("bin_loss", torch.ones(bins, dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.deferred = False
        self._pending: Tensor | None = None  # [2, bins]: loss sums and counts not yet applied

    def masses(self) -> Tensor:
        """FloatTensor[bins] (float64): the probability of each bin, summing to 1."""
        loss = self.bin_loss.double().clamp_min(0.0)
        total = loss.sum()
        fitted = loss / total if total > 0 else torch.full_like(loss, 1.0 / self.bins)
        return (1.0 - self.uniform_mix) * fitted + self.uniform_mix / self.bins

    def cdf(self) -> Tensor:
        """FloatTensor[bins + 1] (float64): the CDF at the bin edges, 0 … 1, non-decreasing."""
        masses = self.masses()
        edges = torch.cat([masses.new_zeros(1), masses.cumsum(0)])
        return edges / edges[-1]

    def _bin(self, t: Tensor) -> Tensor:
        return (t.to(torch.float64) * self.bins).long().clamp(0, self.bins - 1)

    def density(self, t: Tensor) -> Tensor:
        """q(t) for t in [0, 1] (float64)."""
        return self.masses()[self._bin(t)] * self.bins

    def sample(self, u: Tensor) -> Tensor:
        """The inverse CDF at u ∈ [0, 1) (float64): stratified u give stratified t."""
        u = u.to(torch.float64)
        cdf = self.cdf()
        index = (torch.searchsorted(cdf, u, right=True) - 1).clamp(0, self.bins - 1)
        low, mass = cdf[index], cdf[index + 1] - cdf[index]
        return ((index + (u - low) / mass) / self.bins).clamp(0.0, 1.0)

    @torch.no_grad()
    def update(self, t: Tensor, loss: Tensor) -> None:
        """Fold per-sample losses (FloatTensor[B], any sign: |ℓ| is used; non-finite ones are
        skipped) at times t[B] in. While `deferred` they wait for `commit()`, so that the loss
        calls of one optimizer step all see one proposal, whatever their split into micro-batches
        and processes."""
        index = self._bin(t)
        value = loss.detach().abs().double()
        finite = torch.isfinite(value)
        zeros = torch.zeros(self.bins, dtype=torch.float64, device=self.bin_loss.device)
        sums = zeros.index_add(0, index[finite], value[finite])
        counts = zeros.index_add(0, index[finite], torch.ones_like(value[finite]))
        batch = torch.stack([sums, counts])
        self._pending = batch if self._pending is None else self._pending + batch
        if not self.deferred:
            self.commit()

    @torch.no_grad()
    def commit(self) -> None:
        """Apply the losses folded in since the last commit (summed over processes under
        torch.distributed); the first commit sets every bin to their mean (the proposal starts
        uniform)."""
        pending = self._pending
        self._pending = None
        if pending is None:
            pending = torch.zeros(2, self.bins, dtype=torch.float64, device=self.bin_loss.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(pending)
        sums, counts = pending[0], pending[1]
        if counts.sum() == 0:
            return
        running = self.bin_loss.double()
        if self.updates == 0:
            running.fill_(float(sums.sum() / counts.sum()))
        seen = counts > 0
        running[seen] = self.decay * running[seen] + (1.0 - self.decay) * sums[seen] / counts[seen]
        self.bin_loss.copy_(running)
        self.updates += 1
