"""Drawing samples from a run: `load_run(path).sample(n)` → items, tokens and sample.json.

A `Run` is a model at one checkpoint with its codec and config. `load_run` builds it from the
run's config and the checkpoint's weights alone (the optimizer's files are never read);
`Trainer.sample` and `Trainer.evaluate` use the same code on the weights in training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save_file

from .checkpoint import load_weights, write_json_atomic
from .codec import Codec, PromptCodec, TokenSpec
from .config import RunConfig, SampleConfig
from .device import autocast_dtype, resolve_device
from .diffusion_model import DiffusionModel
from .plugins import Plugin, get_plugin
from .prepare import Prepared, load_prepared
from .processes import build_model
from .resources import check_sampling
from .resume import check_matches, load_into, read_config
from .run_dir import RunDir, RunError


@dataclass(frozen=True)
class SampleSettings:
    """How samples are drawn, resolved once from the run's `sample` config and the caller's
    overrides; sample.json and metrics.json record exactly these values."""

    n: int
    steps: int
    sampler: str  # the reverse process's update rule: ancestral or ddim
    guidance: float  # 1.0 for an unconditional run, whatever was asked
    temperature: float
    x0_temperature: float | None  # continuous: each step's clean-estimate sharpness; masked None
    readout_gate: float | Literal["off"] | None  # continuous: the sampling gate; masked None
    seed: int
    ema: bool

    @classmethod
    def resolve(
        cls,
        config: SampleConfig,
        model: DiffusionModel,
        *,
        n: int | None = None,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        temperature: float | None = None,
        x0_temperature: float | None = None,
        readout_gate: float | Literal["off"] | None = None,
        seed: int = 0,
        use_ema: bool | None = None,
    ) -> SampleSettings:
        """The settings for `model`: each None takes the config's value (or the process's)."""
        sampler = sampler or config.sampler
        if model.process == "masked" and sampler != "ancestral":
            raise RunError(
                f"sampler {sampler} is for diffusion.process=continuous; this run is masked, "
                "which samples by ancestral unmasking (--sampler ancestral)"
            )
        temperature = config.temperature if temperature is None else temperature
        x0_temperature = _or(x0_temperature, config.x0_temperature)
        if x0_temperature is not None and model.default_x0_temperature is None:
            raise RunError(
                f"x0_temperature {x0_temperature} is for diffusion.process=continuous; this run "
                f"is {model.process}, which draws tokens (--temperature)"
            )
        readout_gate = _or(readout_gate, config.readout_gate)
        if readout_gate is not None and model.default_readout_gate is None:
            raise RunError(
                f"readout_gate {readout_gate} is for diffusion.process=continuous; this run is "
                f"{model.process}, which has no Bayes readout to weigh"
            )
        try:
            model.sampling_gate(readout_gate)
        except ValueError as err:
            raise RunError(str(err)) from None
        return cls(
            n=n or config.num_samples,
            steps=steps or config.steps,
            sampler=sampler,
            guidance=1.0 if not model.num_classes else _or(guidance, config.guidance),
            temperature=model.default_temperature if temperature is None else temperature,
            x0_temperature=_or(x0_temperature, model.default_x0_temperature),
            readout_gate=_or(readout_gate, model.default_readout_gate),
            seed=seed,
            ema=_or(use_ema, config.use_ema),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampleResult:
    """Tokens drawn by `Run.sample`, their decoded items and the files written."""

    tokens: torch.Tensor
    labels: torch.Tensor | None
    items: list[Any]
    files: list[Path]
    out_dir: Path


@dataclass
class Run:
    """A run at one checkpoint: `model` (EMA weights, eval mode), codec, config and where.

    `training_model` holds the weights without EMA (`use_ema=False`). `sample` and `evaluate`
    write into `run_dir`.
    """

    model: DiffusionModel
    codec: Codec
    config: RunConfig
    spec: TokenSpec
    run_dir: RunDir
    step: int
    training_model: DiffusionModel
    plugin: Plugin
    prepared: Prepared
    device: torch.device
    autocast_dtype: torch.dtype | None

    def weights(self, use_ema: bool) -> DiffusionModel:
        """The EMA model or the training weights, in eval mode."""
        return (self.model if use_ema else self.training_model).eval()

    def labels_for(self, n: int, labels: torch.Tensor | int | None) -> torch.Tensor | None:
        """One class per sample: all of `labels` (an int), the given tensor, or cycling."""
        classes = self.spec.num_classes
        if not classes:
            if labels is not None:
                raise RunError("labels were given but this run is unconditional")
            return None
        if labels is None:
            return torch.arange(n) % classes
        if isinstance(labels, int):
            if not 0 <= labels < classes:
                raise RunError(f"label {labels} is outside [0, {classes})")
            return torch.full((n,), labels)
        return labels

    def prompt(self, prompt: str) -> torch.Tensor:
        """`LongTensor[L]` of the tokens a prompt keeps (−1 = free), from the run's codec."""
        if not isinstance(self.codec, PromptCodec):
            raise RunError(f"--prompt: codec {self.codec.name} does not take prompts")
        return self.codec.prompt_tokens(prompt, self.spec.seq_len).long()

    def sample(
        self,
        n: int | None = None,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        labels: torch.Tensor | int | None = None,
        seed: int = 0,
        temperature: float | None = None,
        x0_temperature: float | None = None,
        readout_gate: float | Literal["off"] | None = None,
        use_ema: bool | None = None,
        known: torch.Tensor | None = None,
        prompts: Sequence[str] | None = None,
        out_dir: str | Path | None = None,
    ) -> SampleResult:
        """Draw samples, decode them through the codec and write them with `tokens.safetensors`
        and `sample.json`.

        `known` (`LongTensor[n, L]`, −1 = free) or `prompts` (one per sample, read by the
        codec's `prompt_tokens`) fix tokens. The default directory is
        `samples/step-NNNNNNN-seed-S/` (`…-prompts-HASH/` with prompts), suffixed `-2`, `-3`, …
        rather than overwriting an earlier draw.
        """
        digest = None
        if prompts is not None:
            if known is not None:
                raise RunError("give known tokens or prompts, not both")
            if not prompts or (n is not None and n != len(prompts)):
                raise RunError(f"one sample per prompt: {len(prompts)} prompts but n={n}")
            n = len(prompts)
            known = torch.stack([self.prompt(prompt) for prompt in prompts])
            digest = hashlib.sha256(json.dumps(list(prompts)).encode()).hexdigest()
        settings = SampleSettings.resolve(
            self.config.sample,
            self.model,
            n=n,
            steps=steps,
            sampler=sampler,
            guidance=guidance,
            temperature=temperature,
            x0_temperature=x0_temperature,
            readout_gate=readout_gate,
            seed=seed,
            use_ema=use_ema,
        )
        name = f"step-{self.step:07d}-seed-{seed}" + (f"-prompts-{digest[:8]}" if digest else "")
        out = Path(out_dir) if out_dir else _unused(self.run_dir.samples_dir / name)
        if prompts is None:
            return self.draw(settings, labels, known, out)
        record = {"prompts": {"count": len(prompts), "sha256": digest, "file": "prompts.jsonl"}}
        result = self.draw(settings, labels, known, out, record)  # a refused draw writes nothing
        lines = "".join(json.dumps({"prompt": prompt}) + "\n" for prompt in prompts)
        (out / "prompts.jsonl").write_text(lines, encoding="utf-8")
        return result

    def draw(
        self,
        settings: SampleSettings,
        labels: torch.Tensor | int | None,
        known: torch.Tensor | None,
        out: Path,
        record: dict[str, Any] | None = None,
    ) -> SampleResult:
        """Samples drawn with resolved `settings` (and `known` tokens), written to `out`;
        `record` adds entries to sample.json."""
        check_sampling(self.spec, self.config.model, settings.n, self.device)
        label_tensor = self.labels_for(settings.n, labels)
        tokens = (
            self.weights(settings.ema)
            .sample(
                settings.n,
                steps=settings.steps,
                labels=label_tensor,
                guidance=settings.guidance,
                known=known,
                seed=settings.seed,
                sampler=settings.sampler,
                temperature=settings.temperature,
                x0_temperature=settings.x0_temperature,
                readout_gate=settings.readout_gate,
            )
            .cpu()
        )
        out.mkdir(parents=True, exist_ok=True)
        items = self.codec.decode(tokens)
        files = list(self.codec.write(items, out))
        saved = {"tokens": tokens.contiguous()}
        if label_tensor is not None:
            saved["labels"] = label_tensor.long().contiguous()
        save_file(saved, out / "tokens.safetensors")
        protocol = {
            "step": self.step,
            "process": self.config.diffusion.process,
            **settings.to_json(),
            "fingerprint": self.spec.fingerprint,
            **(record or {}),
        }
        write_json_atomic(out / "sample.json", protocol)
        return SampleResult(tokens, label_tensor, items, files, out)

    def evaluate(
        self,
        split: str = "test",
        n_samples: int | None = None,
        seed: int = 0,
        max_sequences: int | None = 4096,
        use_ema: bool | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        x0_temperature: float | None = None,
        readout_gate: float | Literal["off"] | None = None,
        task: str = "generate",
        hide: float = 0.5,
    ) -> dict[str, Any]:
        """`task="generate"`: ELBO bits/token on a held-out split and the plugin's metrics on
        fresh samples; `task="infill"`: the split's items with a share `hide` of positions
        regenerated (`n_samples` items). Writes `metrics.json` (see `lcmd_core.evaluation`)."""
        from .evaluation import TASKS, evaluate, evaluate_infill

        if task not in TASKS:
            raise RunError(f"task {task!r}: expected one of {', '.join(TASKS)}")
        settings = SampleSettings.resolve(
            self.config.sample,
            self.model,
            n=n_samples,
            steps=steps,
            guidance=guidance,
            x0_temperature=x0_temperature,
            readout_gate=readout_gate,
            seed=seed,
            use_ema=use_ema,
        )
        if task == "infill":
            return evaluate_infill(self, split, settings, hide)
        return evaluate(self, split, settings, max_sequences)


