"""Run configuration: pydantic models (unknown keys are errors), presets and dotted overrides."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_VERSION = 1


MAX_SAMPLES = 1_000_000  # samples one `lcmd sample` or `lcmd eval` may ask for
MAX_SAMPLE_STEPS = 100_000  # sampling steps
MAX_STEPS = 10**9  # training steps


class ConfigError(ValueError):
    """A configuration value, file or override is invalid; the message is for the user."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(_Strict):
    """The denoiser and the token embeddings."""

    size: Literal["tiny", "S", "B", "L"] = "tiny"
    width: int | None = Field(None, gt=0, le=2**16, description="overrides the size's width")
    depth: int | None = Field(None, gt=0, le=1024, description="overrides the size's depth")
    heads: int | None = Field(None, gt=0, le=1024, description="overrides the size's heads")
    mlp_ratio: float = Field(4.0, gt=0, le=64)
    dropout: float = Field(0.0, ge=0, lt=1)
    embed_dim: int = Field(64, gt=0, le=2**16, description="D, the token embedding width")
    embed_norm: Literal["none", "l2", "l2_scaled"] = Field(
        "l2",
        description="(continuous) rows renormalised on every use: l2 to embed_scale, l2_scaled "
        "to embed_scale·√D; none lets them grow or shrink (the paper's table)",
    )
    embed_scale: float = Field(
        1.0,
        gt=0,
        description="(continuous) row norm of the table at initialisation, and the fixed norm "
        "under embed_norm=l2 (l2_scaled: this times √D)",
    )
    freeze_embeddings: bool = False
    pos_encoding: Literal["learned", "sincos", "rope"] = "sincos"
    output_prior: bool = True
    output_prior_logsnr: float | None = Field(
        None,
        description="(continuous) the Bayes readout enters with weight σ(λ_eff − this), λ_eff "
        "the log-SNR of a token's row; none: weight 1 at every noise level",
    )
    self_condition: bool = False
    attention: Literal["auto", "xformers", "sdpa", "math"] = "auto"
    backbone: str = Field(
        "dit",
        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$",
        description="the denoiser network: dit (the built-in DiT-style transformer) or one a "
        "plugin registers (`lcmd plugins` lists them)",
    )


class DiffusionConfig(_Strict):
    """The diffusion process, its schedule and its objective.

    `process=continuous` is LCMD (Gaussian diffusion of learned embeddings); `masked` is
    absorbing-state diffusion over the tokens themselves. Options of one process may not be set
    to a non-default value under the other (`check_process_options`).
    """

    process: Literal["continuous", "masked"] = "continuous"
    mask_schedule: Literal["loglinear", "cosine"] = Field(
        "loglinear",
        description="(masked) the masking schedule: loglinear α = 1 − t, cosine α = 1 − sin(πt/2)",
    )
    shift: float = 0.0
    stagger: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="(continuous) per-position schedules: position i of L runs the schedule in "
        "its own window of t, tau_i = clamp((1 + s) t - s (1 - i / (L - 1)), 0, 1), so earlier "
        "positions clear first; 0 = one noise level for every position (needs model.backbone=dit "
        "when above 0)",
    )
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0
    loss: Literal["lcmd", "ce_only"] = "lcmd"
    w_diff: float = Field(
        0.0,
        ge=0,
        description="(continuous) weight of the diffusion bound's MSE term (the paper's L_diff; "
        "the default trains the cross-entropy at t instead, ce_weight)",
    )
    w_rec: float = Field(1.0, ge=0)
    w_prior: float = Field(1.0, ge=0)
    cm_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(
        1.0,
        ge=0,
        description="(continuous) weight of the cross-entropy of the noisy prediction at t "
        "(kept positions), a direct signal at every noise level",
    )
    time_sampling: Literal["uniform", "importance", "warp"] = Field(
        "warp",
        description="(continuous) t in training: low-discrepancy uniform; importance-sampled "
        "from a CDF fitted online to the loss and reweighted (the same objective); or warp, "
        "drawn where the ELBO's integrand is large and not reweighted (a new weighting)",
    )
    cm_target: Literal["same_noise", "ddim"] = "same_noise"
    cm_pairs: Literal["uniform", "delta"] = "uniform"
    cm_delta: float = Field(0.1, gt=0, le=1)
    cm_target_weights: Literal["current", "ema"] = Field(
        "current",
        description="(continuous) the network that gives the CM target: the weights in training, "
        "or their EMA (the trainer's, as consistency models use)",
    )
    drop_prob: float = Field(0.1, ge=0, lt=1, description="(continuous) m_RD, random dropping")
    rec_fraction: float = Field(
        0.125, gt=0, le=1, description="(continuous) share of the batch put at t_min"
    )
    label_dropout: float = Field(0.1, ge=0, le=1)
    self_cond_prob: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _range(self) -> DiffusionConfig:
        if self.logsnr_min >= self.logsnr_max:
            raise ValueError("logsnr_min must be below logsnr_max")
        if self.time_sampling == "importance" and self.loss != "lcmd":
            raise ValueError("time_sampling=importance reweights LCMD's terms: it needs loss=lcmd")
        return self


