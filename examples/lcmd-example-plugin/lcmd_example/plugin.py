"""Entry point of the example plugin: `[project.entry-points.lcmd] example = "lcmd_example.plugin"`.

Import-light: registering imports neither torch nor the codec; the factory imports the codec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lcmd_core.codec_options import codec_options
from lcmd_core.plugins import DatasetInfo, MetricInfo, hookimpl
from lcmd_example.data import CLASS_NAMES, MAX_LENGTH, read_unicode_names
from lcmd_example.metrics import name_validity

if TYPE_CHECKING:
    from lcmd_example.codec import CharsCodec

LCMD_PLUGIN_API = 1  # the lcmd plugin API this plugin is written for

TINY = {
    "model": {"size": "tiny", "width": 64, "depth": 2, "heads": 2, "embed_dim": 16},
    "optim": {"lr": 1e-3, "warmup_steps": 50},
    "train": {"max_steps": 300, "global_batch_size": 32, "checkpoint_every": 100},
    "sample": {"steps": 20},
}


def chars_codec(options: dict[str, Any]) -> CharsCodec:
    """The `chars` codec; options: `length` (default 32)."""
    from lcmd_example.codec import CharsCodec

    return CharsCodec(**{"length": MAX_LENGTH, **codec_options("chars", CharsCodec, options)})


@hookimpl
def lcmd_register_codecs(register: Callable[..., None]) -> None:
    register("chars", chars_codec)


@hookimpl
def lcmd_register_datasets(register: Callable[..., None]) -> None:
    register(
        DatasetInfo(
            name="unicode_names",
            description="names of Unicode characters (stdlib unicodedata), labelled by category",
            read=read_unicode_names,
            default_codec="chars",
            codec_options={"length": MAX_LENGTH},
            num_classes=len(CLASS_NAMES),
            class_names=CLASS_NAMES,
            source="Python's unicodedata module",
        )
    )


@hookimpl
def lcmd_register_presets(register: Callable[..., None]) -> None:
    register("tiny", TINY, "2-layer width-64 model, 300 steps: about a minute on a CPU")


@hookimpl
def lcmd_register_metrics(register: Callable[..., None]) -> None:
    register(
        MetricInfo(
            name="name_validity",
            description="fraction of samples that are real names / of words that are real words",
            compute=name_validity,
            higher_is_better={"valid_name_fraction": True, "valid_word_fraction": True},
        )
    )
