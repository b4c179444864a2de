"""A small convolutional VQ-VAE: encoder, vector quantizer (EMA or straight-through codebook
updates, dead-code restarts), decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _stages(factor: int) -> int:
    stages = int(math.log2(factor)) if factor > 0 else 0
    if factor < 2 or 2**stages != factor:
        raise ValueError(f"factor must be a power of two >= 2, got {factor}")
    return stages


class Encoder(nn.Module):
    """Images [B, C, H, W] → code vectors [B, code_dim, H/f, W/f] (log2 f stride-2 stages)."""

    def __init__(
        self, channels: int, hidden: int, code_dim: int, factor: int, res_blocks: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1)]
        for _ in range(_stages(factor)):
            layers += [nn.ReLU(), nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)]
        layers += [ResBlock(hidden) for _ in range(res_blocks)]
        layers += [nn.ReLU(), nn.Conv2d(hidden, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Code vectors [B, code_dim, h, w] → images [B, C, h·f, w·f] (unbounded; clamp to [0, 1])."""

    def __init__(
        self, channels: int, hidden: int, code_dim: int, factor: int, res_blocks: int
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(code_dim, hidden, 3, padding=1)]
        layers += [ResBlock(hidden) for _ in range(res_blocks)]
        for _ in range(_stages(factor)):
            layers += [nn.ReLU(), nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1)]
        layers += [nn.ReLU(), nn.Conv2d(hidden, channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class VectorQuantizer(nn.Module):
    """Nearest-code quantizer with dead-code restarts; two codebook update rules.

    `update="ema"` (VQ-VAE-2): in training mode each forward moves every used code toward the
    mean of the vectors assigned to it (EMA with `decay`, Laplace-smoothed counts); the loss is
    the commitment term β‖z − sg[e]‖² alone. `update="straight_through"` (VQ-VAE): the codebook
    is a parameter learnt by the codebook loss ‖sg[z] − e‖² added to the commitment term. Either
    way codes unused for `dead_after` consecutive training steps are re-initialised from random
    input vectors of the batch, the codebook is initialised from the first training batch, and
    gradients reach the input straight through.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        *,
        update: str = "ema",
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        dead_after: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if codebook_size < 2 or code_dim < 1:
            raise ValueError(
                f"codebook_size must be >= 2 and code_dim >= 1, got {codebook_size}, {code_dim}"
            )
        if update not in ("ema", "straight_through"):
            raise ValueError(f"update must be 'ema' or 'straight_through', got {update!r}")
        self.codebook_size, self.code_dim, self.update_rule = codebook_size, code_dim, update
        self.beta, self.decay, self.eps, self.dead_after = beta, decay, eps, dead_after
        self.generator = torch.Generator().manual_seed(seed)
        codebook = torch.randn(codebook_size, code_dim, generator=self.generator)
        if update == "ema":
            self.register_buffer("codebook", codebook)
        else:
            self.codebook = nn.Parameter(codebook)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("code_sum", codebook.clone())
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))
        self.register_buffer("initialised", torch.tensor(False))
        self.restarts = 0  # codes re-initialised since the caller last reset this counter

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of `flat` [N, code_dim] (float64 distances)."""
        x, e = flat.double(), self.codebook.double()
        distances = (x * x).sum(1, keepdim=True) - 2 * x @ e.T + (e * e).sum(1)
        return distances.argmin(1)

    def _random_rows(self, flat: torch.Tensor, n: int) -> torch.Tensor:
        index = torch.randint(len(flat), (n,), generator=self.generator).to(flat.device)
        return flat[index]

    @torch.no_grad()
    def initialise(self, flat: torch.Tensor) -> None:
        """Set the codebook to random rows of `flat` [N, code_dim]."""
        self.codebook.copy_(self._random_rows(flat, self.codebook_size))
        self.code_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """One training step's codebook bookkeeping: the EMA step (EMA rule), dead-code restarts."""
        counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)
        if self.update_rule == "ema":
            sums = torch.zeros_like(self.code_sum).index_add_(0, codes, flat)
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.code_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n
            self.codebook.copy_(self.code_sum / smoothed[:, None])

        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.unused_steps >= self.dead_after).nonzero().squeeze(1)
        if len(dead):
            fresh = self._random_rows(flat, len(dead))
            self.codebook[dead] = fresh
            self.code_sum[dead] = fresh
            self.cluster_size[dead] = 1.0
            self.unused_steps[dead] = 0
            self.restarts += len(dead)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z [B, D, h, w] → (quantized z with straight-through gradient, codes [B, h, w],
        quantizer loss: β‖z − sg[e]‖², plus ‖sg[z] − e‖² under the straight-through rule)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not self.initialised:
            self.initialise(flat.detach())
        codes = self.nearest(flat.detach())
        quant = self.codebook[codes]  # a copy: the update below does not move it
        if self.training:
            self.update(flat.detach(), codes)
        loss = self.beta * F.mse_loss(flat, quant.detach())
        if self.update_rule == "straight_through":
            loss = loss + F.mse_loss(quant, flat.detach())
        quant = flat + (quant - flat).detach()
        return quant.reshape(b, h, w, d).permute(0, 3, 1, 2), codes.reshape(b, h, w), loss

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, h, w] → code vectors [B, D, h, w]."""
        return self.codebook[codes].permute(0, 3, 1, 2)


def perplexity(codes: torch.Tensor, codebook_size: int) -> float:
    """exp(entropy) of the code usage in `codes`: 1 when one code is used, K when all equally."""
    p = torch.bincount(codes.flatten(), minlength=codebook_size).double()
    p = p[p > 0] / p.sum()
    return float(torch.exp(-(p * p.log()).sum()))


class VQVAE(nn.Module):
    """Encoder → vector quantizer → decoder, on images in [0, 1]."""

    def __init__(
        self,
        *,
        channels: int = 1,
        hidden: int = 64,
        code_dim: int = 32,
        codebook_size: int = 256,
        factor: int = 4,
        res_blocks: int = 2,
        codebook_update: str = "ema",
        dead_after: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(channels, hidden, code_dim, factor, res_blocks)
        self.quantizer = VectorQuantizer(
            codebook_size, code_dim, update=codebook_update, dead_after=dead_after, seed=seed
        )
        self.decoder = Decoder(channels, hidden, code_dim, factor, res_blocks)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output convolution weight (where VQGAN balances its losses)."""
        return self.decoder.net[-1].weight

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses and outputs for images x [B, C, H, W] in [0, 1]: `loss` = MSE + quantizer."""
        quant, codes, vq_loss = self.quantizer(self.encoder(x))
        recon = self.decoder(quant)
        mse = F.mse_loss(recon, x)
        return {
            "loss": mse + vq_loss,
            "mse": mse,
            "vq_loss": vq_loss,
            "codes": codes,
            "recon": recon,
        }

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] in [0, 1] → codes [B, h, w] (no codebook update)."""
        z = self.encoder(x)
        b, d, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(-1, d)).reshape(b, h, w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [B, h, w] → images [B, C, H, W] clamped to [0, 1]."""
        return self.decoder(self.quantizer.lookup(codes)).clamp(0, 1)