class OptimConfig(_Strict):
    """AdamW with a separate embedding group, warm-up then cosine decay."""

    lr: float = Field(3e-4, gt=0)
    embed_lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)


class DataConfig(_Strict):
    """Which plugin, data set and codec feed the run."""

    plugin: str = ""
    dataset: str | None = None
    data_root: str | None = None
    codec: str | None = None
    codec_options: dict[str, Any] = Field(default_factory=dict)
    shards: str | None = Field(None, description="token shard directory; default: inside the run")
    augment: list[str] = Field(
        default_factory=list,
        description="the data set's augmentations (e.g. hflip) whose copies of the train split "
        "are encoded too",
    )


class TrainConfig(_Strict):
    """Loop length, batch, logging and checkpoint cadence."""

    max_steps: int = Field(1000, gt=0, le=MAX_STEPS)
    global_batch_size: int = Field(64, gt=0, le=2**24)
    micro_batch_size: int | None = Field(
        None, gt=0, le=2**24, description="per device; default: all"
    )
    seed: int = Field(0, ge=-(2**63), lt=2**64, description="random seed (the range torch takes)")
    log_every: int = Field(10, gt=0)
    checkpoint_every: int = Field(500, gt=0)
    sample_every: int = Field(0, ge=0, description="0: previews only at the end")
    keep_checkpoints: int = Field(3, ge=1, description="newest checkpoints kept on disk")
    max_nonfinite_steps: int = Field(10, ge=0, description="NaN/Inf steps skipped before stopping")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = False
    strategy: Literal["ddp", "fsdp"] = "ddp"
    log_to: list[Literal["tensorboard"]] = Field(
        default_factory=list,
        description="loggers besides metrics.jsonl: tensorboard (RUN/tensorboard, needs the "
        "tensorboard package)",
    )


class SampleConfig(_Strict):
    """Defaults for `lcmd sample` and previews."""

    num_samples: int = Field(16, gt=0, le=MAX_SAMPLES)
    steps: int = Field(100, gt=0, le=MAX_SAMPLE_STEPS)
    sampler: Literal["ancestral", "ddim"] = "ancestral"
    guidance: float = Field(1.0, ge=0)
    temperature: float | None = Field(
        None,
        ge=0,
        description="0: argmax; default: the process's (continuous 0, the argmax readout; "
        "masked 1, draws from the model)",
    )
    x0_temperature: float | None = Field(
        None,
        ge=0,
        description="(continuous) temperature of the clean estimate each step moves towards, "
        "softmax(logits / T) E; below 1 sharpens it, 0 takes the most likely token's row; "
        "default: the process's (continuous 0.5)",
    )
    readout_gate: float | Literal["off"] | None = Field(
        None,
        description="(continuous) while sampling, each step's Bayes readout enters with weight "
        "σ(λ_eff − c), c this value: at mid noise the network's reading of the context decides "
        "more and a sample commits to one mode (higher: sharper); off: the readout as trained; "
        "default: the process's (continuous 1)",
    )
    use_ema: bool = True


