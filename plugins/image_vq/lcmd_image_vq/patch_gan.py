"""Optional adversarial loss for the VQ-VAE (VQGAN, Esser et al. 2021): a patch discriminator
with the hinge loss and VQGAN's adaptive weight.

The generator term is weighted by λ = ‖∇L_rec‖ / (‖∇L_gan‖ + 1e-4), both gradients taken at the
decoder's last layer, so the adversarial push stays in proportion to the reconstruction loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Convolutional discriminator scoring overlapping patches (pix2pix's PatchGAN).

    `layers` stride-2 4×4 convolutions (GroupNorm, LeakyReLU 0.2) then a stride-1 head: one
    real/fake logit per patch. Works on any image of at least 2**layers pixels a side.
    """

    def __init__(self, channels: int, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        cin = width
        for i in range(1, layers):
            cout = width * min(2**i, 8)
            blocks += [
                nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False),
                nn.GroupNorm(min(32, cout // 4), cout),
                nn.LeakyReLU(0.2),
            ]
            cin = cout
        blocks.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: Tensor) -> Tensor:
        """Images [B, C, H, W] in [0, 1] → patch logits [B, 1, h, w]."""
        return self.net(images * 2 - 1)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss: mean(relu(1 − D(real))) + mean(relu(1 + D(fake))), halved."""
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def generator_loss(fake_logits: Tensor) -> Tensor:
    """The generator's hinge term: −mean(D(fake))."""
    return -fake_logits.mean()


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor) -> Tensor:
    """VQGAN's λ: gradient norms of the two losses at `last_layer`, detached, clamped to 1e4."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0, 1e4).detach()


class GanTraining:
    """The adversarial half of a VQ-VAE fit: a `PatchDiscriminator`, its Adam optimizer (the
    codec's lr, betas 0.5/0.9) and the weighted generator term."""

    def __init__(self, model: nn.Module, options: Any, device: torch.device) -> None:
        self.model, self.weight = model, options.gan_weight
        self.discriminator = PatchDiscriminator(options.channels, layers=_layers(options.size))
        self.discriminator.to(device)
        self.optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=options.lr, betas=(0.5, 0.9)
        )
        self.last = {"d_loss": 0.0, "g_loss": 0.0, "lambda": 0.0}

    def generator_term(self, out: dict[str, Tensor]) -> Tensor:
        """gan_weight · λ · (−mean D(recon)), λ balancing it against the reconstruction loss
        (the VQ-VAE forward's `mse`)."""
        self.discriminator.requires_grad_(False)
        g_loss = generator_loss(self.discriminator(out["recon"]))
        self.discriminator.requires_grad_(True)
        lam = adaptive_weight(out["mse"], g_loss, self.model.last_layer)
        self.last.update(g_loss=float(g_loss.detach()), **{"lambda": float(lam)})
        return self.weight * lam * g_loss

    def discriminator_step(self, real: Tensor, fake: Tensor) -> None:
        """One hinge-loss step of the discriminator on real images and detached reconstructions."""
        loss = discriminator_loss(self.discriminator(real), self.discriminator(fake.detach()))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.last["d_loss"] = float(loss.detach())

    def progress(self) -> str:
        """A progress-line fragment with the latest losses."""
        last = self.last
        return f"d_loss {last['d_loss']:.3f} g_loss {last['g_loss']:.3f} λ {last['lambda']:.3g} "


def _layers(size: int) -> int:
    """Discriminator depth for `size`-pixel images: 3 (pix2pix) where they are large enough."""
    return max(1, min(3, size.bit_length() - 3))
