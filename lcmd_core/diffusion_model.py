"""What every diffusion process over tokens shares: the network, input checks, the API, rebuilding.

A process is a subclass (`LCMD` for `continuous`, `MaskedDiffusion` for `masked`) that supplies
its corruption, loss terms and sampler; `lcmd_core.processes.build_model` builds the one a config
names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import pluggy
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from .backbone import BackboneSpec, build_backbone, check_logits, describe
from .codec import check_positions
from .config import DiffusionConfig, ModelConfig, check_process_options


def _configs(
    type_name: str,
    model: ModelConfig | None,
    diffusion: DiffusionConfig | None,
    overrides: dict[str, Any],
) -> tuple[ModelConfig, DiffusionConfig]:
    """The model's sections: the given configs (or the defaults) with `overrides` on top."""
    model_keys, diff_keys = set(ModelConfig.model_fields), set(DiffusionConfig.model_fields)
    unknown = sorted(set(overrides) - model_keys - diff_keys)
    if unknown:
        raise ValueError(
            f"unknown {type_name} option {unknown[0]!r}; options are fields of ModelConfig "
            f"({', '.join(sorted(model_keys))}) or DiffusionConfig ({', '.join(sorted(diff_keys))})"
        )
    model = model or ModelConfig()
    diffusion = diffusion or DiffusionConfig(process=overrides.get("process", "continuous"))
    model_over = {k: v for k, v in overrides.items() if k in model_keys}
    diff_over = {k: v for k, v in overrides.items() if k in diff_keys}
    try:
        if model_over:
            model = ModelConfig(**{**model.model_dump(), **model_over})
        if diff_over:
            diffusion = DiffusionConfig(**{**diffusion.model_dump(), **diff_over})
    except ValidationError as err:
        first = err.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    check_process_options(model, diffusion)
    return model.model_copy(), diffusion.model_copy()


