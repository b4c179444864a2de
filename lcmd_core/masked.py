"""Masked (absorbing-state) diffusion on the same network as LCMD: `diffusion.process=masked`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import objective as obj
from .diffusion_model import DiffusionModel
from .embedding import collapse_diagnostics
from .masking import T_MIN, MaskingSchedule, unmask


class MaskedDiffusion(DiffusionModel):
    """Absorbing-state diffusion in continuous time over LongTensor[B, L] tokens (MDLM/MD4).

    Tokens are replaced by [MASK] (id `vocab_size`, input only) with probability 1 − α(t); the
    `Denoiser` reads the embedded tokens and predicts logits over the K real tokens, so [MASK]
    gets zero mass. The loss is the continuous-time ELBO, w(t) Σ_{i masked} CE_i with
    w = −α′/(1 − α); unmasked tokens carry over unchanged. The network does not see t (MDLM: the
    masked tokens tell it), so the sampler can skip it while no token changes. Same options as
    `LCMD` for the network, classes and self-conditioning; `mask_schedule` picks α(t).
    """

    process = "masked"
    default_temperature = 1.0
    default_x0_temperature = None
    default_readout_gate = None

    def _build_inputs(self) -> None:
        self.schedule = MaskingSchedule(self.diffusion_config.mask_schedule)
        self.mask_id = self.vocab_size
        # Unit-variance rows, the scale the denoiser's input layer expects (LCMD rescales z).
        self.embedding = nn.Embedding(self.vocab_size + 1, self.model_config.embed_dim)
        nn.init.normal_(self.embedding.weight)

    # -------------------------------------------------------------------------------- network
    def denoise(
        self, noisy: Tensor, labels: Tensor | None = None, self_cond: Tensor | None = None
    ) -> Tensor:
        """Logits[B, L, K] (float32) over the real tokens for noisy[B, L] (mask id = K)."""
        net_in = self.embedding(noisy)
        no_time = torch.zeros(noisy.shape[0], device=noisy.device)
        return self.network(net_in, no_time, labels, self_cond).float()

    def predicted_embedding(self, logits: Tensor, noisy: Tensor) -> Tensor:
        """Self-conditioning input [B, L, D]: softmax(ℓ) E at masked positions, the token's own
        embedding where it is unmasked (it carries over)."""
        table = self.embedding.weight
        x_hat = obj.expected_embedding(logits, table[: self.vocab_size])
        own = table[noisy.clamp_max(self.vocab_size - 1)]
        return torch.where((noisy == self.mask_id)[..., None], x_hat, own)

    # ---------------------------------------------------------------------------------- loss
    def _terms(
        self,
        tokens: Tensor,
        labels: Tensor | None,
        generator: torch.Generator | None,
        target: DiffusionModel | None = None,
    ) -> dict[str, Tensor]:
        device, (b, length) = self.device, tokens.shape
        t = obj.low_discrepancy_times(b, generator=generator, device=device).clamp_min(T_MIN)
        alpha = self.schedule.alpha(t)
        u = torch.rand(tokens.shape, generator=generator, device=device, dtype=alpha.dtype)
        masked = u >= alpha[:, None]  # masked with probability 1 − α(t)
        noisy = torch.where(masked, self.mask_id, tokens)
        row_labels = self._row_labels(labels, b, generator)

        self_cond = None
        dc = self.diffusion_config
        if self.model_config.self_condition:
            self_cond = torch.zeros(b, length, self.model_config.embed_dim, device=device)
            if self.training and dc.self_cond_prob > 0:
                with torch.no_grad():
                    first = self.predicted_embedding(
                        self.denoise(noisy, row_labels, None), noisy
                    ).to(self_cond.dtype)
                use = torch.rand(b, generator=generator, device=device) < dc.self_cond_prob
                self_cond = torch.where(use[:, None, None], first, self_cond)

        logits = self.denoise(noisy, row_labels, self_cond)
        ce = obj.cross_entropy(logits, tokens, masked)
        nelbo = self.schedule.weight(t).to(ce.dtype) * ce
        count = masked.sum()
        correct = ((logits.detach().argmax(-1) == tokens) & masked).sum()
        per_tok = 1.0 / length
        return {
            "diffusion": nelbo * per_tok,
            "masked_ce": ce.sum() / count.clamp_min(1),
            "mask_rate": masked.float().mean(-1),
            "acc_masked": correct / count.clamp_min(1),
            "bits_per_token": obj.bits(nelbo, length),
            "total": nelbo.mean() * per_tok,
        }

    # ------------------------------------------------------------------------------ sampling
    def _draw(
        self,
        num_samples: int,
        *,
        steps: int,
        labels: Tensor | None,
        guidance: float,
        known: Tensor | None,
        generator: torch.Generator | None,
        sampler: str,
        temperature: float,
        x0_temperature: float | None,
        readout_gate: float | None,
    ) -> Tensor:
        if sampler != "ancestral":
            raise ValueError(
                f"sampler {sampler!r} is for diffusion.process=continuous; masked diffusion "
                "samples with ancestral unmasking (sampler=ancestral)"
            )
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        return unmask(
            self.denoise,
            self.schedule,
            self.mask_id,
            num_samples,
            self.seq_len,
            steps=steps,
            guidance=guidance,
            temperature=temperature,
            labels=labels,
            null_label=self.num_classes if self.num_classes else None,
            known=known,
            self_condition=self.predicted_embedding if self.model_config.self_condition else None,
            generator=generator,
            device=self.device,
        )

    def diagnostics(self) -> dict[str, float]:
        """Collapse diagnostics of the input embeddings of the K real tokens."""
        return collapse_diagnostics(self.embedding.weight[: self.vocab_size].detach().float())
