"""LCMD: token embeddings + denoiser + schedule, with the training loss, the ELBO and sampling."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from . import objective as obj
from .codec import TokenSpec, check_positions
from .config import DiffusionConfig, ModelConfig
from .denoiser import Denoiser
from .embedding import TokenEmbedding
from .sampler import Sampler
from .schedule import ShiftedCosineSchedule, alpha_sigma_from_log_snr


def _split_overrides(overrides: dict[str, Any]) -> tuple[ModelConfig, DiffusionConfig]:
    model_keys, diff_keys = set(ModelConfig.model_fields), set(DiffusionConfig.model_fields)
    unknown = sorted(set(overrides) - model_keys - diff_keys)
    if unknown:
        raise ValueError(
            f"unknown LCMD option {unknown[0]!r}; options are fields of ModelConfig "
            f"({', '.join(sorted(model_keys))}) or DiffusionConfig ({', '.join(sorted(diff_keys))})"
        )
    try:
        model = ModelConfig(**{k: v for k, v in overrides.items() if k in model_keys})
        diffusion = DiffusionConfig(**{k: v for k, v in overrides.items() if k in diff_keys})
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return model, diffusion


class LCMD(nn.Module):
    """Latent consistency-matching diffusion over LongTensor[B, L] tokens in [0, vocab_size).

    `LCMD(vocab_size, seq_len, num_classes=0, size="tiny", **overrides)` where overrides are any
    field of `ModelConfig` (width, embed_dim, embed_norm, ...) or `DiffusionConfig` (shift,
    drop_prob, cm_weight, ...). `token_shape` (default `(seq_len,)`) is the grid the tokens come
    from, used by the sin-cos positional encodings; `positions` (one integer coordinate tuple per
    token, see `TokenSpec.positions`) replaces the grid for tokens that come from none.
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        *,
        num_classes: int = 0,
        size: str = "tiny",
        token_shape: tuple[int, ...] | None = None,
        positions: Sequence[Sequence[int]] | None = None,
        **overrides: Any,
    ):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        token_shape = tuple(token_shape or (seq_len,))
        if math.prod(token_shape) != seq_len:
            raise ValueError(f"token_shape {token_shape} does not have seq_len={seq_len} positions")
        self.model_config, self.diffusion_config = _split_overrides({"size": size, **overrides})
        self.vocab_size, self.seq_len, self.num_classes = vocab_size, seq_len, num_classes
        self.token_shape = token_shape
        self.positions = None if positions is None else check_positions(positions, seq_len)
        mc, dc = self.model_config, self.diffusion_config
        self.schedule = ShiftedCosineSchedule(dc.shift, dc.logsnr_min, dc.logsnr_max)
        self.embedding = TokenEmbedding(
            vocab_size, mc.embed_dim, norm=mc.embed_norm, frozen=mc.freeze_embeddings
        )
        self.denoiser = Denoiser(
            vocab_size,
            mc.embed_dim,
            token_shape,
            num_classes=num_classes,
            size=mc.size,
            width=mc.width,
            depth=mc.depth,
            heads=mc.heads,
            mlp_ratio=mc.mlp_ratio,
            dropout=mc.dropout,
            pos_encoding=mc.pos_encoding,
            positions=self.positions,
            self_condition=mc.self_condition,
            attention_backend=mc.attention,
        )

    @classmethod
    def from_config(cls, spec: TokenSpec, model: ModelConfig, diffusion: DiffusionConfig) -> LCMD:
        """Build from a codec's token spec and the model/diffusion sections of a RunConfig."""
        return cls(
            spec.vocab_size,
            spec.seq_len,
            num_classes=spec.num_classes,
            token_shape=spec.token_shape,
            positions=spec.positions,
            **model.model_dump(),
            **diffusion.model_dump(),
        )

    def hparams(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model: `LCMD(**model.hparams())`."""
        return {
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "num_classes": self.num_classes,
            "token_shape": list(self.token_shape),
            "positions": None if self.positions is None else [list(p) for p in self.positions],
            **self.model_config.model_dump(),
            **self.diffusion_config.model_dump(),
        }

    # ----------------------------------------------------------------------------- validation
    def _check_tokens(self, tokens: Tensor, name: str = "tokens") -> Tensor:
        if (
            not isinstance(tokens, Tensor)
            or tokens.is_floating_point()
            or tokens.is_complex()
            or tokens.dtype == torch.bool
        ):
            got = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"{name} must be an integer tensor (LongTensor[B, L]), got {got}")
        if tokens.dim() != 2 or tokens.shape[1] != self.seq_len or tokens.shape[0] < 1:
            raise ValueError(
                f"{name} must have shape [B, {self.seq_len}], got {list(tokens.shape)}"
            )
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(
                f"{name} must lie in [0, {self.vocab_size}), found values in [{lo}, {hi}]"
            )
        return tokens.long()

    def _check_labels(self, labels: Tensor | int | None, batch: int) -> Tensor | None:
        if labels is None:
            return None
        if self.num_classes == 0:
            raise ValueError("labels were given but the model is unconditional (num_classes=0)")
        if isinstance(labels, int):
            labels = torch.full((batch,), labels, dtype=torch.long)
        if (
            not isinstance(labels, Tensor)
            or labels.is_floating_point()
            or labels.dim() != 1
            or labels.shape[0] != batch
        ):
            got = list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"labels must be an int or LongTensor[{batch}], got {got}")
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        return labels.long().to(self.device)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.embedding.table.device

    # -------------------------------------------------------------------------------- network
    def denoise(
        self,
        z: Tensor,
        log_snr: Tensor,
        labels: Tensor | None = None,
        self_cond: Tensor | None = None,
        dropped: Tensor | None = None,
    ) -> Tensor:
        """Logits[B, L, K] (float32) for latents z[B, L, D] at log-SNR λ[B].

        The network sees z rescaled to unit variance (the learned mask vector at `dropped`
        positions); its logits are added to the Bayes readout of the forward process, which is
        switched off where the latent was dropped.
        """
        table = self.embedding.weight
        z = z.to(table.dtype)
        alpha, sigma = alpha_sigma_from_log_snr(log_snr, z.dtype)
        per_dim_var = table.detach().pow(2).mean()
        scale = torch.rsqrt(alpha**2 * per_dim_var + sigma**2)[:, None, None]
        net_in = z * scale
        if dropped is not None:
            net_in = torch.where(dropped[..., None], self.embedding.mask_vector.to(z.dtype), net_in)
        logits = self.denoiser(net_in, log_snr, labels, self_cond).float()
        if self.model_config.output_prior:
            keep = None if dropped is None else ~dropped
            with torch.autocast(z.device.type, enabled=False):
                logits = obj.bayes_readout(
                    z.float(), table.float(), alpha.float(), sigma.float(), keep, base=logits
                )
        return logits

    # ---------------------------------------------------------------------------------- loss
    def loss(
        self, tokens: Tensor, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The LCMD objective on a batch; each value is a scalar in nats per token.

        In training mode: random dropping, label dropout, a rec slice of ⌈B·rec_fraction⌉ copies
        at t = 0 and the CM term. In eval mode the same code gives the plain ELBO (no dropping,
        L_rec on every sequence), and `bits_per_token` is then an upper bound on −log₂ p(x) / L.
        """
        tokens = self._check_tokens(tokens).to(self.device)
        labels = self._check_labels(labels, tokens.shape[0])
        terms = self._terms(tokens, labels, generator)
        return {k: v.mean() if k != "total" else v for k, v in terms.items()}

    @torch.no_grad()
    def elbo(
        self, tokens: Tensor, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Per-sequence ELBO in bits per token, FloatTensor[B] (eval-mode bound, one t per row)."""
        was_training = self.training
        self.eval()
        try:
            tokens = self._check_tokens(tokens).to(self.device)
            labels = self._check_labels(labels, tokens.shape[0])
            return self._terms(tokens, labels, generator)["bits_per_token"]
        finally:
            self.train(was_training)

    def _terms(
        self, tokens: Tensor, labels: Tensor | None, generator: torch.Generator | None
    ) -> dict[str, Tensor]:
        dc, training = self.diffusion_config, self.training
        device = self.device
        b, length = tokens.shape
        table = self.embedding.weight
        n_rec = math.ceil(b * dc.rec_fraction) if training else b
        rows = torch.cat([tokens, tokens[:n_rec]])
        embeds = torch.nn.functional.embedding(rows, table)

        t = obj.low_discrepancy_times(b, generator=generator, device=device)
        t_all = torch.cat([t, torch.zeros(n_rec, dtype=t.dtype, device=device)])
        log_snr = self.schedule.log_snr(t_all).to(embeds.dtype)
        alpha, sigma = self.schedule.alpha_sigma(t_all)
        alpha, sigma = alpha.to(embeds.dtype), sigma.to(embeds.dtype)
        eps = torch.randn(embeds.shape, generator=generator, device=device, dtype=embeds.dtype)
        z = alpha[:, None, None] * embeds + sigma[:, None, None] * eps

        drop_p = dc.drop_prob if training else 0.0
        dropped = obj.drop_mask(rows.shape, drop_p, generator=generator, device=device)
        row_labels = None
        if self.num_classes:
            row_labels = torch.full((b + n_rec,), self.denoiser.null_class, device=device)
            if labels is not None:
                keep = torch.ones(b + n_rec, dtype=torch.bool, device=device)
                if training and dc.label_dropout > 0:
                    keep = (
                        torch.rand(b + n_rec, generator=generator, device=device)
                        >= dc.label_dropout
                    )
                row_labels = torch.where(keep, torch.cat([labels, labels[:n_rec]]), row_labels)

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
        diffusion = obj.diffusion_loss(embeds[:b], x_hat, self.schedule.snr_prime(t), keep)
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
            )

        per_tok = 1.0 / length
        terms = {
            "diffusion": diffusion * per_tok,
            "reconstruction": reconstruction * per_tok,
            "prior": prior * per_tok,
            "consistency": consistency * per_tok,
            "dropped_ce": dropped_ce * per_tok,
            "acc_t0": (logits[b:].detach().argmax(-1) == tokens[:n_rec]).float().mean(-1),
        }
        if n_rec == b:
            terms["bits_per_token"] = obj.bits(diffusion + reconstruction + prior, length)
        else:
            terms["bits_per_token"] = obj.bits(
                diffusion.mean() + reconstruction.mean() + prior.mean(), length
            )
        if dc.loss == "ce_only":
            total = obj.cross_entropy(logits, rows).mean() * per_tok
        else:
            total = (
                dc.w_diff * terms["diffusion"].mean()
                + dc.w_rec * (terms["reconstruction"].mean() + terms["dropped_ce"].mean())
                + dc.w_prior * terms["prior"].mean()
                + dc.cm_weight * terms["consistency"].mean()
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
    ) -> Tensor:
        """KL(sg[p(·|z_s, s)] ‖ p(·|z_t, t)) for s < t on the same trajectory."""
        dc, b = self.diffusion_config, t.shape[0]
        s = obj.consistency_times(t, dc.cm_pairs, dc.cm_delta, generator=generator)
        log_snr_s = self.schedule.log_snr(s).to(z_t.dtype)
        a_s, s_s = (v.to(z_t.dtype)[:, None, None] for v in self.schedule.alpha_sigma(s))
        with torch.no_grad():
            if dc.cm_target == "same_noise":
                z_s = a_s * embeds + s_s * eps
            else:
                a_t, s_t = (v.to(z_t.dtype)[:, None, None] for v in self.schedule.alpha_sigma(t))
                x_sg = x_hat.detach()
                z_s = a_s * x_sg + s_s * (z_t - a_t * x_sg) / s_t
            target = self.denoise(
                z_s,
                log_snr_s,
                None if row_labels is None else row_labels[:b],
                None if self_cond is None else self_cond[:b],
                dropped,
            )
        return obj.consistency_loss(target, logits_t)

    # ------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        steps: int = 100,
        labels: Tensor | int | None = None,
        guidance: float = 1.0,
        known: Tensor | None = None,
        seed: int | None = None,
        sampler: str = "ancestral",
        temperature: float = 0.0,
    ) -> Tensor:
        """Generate LongTensor[num_samples, L].

        labels: class ids (int or LongTensor[num_samples]) for a conditional model; guidance: CFG
        weight w (1 = plain conditional); known: LongTensor[num_samples, L], −1 where free, the
        token to keep elsewhere; seed makes the draw reproducible.
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if guidance != 1.0 and self.num_classes == 0:
            raise ValueError("guidance != 1 needs a class-conditional model (num_classes > 0)")
        if guidance != 1.0 and labels is None:
            raise ValueError("guidance != 1 needs labels to guide toward")
        labels = self._check_labels(labels, num_samples)
        if known is not None:
            if (
                not isinstance(known, Tensor)
                or known.shape != (num_samples, self.seq_len)
                or known.is_floating_point()
            ):
                got = list(known.shape) if isinstance(known, Tensor) else type(known).__name__
                raise ValueError(
                    f"known must be LongTensor[{num_samples}, {self.seq_len}] (-1 = free), "
                    f"got {got}"
                )
            if int(known.min()) < -1 or int(known.max()) >= self.vocab_size:
                raise ValueError(f"known must lie in [-1, {self.vocab_size})")
            known = known.long().to(self.device)
        runner = Sampler(
            self.schedule, kind=sampler, steps=steps, guidance=guidance, temperature=temperature
        )
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            table = self.embedding.weight
            return runner.sample(
                lambda z, lam, lab, sc: self.denoise(z, lam, lab, sc),
                table,
                num_samples,
                self.seq_len,
                labels=labels,
                null_label=self.denoiser.null_class if self.num_classes else None,
                known=known,
                self_condition=self.model_config.self_condition,
                generator=generator,
            )
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------------------ training
    def param_groups(self, lr: float, embed_lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: embeddings (own lr, no decay), matrices (decay), the rest (no decay)."""
        embed = [p for p in self.embedding.parameters() if p.requires_grad]
        decay, no_decay = [], []
        for name, p in self.denoiser.named_parameters():
            if not p.requires_grad:
                continue
            is_matrix = p.dim() >= 2 and name not in ("pos",) and "class_embed" not in name
            (decay if is_matrix else no_decay).append(p)
        groups = [
            {"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"},
            {"params": embed, "lr": embed_lr, "weight_decay": 0.0, "name": "embeddings"},
        ]
        return [g for g in groups if g["params"]]

    def diagnostics(self) -> dict[str, float]:
        """Embedding-collapse diagnostics of the current table."""
        return self.embedding.diagnostics()