class DiffusionModel(nn.Module):
    """Base of the processes: a `Denoiser` over LongTensor[B, L] tokens in [0, vocab_size).

    Subclasses set `process` and implement `_build_inputs` (their schedule and token
    embeddings), `_terms` (the loss terms of a batch), `_draw` (the sampler) and `diagnostics`.
    """

    process: ClassVar[str]
    default_temperature: ClassVar[float]
    default_x0_temperature: ClassVar[float | None]  # None: the process takes no x0 temperature
    default_readout_gate: ClassVar[float | None]  # None: no sampling gate on a Bayes readout

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        *,
        num_classes: int = 0,
        token_shape: tuple[int, ...] | None = None,
        positions: Sequence[Sequence[int]] | None = None,
        model: ModelConfig | None = None,
        diffusion: DiffusionConfig | None = None,
        plugins: pluggy.PluginManager | None = None,
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
        if diffusion is None:
            overrides.setdefault("process", self.process)
        self.model_config, self.diffusion_config = _configs(
            type(self).__name__, model, diffusion, overrides
        )
        if self.diffusion_config.process != self.process:
            raise ValueError(
                f"{type(self).__name__} is the {self.process} process, not "
                f"{self.diffusion_config.process}; build the model of a config with "
                "lcmd_core.build_model (LCMD: continuous, MaskedDiffusion: masked)"
            )
        self.vocab_size, self.seq_len, self.num_classes = vocab_size, seq_len, num_classes
        self.token_shape = token_shape
        self.positions = None if positions is None else check_positions(positions, seq_len)
        self._build_inputs()  # before the network: the init order fixes the random draws
        spec = BackboneSpec(
            vocab_size=vocab_size,
            embed_dim=self.model_config.embed_dim,
            token_shape=token_shape,
            positions=self.positions,
            num_classes=num_classes,
            model=self.model_config,
        )
        self.denoiser, self.backbone_owner = build_backbone(spec, plugins)

    def network(
        self,
        net_in: Tensor,
        log_snr: Tensor,
        labels: Tensor | None,
        self_cond: Tensor | None,
    ) -> Tensor:
        """The backbone's logits[B, L, K] (float32), its shape checked."""
        logits = self.denoiser(net_in, log_snr, labels, self_cond)
        expected = (net_in.shape[0], self.seq_len, self.vocab_size)
        return check_logits(logits, expected, self.model_config.backbone, self.backbone_owner)

    def _build_inputs(self) -> None:
        raise NotImplementedError

    def hparams(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this model: `type(model)(**model.hparams())`."""
        return {
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "num_classes": self.num_classes,
            "token_shape": list(self.token_shape),
            "positions": None if self.positions is None else [list(p) for p in self.positions],
            **self.model_config.model_dump(),
            **self.diffusion_config.model_dump(),
        }

    def describe_network(self, device: torch.device) -> str:
        """The backbone as the run log names it."""
        return describe(self.denoiser, self.model_config.backbone, self.backbone_owner, device)

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.embedding.weight.device

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

    def _check_known(self, known: Tensor | None, num_samples: int) -> Tensor | None:
        if known is None:
            return None
        if (
            not isinstance(known, Tensor)
            or known.shape != (num_samples, self.seq_len)
            or known.is_floating_point()
        ):
            got = list(known.shape) if isinstance(known, Tensor) else type(known).__name__
            raise ValueError(
                f"known must be LongTensor[{num_samples}, {self.seq_len}] (-1 = free), got {got}"
            )
        if int(known.min()) < -1 or int(known.max()) >= self.vocab_size:
            raise ValueError(f"known must lie in [-1, {self.vocab_size})")
        return known.long().to(self.device)

    # ---------------------------------------------------------------------------------- loss
    def loss(
        self,
        tokens: Tensor,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        target: DiffusionModel | None = None,
    ) -> dict[str, Tensor]:
        """The training objective on a batch; each value is a scalar in nats per token.

        `total` is what is minimised; `bits_per_token` is the batch's ELBO (in eval mode an
        upper bound on −log₂ p(x) / L).
        """
        tokens = self._check_tokens(tokens).to(self.device)
        labels = self._check_labels(labels, tokens.shape[0])
        terms = self._terms(tokens, labels, generator, target)
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
        self,
        tokens: Tensor,
        labels: Tensor | None,
        generator: torch.Generator | None,
        target: DiffusionModel | None = None,
    ) -> dict[str, Tensor]:
        raise NotImplementedError

    def _row_labels(
        self, labels: Tensor | None, rows: int, generator: torch.Generator | None
    ) -> Tensor | None:
        """Labels of `rows` rows (the batch repeated as needed), the null class where dropped."""
        if not self.num_classes:
            return None
        device = self.device
        null = torch.full((rows,), self.num_classes, device=device)
        if labels is None:
            return null
        dropout = self.diffusion_config.label_dropout
        keep = torch.ones(rows, dtype=torch.bool, device=device)
        if self.training and dropout > 0:
            keep = torch.rand(rows, generator=generator, device=device) >= dropout
        repeated = labels.repeat(math.ceil(rows / labels.shape[0]))[:rows]
        return torch.where(keep, repeated, null)

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
        temperature: float | None = None,
        x0_temperature: float | None = None,
        readout_gate: float | Literal["off"] | None = None,
    ) -> Tensor:
        """Generate LongTensor[num_samples, L].

        labels: class ids (int or LongTensor[num_samples]) for a conditional model; guidance: CFG
        weight w (1 = plain conditional); known: LongTensor[num_samples, L], −1 where free, the
        token to keep elsewhere; seed makes the draw reproducible; temperature: None for the
        process's default (`default_temperature`), 0 for argmax; x0_temperature: the sharpness
        of the clean estimate each step of a continuous process moves towards (1 for the model's
        own, 0 for the argmax; see `Sampler`), None for the process's default
        (`default_x0_temperature`; a process without one refuses a value); readout_gate: the
        centre c of the weight σ(λ_eff − c) a continuous process gives its Bayes readout while
        sampling (see `LCMD.readout_gate`), "off" for the readout as trained, None for the
        process's default (`default_readout_gate`; a process without one refuses a value).
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if guidance != 1.0 and self.num_classes == 0:
            raise ValueError("guidance != 1 needs a class-conditional model (num_classes > 0)")
        if guidance != 1.0 and labels is None:
            raise ValueError("guidance != 1 needs labels to guide toward")
        labels = self._check_labels(labels, num_samples)
        known = self._check_known(known, num_samples)
        temperature = self.default_temperature if temperature is None else temperature
        if x0_temperature is None:
            x0_temperature = self.default_x0_temperature
        elif self.default_x0_temperature is None:
            raise ValueError(
                f"x0_temperature sharpens a continuous process's estimate; {self.process} "
                "diffusion draws tokens (use temperature)"
            )
        gate = self.sampling_gate(readout_gate)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        try:
            return self._draw(
                num_samples,
                steps=steps,
                labels=labels,
                guidance=guidance,
                known=known,
                generator=generator,
                sampler=sampler,
                temperature=temperature,
                x0_temperature=x0_temperature,
                readout_gate=gate,
            )
        finally:
            self.train(was_training)

    def sampling_gate(self, readout_gate: float | Literal["off"] | None) -> float | None:
        """The sampling gate's centre for `sample`'s readout_gate; None: no gate."""
        if readout_gate is None:
            return self.default_readout_gate
        if self.default_readout_gate is None:
            raise ValueError(
                f"readout_gate weighs a continuous process's Bayes readout; {self.process} "
                "diffusion has none"
            )
        if readout_gate == "off":
            return None
        if not math.isfinite(readout_gate):
            raise ValueError(f"readout_gate must be a finite number or 'off', got {readout_gate}")
        return float(readout_gate)

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
        raise NotImplementedError

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

    @contextmanager
    def one_step(self) -> Iterator[None]:
        """The `loss` calls inside make one optimizer step: state fitted to the losses as they
        come (LCMD's time warp) is updated once, at the end, so that it does not depend on how
        the step is split into micro-batches and processes. Nothing to defer here."""
        yield

    def diagnostics(self) -> dict[str, float]:
        """Embedding-collapse diagnostics of the token embeddings."""
        raise NotImplementedError
