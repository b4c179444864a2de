"""Generate the field tables of docs/configuration.md from the pydantic models in lcmd_core.config.

`python docs/gen_config_reference.py` rewrites the part of configuration.md between the
GENERATED markers; `--check` exits 1 when that part is out of date (tests/test_docs.py runs the
same comparison). A field's text is its pydantic `description`, else the entry in `NOTES` below;
a field with neither is an error, so a new field cannot go undocumented.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lcmd_core.config import RunConfig

DOC = Path(__file__).with_name("configuration.md")
BEGIN = "<!-- BEGIN GENERATED: python docs/gen_config_reference.py -->"
END = "<!-- END GENERATED -->"

# Explanations for fields whose pydantic Field has no description ("section.field").
NOTES: dict[str, str] = {
    "version": "config format version; files from a newer lcmd are refused",
    "model.size": "named denoiser size: tiny 4×128 (4 heads), S 12×384 (6), B 12×768 (12), "
    "L 24×1024 (16)",
    "model.mlp_ratio": "MLP hidden width as a multiple of the model width",
    "model.dropout": "dropout in attention output and MLP",
    "model.freeze_embeddings": "(continuous) keep the random embedding table fixed (baseline)",
    "model.pos_encoding": "sin-cos on the codec's token grid, learned, or rotary (RoPE) on the "
    "same coordinates",
    "model.output_prior": "(continuous) add the Bayes readout of the forward process to the logits "
    "(strongly recommended)",
    "model.self_condition": "feed the previous prediction (its expected embedding) back into "
    "the network",
    "model.attention": "attention backend; auto: xformers on CUDA when installed, else torch SDPA "
    "(env LCMD_ATTENTION overrides)",
    "diffusion.process": "continuous: LCMD (Gaussian diffusion of learned embeddings); masked: "
    "absorbing-state diffusion of the tokens (MDLM/MD4) on the same network. Options marked "
    "(continuous) or (masked) may not be changed under the other process",
    "diffusion.shift": "(continuous) added to the log-SNR at every t; negative means more noise",
    "diffusion.logsnr_min": "(continuous) clip of the base log-SNR at t = 1 (before the shift)",
    "diffusion.logsnr_max": "(continuous) clip of the base log-SNR at t = 0 (before the shift)",
    "diffusion.loss": "(continuous) lcmd: the four-term objective; ce_only: per-token "
    "cross-entropy at every t (CDCD baseline)",
    "diffusion.w_rec": "(continuous) weight of L_rec and of the cross-entropy at dropped positions",
    "diffusion.w_prior": "(continuous) weight of L_prior",
    "diffusion.cm_weight": "(continuous) λ_CM, weight of the consistency-matching loss (0 "
    "turns it off)",
    "diffusion.cm_target": "(continuous) how z_s is built: same noise on the true embedding, "
    "or one stop-gradient DDIM step from z_t",
    "diffusion.cm_pairs": "(continuous) earlier time s: uniform s = u·t, or delta "
    "s = max(t − cm_delta, 0)",
    "diffusion.cm_delta": "(continuous) Δ for cm_pairs = delta",
    "diffusion.label_dropout": "share of labels replaced by the null class in training (for "
    "classifier-free guidance)",
    "diffusion.self_cond_prob": "share of the batch given a self-conditioning x̂ (with "
    "model.self_condition)",
    "optim.lr": "peak learning rate of the denoiser",
    "optim.embed_lr": "peak learning rate of the embeddings and mask vector",
    "optim.weight_decay": "AdamW weight decay of the denoiser's matrices (none on embeddings, "
    "biases, norms)",
    "optim.betas": "AdamW betas",
    "optim.warmup_steps": "linear warm-up steps",
    "optim.min_lr_ratio": "cosine decay ends at this fraction of the peak learning rates",
    "optim.grad_clip": "gradient-norm clip",
    "optim.ema_decay": "EMA decay, reached after the warm-up min(d, (1 + n)/(10 + n))",
    "data.plugin": "plugin name (`--plugin`)",
    "data.dataset": "data set name (`--data`); default: the plugin's default data set",
    "data.data_root": "directory of the raw files of real data sets (`--data-root`, "
    "LCMD_DATA_ROOT)",
    "data.codec": "codec name (`lcmd prepare --codec`); default: the data set's default codec",
    "data.codec_options": "options for the codec factory, merged over the data set's",
    "train.max_steps": "optimizer steps of the run (`--max-steps`)",
    "train.global_batch_size": "sequences per optimizer step, over all devices",
    "train.seed": "seed of initialisation, data order and noise",
    "train.log_every": "steps between records in metrics.jsonl",
    "train.checkpoint_every": "steps between checkpoints (the last step is always saved)",
    "train.device": "auto: CUDA when available, else CPU",
    "train.precision": "auto: bf16 autocast on CUDA, fp32 on CPU",
    "train.compile": "torch.compile the denoiser",
    "train.strategy": "with several processes: `ddp` replicates the model on each, `fsdp` "
    "shards its parameters, gradients and optimizer state over them",
    "sample.num_samples": "samples drawn by `lcmd sample` and `lcmd eval` (`--n`, `--n-samples`)",
    "sample.steps": "sampling steps (`--steps`)",
    "sample.sampler": "(continuous) update rule (`--sampler`); masked runs unmask ancestrally",
    "sample.guidance": "classifier-free guidance weight w; 1 is none (`--guidance`)",
    "sample.use_ema": "sample and evaluate with the EMA weights",
}


def type_name(annotation: Any) -> str:
    """A short readable name of a field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if annotation is type(None):
        return "null"
    if origin is not None:
        inner = ", ".join(type_name(a).strip("`") for a in args)
        return f"`{origin.__name__}[{inner}]`"
    if annotation is Any:
        return "`Any`"
    return f"`{annotation.__name__}`"