class RunConfig(_Strict):
    """Everything a run needs; saved resolved as `config.json` in the run directory."""

    version: int = CONFIG_VERSION
    model: ModelConfig = Field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)

    @model_validator(mode="after")
    def _version(self) -> RunConfig:
        if self.version > CONFIG_VERSION:
            raise ValueError(
                f"config version {self.version} is newer than this lcmd ({CONFIG_VERSION}); "
                "upgrade lcmd-core"
            )
        check_process_options(self.model, self.diffusion, self.sample)
        check_stagger_backbone(self.model, self.diffusion)
        return self


# Options that only one process reads, by section; the others (network, labels, self-conditioning
# and their probabilities) serve both.
# The paper's objective (L_diff + L_CM on a free table, t uniform): LCMD's defaults until the
# cross-entropy at t took L_diff's place. Paper presets and earlier experiments pin it.
PAPER_OBJECTIVE: dict[str, dict[str, Any]] = {
    "model": {"embed_norm": "none"},
    "diffusion": {"w_diff": 1.0, "ce_weight": 0.0, "time_sampling": "uniform"},
}

CONTINUOUS_ONLY = {
    "model": (
        "embed_norm",
        "embed_scale",
        "freeze_embeddings",
        "output_prior",
        "output_prior_logsnr",
    ),
    "diffusion": (
        "shift",
        "stagger",
        "logsnr_min",
        "logsnr_max",
        "loss",
        "w_diff",
        "w_rec",
        "w_prior",
        "cm_weight",
        "ce_weight",
        "time_sampling",
        "cm_target",
        "cm_pairs",
        "cm_delta",
        "cm_target_weights",
        "drop_prob",
        "rec_fraction",
    ),
    "sample": ("sampler", "x0_temperature", "readout_gate"),
}
MASKED_ONLY = {"diffusion": ("mask_schedule",)}


def check_process_options(
    model: ModelConfig, diffusion: DiffusionConfig, sample: SampleConfig | None = None
) -> None:
    """ValueError naming the first option set (to a non-default value) for the other process."""
    owner = "continuous" if diffusion.process == "masked" else "masked"
    other = CONTINUOUS_ONLY if owner == "continuous" else MASKED_ONLY
    sections = {"model": model, "diffusion": diffusion, "sample": sample}
    for section, names in other.items():
        values = sections[section]
        if values is None:
            continue
        for name in names:
            if getattr(values, name) != type(values).model_fields[name].default:
                raise ValueError(
                    f"{section}.{name} is an option of diffusion.process={owner}, not "
                    f"{diffusion.process}; remove it or set diffusion.process={owner}"
                )


def check_stagger_backbone(model: ModelConfig, diffusion: DiffusionConfig) -> None:
    """ValueError when a staggered schedule meets a backbone that takes one log-SNR a sequence."""
    if diffusion.stagger > 0 and model.backbone != "dit":
        raise ValueError(
            f"diffusion.stagger={diffusion.stagger} gives every position its own log-SNR, which "
            f"only the built-in backbone reads, not {model.backbone!r}; set model.backbone=dit "
            "or diffusion.stagger=0"
        )


def _error_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    return f"{where}: {first['msg']}"