def load_run(path: str | Path, *, pm: Any = None) -> Run:
    """Load a run directory at its latest checkpoint for sampling and evaluation: the model
    with EMA weights (eval mode), the training weights, the fitted codec and the config."""
    run_dir = RunDir(path)
    config = read_config(run_dir)
    plugin = get_plugin(config.data.plugin, pm)
    shards = run_dir.data_shards(config.data.shards)
    prepared = load_prepared(plugin, config.data, run_dir.codec_dir, shards)
    latest = run_dir.latest()
    if latest is None:
        raise RunError(f"{run_dir.path} has no checkpoint yet; train it first")
    ckpt = load_weights(latest)
    check_matches(latest, ckpt["state"], prepared.spec, config, run_dir)
    device = resolve_device(config.train.device)
    check_sampling(prepared.spec, config.model, 1, device)
    models = []
    has_ema = ckpt["ema"] is not None
    for name in ("ema" if has_ema else "model", "model"):
        model = build_model(prepared.spec, config.model, config.diffusion, pm)
        load_into(model, ckpt[name], latest / f"{name}.safetensors", run_dir)
        models.append(model.to(device).requires_grad_(False).eval())
    return Run(
        models[0],
        prepared.codec,
        config,
        prepared.spec,
        run_dir,
        ckpt["step"],
        training_model=models[1],
        plugin=plugin,
        prepared=prepared,
        device=device,
        autocast_dtype=autocast_dtype(config.train, device),
    )


def _unused(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`, … : the first that does not exist yet."""
    candidate, k = path, 1
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