def default_text(info: FieldInfo) -> str:
    """The default as it would be written in a YAML config."""
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" else f"`{value}`"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{value}`"


def constraint_text(info: FieldInfo) -> str:
    """Bounds such as `> 0`, `≥ 0, < 1` from the field's annotated constraints."""
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    parts = []
    for meta in info.metadata:
        for attr, sym in symbols.items():
            bound = getattr(meta, attr, None)
            if bound is not None:
                parts.append(f"{sym} {bound}")
    return ", ".join(parts)


def description(key: str, info: FieldInfo) -> str:
    """The pydantic description, else the note in NOTES."""
    text = info.description or NOTES.get(key)
    if not text:
        raise SystemExit(f"config field {key} has no description: add one in {__file__} NOTES")
    return text


def sections() -> list[tuple[str, type[BaseModel] | None, dict[str, FieldInfo]]]:
    """(section name, model, fields) for the top level and each nested section."""
    top = {
        name: info
        for name, info in RunConfig.model_fields.items()
        if not (isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel))
    }
    out: list[tuple[str, type[BaseModel] | None, dict[str, FieldInfo]]] = [("", None, top)]
    for name, info in RunConfig.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out.append((name, info.annotation, dict(info.annotation.model_fields)))
    return out


def all_keys() -> list[str]:
    """Every dotted config key, e.g. `model.width`."""
    return [f"{sec}.{name}" if sec else name for sec, _, fields in sections() for name in fields]


def render() -> str:
    """The generated markdown: one table per section."""
    lines = []
    for section, model, fields in sections():
        if model is None:
            lines += ["### Top level", ""]
        else:
            doc = (model.__doc__ or "").strip().splitlines()[0]
            lines += [f"### `{section}` — {model.__name__}", "", doc, ""]
        lines += ["| key | type | default | bounds | meaning |", "|---|---|---|---|---|"]
        for name, info in fields.items():
            key = f"{section}.{name}" if section else name
            lines.append(
                f"| `{key}` | {type_name(info.annotation)} | {default_text(info)} "
                f"| {constraint_text(info)} | {description(key, info)} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def splice(text: str, generated: str) -> str:
    """`text` with the part between the markers replaced by `generated`."""
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{DOC}: missing the markers {BEGIN!r} … {END!r}")
    return f"{head}{BEGIN}\n\n{generated}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the doc is out of date")
    args = parser.parse_args()
    text = DOC.read_text(encoding="utf-8")
    updated = splice(text, render())
    if args.check:
        if updated != text:
            print(f"{DOC} is out of date: run python docs/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