def validate_config(data: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from a nested dict, turning validation errors into one ConfigError line."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_error_line(err)) from None


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return `base` with `update` merged in recursively (dicts merge, other values replace)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `a.b=value` into (["a", "b"], value); the value is read as YAML (numbers, lists)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    parts = key.split(".")
    if any(not p.isidentifier() for p in parts):
        raise ConfigError(f"--set {text!r}: {key!r} is not a dotted name like train.max_steps")
    try:
        value = yaml.load(raw, Loader=NoAliasLoader) if raw.strip() else ""
    except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: dates like 2001-02-30
        value = raw
    if isinstance(value, str):
        value = raw.strip()
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set a.b=value` strings to a nested config dict; unknown keys are errors."""
    schema = RunConfig.model_json_schema()
    for text in overrides:
        parts, value = parse_override(text)
        leaf = _check_key(schema, parts, text)
        if leaf is not None and _is_text_field(leaf) and not isinstance(value, str):
            value = text.partition("=")[2].strip()  # `data.dataset=123` means the name "123"
        nested: dict[str, Any] = value
        for part in reversed(parts):
            nested = {part: nested}
        data = deep_merge(data, nested)
    return data


def _is_text_field(node: dict[str, Any]) -> bool:
    types = {node.get("type")} | {option.get("type") for option in node.get("anyOf", [])}
    return "string" in types and not types & {"integer", "number", "boolean", "array"}


def _check_key(schema: dict[str, Any], parts: list[str], text: str) -> dict[str, Any] | None:
    """The schema of the field `parts` names (None inside a free-form mapping); else ConfigError."""
    node = schema
    for i, part in enumerate(parts):
        props = node.get("properties", {})
        if not props and node.get("type") == "object":
            return None  # a free-form mapping such as data.codec_options takes any key
        if part not in props:
            where = ".".join(parts[:i]) or "the config"
            known = ", ".join(sorted(props)) or "nothing"
            raise ConfigError(f"--set {text!r}: no key {part!r} in {where} (known: {known})")
        node = props[part]
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


MAX_CONFIG_BYTES = 2**20


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases: a config never needs them, and nested
    aliases ("billion laughs") would expand without bound."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in lcmd configs", event.start_mark
            )
        return super().compose_node(parent, index)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML, TOML or JSON config file into a nested dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    kind = {".toml": "TOML", ".json": "JSON"}.get(path.suffix, "YAML")
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"--config {path}: larger than {MAX_CONFIG_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
        if kind == "TOML":
            data = tomllib.loads(text)
        elif kind == "JSON":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=NoAliasLoader) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path}: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"--config {path}: nested too deeply to be a config") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as err:  # ValueError: JSON, dates
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"--config {path}: not valid {kind} ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"--config {path}: expected a mapping of sections, got {type(data).__name__}"
        )
    return data


def _without(config: dict[str, Any], names: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """`config` less the options `names` lists per section."""
    return {
        section: (
            {k: v for k, v in values.items() if k not in names.get(section, ())}
            if isinstance(values, dict)
            else values
        )
        for section, values in config.items()
    }


def resolve_config(
    *,
    preset: dict[str, Any] | None = None,
    file: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults ← `base` ← preset ← config file ← `--set` overrides, validated once at the end
    (see `merge_config`)."""
    later = {} if file is None else load_config_file(file)
    return merge_config(apply_overrides(later, list(overrides or [])), preset=preset, base=base)


def merge_config(
    user: dict[str, Any],
    *,
    preset: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults ← `base` ← preset ← `user` (a config file with its overrides), validated once.

    A preset's settings for the continuous process only (a shift, a CE weight) are dropped when
    `user` chooses `diffusion.process=masked`: a preset tunes LCMD, and the masked process on it
    keeps the preset's network and training.
    """
    data: dict[str, Any] = dict(base or {})
    if preset:
        diffusion = user.get("diffusion")
        if isinstance(diffusion, dict) and diffusion.get("process") == "masked":
            preset = _without(preset, CONTINUOUS_ONLY)
        data = deep_merge(data, preset)
    data = deep_merge(data, user)
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"config values must be plain numbers, strings, lists and mappings ({err})"
        ) from None
    return validate_config(data)
