"""LCMD: token embeddings + denoiser + schedule, with the training loss, the ELBO and sampling."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from . import objective as obj
from .config import check_stagger_backbone
from .diffusion_model import DiffusionModel
from .embedding import TokenEmbedding
from .sampler import Sampler
from .schedule import ShiftedCosineSchedule, alpha_sigma_from_log_snr, staggered_times
from .time_warp import TimeWarp


class LCMD(DiffusionModel):
    """Latent consistency-matching diffusion over LongTensor[B, L] tokens in [0, vocab_size).

    `LCMD(vocab_size, seq_len, num_classes=0, model=None, diffusion=None, **overrides)`: a
    `ModelConfig` and a `DiffusionConfig` (default: theirs), with overrides on top — any field
    of either (size, width, embed_dim, embed_norm, shift, drop_prob, cm_weight, ...).
    `token_shape` (default `(seq_len,)`) is the grid the tokens come from, used by the sin-cos
    positional encodings; `positions` (one integer coordinate tuple per token, see
    `TokenSpec.positions`) replaces the grid for tokens that come from none. This is
    `diffusion.process=continuous`; `MaskedDiffusion` is the masked process on the same network.
    """

    process = "continuous"
    default_temperature = 0.0
    # Each sampling step moves towards softmax(ℓ/0.5) E: MNIST FID 51 → 37 on the same model
    # (docs/experiments.md, "The x0 temperature").
    default_x0_temperature = 0.5
    # Sampling weighs the Bayes readout by σ(λ_eff − 1): the four-sequence toy's match 0.60 →
    # 0.83, Shakespeare samples' real words 0.55 → 0.72, MNIST FID level (docs/experiments.md,
    # "The readout gate while sampling").
    default_readout_gate = 1.0

    def _build_inputs(self) -> None:
        mc, dc = self.model_config, self.diffusion_config
        check_stagger_backbone(mc, dc)
        self.schedule = ShiftedCosineSchedule(dc.shift, dc.logsnr_min, dc.logsnr_max)
        self.embedding = TokenEmbedding(
            self.vocab_size,
            mc.embed_dim,
            norm=mc.embed_norm,
            scale=mc.embed_scale,
            frozen=mc.freeze_embeddings,
        )
        self.time_warp = None if dc.time_sampling == "uniform" else TimeWarp()

    # -------------------------------------------------------------------------------- network
    def denoise(
        self,
        z: Tensor,
        log_snr: Tensor,
        labels: Tensor | None = None,
        self_cond: Tensor | None = None,
        dropped: Tensor | None = None,
        sampling_gate: float | None = None,
    ) -> Tensor:
        """Logits[B, L, K] (float32) for latents z[B, L, D] at log-SNR λ[B] (λ[B, L] under a
        staggered schedule).

        The network sees z rescaled to unit variance (the learned mask vector at `dropped`
        positions); its logits are added to the Bayes readout of the forward process, which is
        switched off where the latent was dropped and weighed by `readout_gate`.
        """
        table = self.embedding.weight
        z = z.to(table.dtype)
        alpha, sigma = alpha_sigma_from_log_snr(log_snr, z.dtype)
        per_dim_var = table.detach().pow(2).mean()
        scale = obj.per_token(torch.rsqrt(alpha**2 * per_dim_var + sigma**2))
        net_in = z * scale
        if dropped is not None:
            net_in = torch.where(dropped[..., None], self.embedding.mask_vector.to(z.dtype), net_in)
        logits = self.network(net_in, log_snr, labels, self_cond).float()
        if self.model_config.output_prior:
            keep = None if dropped is None else ~dropped
            with torch.autocast(z.device.type, enabled=False):
                logits = obj.bayes_readout(
                    z.float(),
                    table.float(),
                    alpha.float(),
                    sigma.float(),
                    keep,
                    base=logits,
                    gate=self.readout_gate(log_snr, sampling_gate),
                )
        return logits

    def readout_gate(self, log_snr: Tensor, sampling_gate: float | None = None) -> Tensor | None:
        """The Bayes readout's weight at log-SNR λ (None: weight 1 everywhere): σ(λ_eff − c) for
        each centre c of `model.output_prior_logsnr` and, while sampling, `sampling_gate`.

        λ_eff = λ + log mean_k ‖E_k‖² is the log-SNR of a token's own row: the readout's logit
        gaps are e^λ_eff up to O(1) factors, whatever the table's scale. Below c the local
        evidence is noisy and the network predicts alone; above it the readout takes over and is
        exact at the clean end. Trained with the readout at full weight, the network's logits
        are what the context says of a token beyond its own latent; a sampling gate lets that
        context decide more at mid noise, so every position keeps to one mode.
        """
        trained = self.model_config.output_prior_logsnr
        centres = [c for c in (trained, sampling_gate) if c is not None]
        if not centres:
            return None
        row_norm2 = self.embedding.weight.detach().float().pow(2).sum(-1).mean()
        lam_eff = log_snr.float() + row_norm2.log()
        weight = torch.sigmoid(lam_eff - centres[0])
        for centre in centres[1:]:
            weight = weight * torch.sigmoid(lam_eff - centre)
        return weight

    # ---------------------------------------------------------------------------------- loss
    def token_times(self, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """The time each position is at when the sequence is at t[B], and its rate dτ/dt:
        (t, None) for one noise level per sequence, ([B, L], [B, L]) under `diffusion.stagger`."""
        stagger = self.diffusion_config.stagger
        if stagger == 0:
            return t, None
        return staggered_times(t, self.seq_len, stagger)

    def _terms(
        self,
        tokens: Tensor,
        labels: Tensor | None,
        generator: torch.Generator | None,
        target: DiffusionModel | None = None,
    ) -> dict[str, Tensor]:
        dc, training = self.diffusion_config, self.training
        device = self.device
        b, length = tokens.shape
        table = self.embedding.weight
        n_rec = math.ceil(b * dc.rec_fraction) if training else b
        rows = torch.cat([tokens, tokens[:n_rec]])
        embeds = torch.nn.functional.embedding(rows, table)

        t = obj.low_discrepancy_times(b, generator=generator, device=device)
        warp = self.time_warp if training else None
        if warp is not None:
            t = warp.sample(t)
        t_all = torch.cat([t, torch.zeros(n_rec, dtype=t.dtype, device=device)])
        tau, rate = self.token_times(t_all)
        log_snr = self.schedule.log_snr(tau).to(embeds.dtype)
        alpha, sigma = self.schedule.alpha_sigma(tau)
        alpha, sigma = obj.per_token(alpha.to(embeds.dtype)), obj.per_token(sigma.to(embeds.dtype))
        eps = torch.randn(embeds.shape, generator=generator, device=device, dtype=embeds.dtype)
        z = alpha * embeds + sigma * eps

        drop_p = dc.drop_prob if training else 0.0
        dropped = obj.drop_mask(rows.shape, drop_p, generator=generator, device=device)
        row_labels = self._row_labels(labels, b + n_rec, generator)

        self_cond = None
        if self.model_config.self_condition:
            self_cond = torch.zeros_like(z)
            if training and dc.self_cond_prob > 0:
                with torch.no_grad():
                    first = obj.expected_embedding(
                        self.denoise(z, log_snr, row_labels, None, dropped), table
                    )
                use = torch.rand(b + n_rec, generator=generator, device=device) < dc.self_cond_prob
                self_cond = torch.where(use[:, None, None], first, self_cond)

        logits = self.denoise(z, log_snr, row_labels, self_cond, dropped)
        x_hat = obj.expected_embedding(logits[:b], table)

        keep = ~dropped[:b]
        snr_prime = self.schedule.snr_prime(tau[:b])
        if rate is not None:
            snr_prime = snr_prime * rate[:b].to(snr_prime.dtype)
        diffusion = obj.diffusion_loss(embeds[:b], x_hat, snr_prime, keep)
        noisy_ce = obj.cross_entropy(logits[:b], tokens, keep)
        reconstruction = obj.cross_entropy(logits[b:], tokens[:n_rec])
        dropped_ce = obj.cross_entropy(logits[:b], tokens, dropped[:b])
        alpha_1, sigma_1 = self.schedule.alpha_sigma(torch.ones(1, device=device, dtype=t.dtype))
        prior = obj.prior_loss(embeds[:b], alpha_1, sigma_1)

        consistency = torch.zeros(b, device=device)
        if dc.cm_weight > 0 and training and dc.loss == "lcmd":
            consistency = self._consistency(
                t,
                z[:b],
                embeds[:b],
                eps[:b],
                x_hat,
                logits[:b],
                row_labels,
                self_cond,
                dropped[:b],
                generator,
                target,
            )

        elbo_at_t = diffusion
        if warp is not None:
            weight = 1.0 / warp.density(t)
            elbo_at_t = diffusion * weight.to(diffusion.dtype)
            if dc.time_sampling == "importance":  # every term at t weighted by 1/q(t)
                at_t = (
                    dc.w_diff * diffusion
                    + dc.w_rec * dropped_ce
                    + dc.cm_weight * consistency
                    + dc.ce_weight * noisy_ce
                )
                warp.update(t, at_t.detach())
                diffusion, dropped_ce, consistency, noisy_ce = (
                    (term * weight.to(term.dtype))
                    for term in (diffusion, dropped_ce, consistency, noisy_ce)
                )
            else:  # warp: q(t) ∝ the ELBO's integrand at t; the training terms keep q's weighting
                warp.update(t, diffusion.detach())

        per_tok = 1.0 / length
        terms = {
            "diffusion": diffusion * per_tok,
            "reconstruction": reconstruction * per_tok,
            "prior": prior * per_tok,
            "consistency": consistency * per_tok,
            "dropped_ce": dropped_ce * per_tok,
            "noisy_ce": noisy_ce * per_tok,
            "acc_t0": (logits[b:].detach().argmax(-1) == tokens[:n_rec]).float().mean(-1),
        }
        if n_rec == b:
            terms["bits_per_token"] = obj.bits(elbo_at_t + reconstruction + prior, length)
        else:
            terms["bits_per_token"] = obj.bits(
                elbo_at_t.mean() + reconstruction.mean() + prior.mean(), length
            )
        if dc.loss == "ce_only":
            total = obj.cross_entropy(logits, rows).mean() * per_tok
        else:
            total = (
                dc.w_diff * terms["diffusion"].mean()
                + dc.w_rec * (terms["reconstruction"].mean() + terms["dropped_ce"].mean())
                + dc.w_prior * terms["prior"].mean()
                + dc.cm_weight * terms["consistency"].mean()
                + dc.ce_weight * terms["noisy_ce"].mean()
            )
        terms["total"] = total
        return terms

    def _consistency(
        self,
        t: Tensor,
        z_t: Tensor,
        embeds: Tensor,
        eps: Tensor,
        x_hat: Tensor,
        logits_t: Tensor,
        row_labels: Tensor | None,
        self_cond: Tensor | None,
        dropped: Tensor,
        generator: torch.Generator | None,
        target: DiffusionModel | None,
    ) -> Tensor:
        """KL(sg[p(·|z_s, s)] ‖ p(·|z_t, t)) for s < t on the same trajectory; the target comes
        from `target` (the EMA) when `diffusion.cm_target_weights=ema`, else from this model."""
        dc, b = self.diffusion_config, t.shape[0]
        s, _ = self.token_times(
            obj.consistency_times(t, dc.cm_pairs, dc.cm_delta, generator=generator)
        )
        log_snr_s = self.schedule.log_snr(s).to(z_t.dtype)
        a_s, s_s = (obj.per_token(v.to(z_t.dtype)) for v in self.schedule.alpha_sigma(s))
        with torch.no_grad():
            if dc.cm_target == "same_noise":
                z_s = a_s * embeds + s_s * eps
            else:
                tau_t, _ = self.token_times(t)
                a_t, s_t = (
                    obj.per_token(v.to(z_t.dtype)) for v in self.schedule.alpha_sigma(tau_t)
                )
                x_sg = x_hat.detach()
                z_s = a_s * x_sg + s_s * (z_t - a_t * x_sg) / s_t
            teacher = self
            if dc.cm_target_weights == "ema":
                if target is None:
                    raise ValueError(
                        "diffusion.cm_target_weights=ema: pass the EMA as loss(target=)"
                    )
                teacher = target
            target_logits = teacher.denoise(
                z_s,
                log_snr_s,
                None if row_labels is None else row_labels[:b],
                None if self_cond is None else self_cond[:b],
                dropped,
            )
        return obj.consistency_loss(target_logits, logits_t)

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
        x0_temperature: float,
        readout_gate: float | None,
    ) -> Tensor:
        runner = Sampler(
            self.schedule,
            kind=sampler,
            steps=steps,
            guidance=guidance,
            temperature=temperature,
            token_times=self.token_times,
            x0_temperature=x0_temperature,  # resolved by `sample`
        )
        return runner.sample(
            lambda z, lam, lab, sc: self.denoise(z, lam, lab, sc, sampling_gate=readout_gate),
            self.embedding.weight,
            num_samples,
            self.seq_len,
            labels=labels,
            null_label=self.num_classes if self.num_classes else None,
            known=known,
            self_condition=self.model_config.self_condition,
            generator=generator,
        )

    @contextmanager
    def one_step(self) -> Iterator[None]:
        """The time warp's proposal stays fixed over the `loss` calls inside and takes their
        losses in one update at the end (see `DiffusionModel.one_step`)."""
        warp = self.time_warp
        if warp is None:
            yield
            return
        warp.deferred = True
        try:
            yield
        finally:
            warp.deferred = False
        warp.commit()  # not after an error: under torch.distributed it would wait on the others

    def diagnostics(self) -> dict[str, float]:
        """Embedding-collapse diagnostics of the current table."""
        return self.embedding.diagnostics()
