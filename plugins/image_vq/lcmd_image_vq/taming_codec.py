"""The `taming` codec: uint8 RGB images ↔ code indices of a pretrained taming-transformers VQGAN."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.codec_options import codec_options
from lcmd_core.plugins import PluginError
from lcmd_image_vq.codec import VQCodec
from lcmd_image_vq.images import image_batch
from lcmd_image_vq.taming import TamingVQGAN, file_sha256, load_taming, read_used_codes

STATE_FILE = "taming.json"


@dataclass(frozen=True)
class TamingOptions:
    """The codec's options (`data.codec_options`).

    `checkpoint`/`config`: the VQModel `.ckpt` and its YAML; `size`: image side (0: the config's
    resolution); `remap`: remap to the codes used on the fit data; `used_codes`: a `.npy` of used
    codebook indices to remap to instead; `batch_size`: images per encoder/decoder call.
    """

    checkpoint: str = ""
    config: str = ""
    size: int = 0
    remap: bool = False
    used_codes: str = ""
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.checkpoint or not self.config:
            raise PluginError(
                "codec taming needs the options checkpoint (a taming VQModel .ckpt) and config "
                "(its YAML)"
            )
        if self.size < 0 or self.batch_size < 1:
            raise PluginError("codec taming: size must be >= 0 and batch_size >= 1")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> TamingOptions:
        """Options from a plain dict, refusing unknown keys and values of the wrong type."""
        return cls(**codec_options("taming", cls, options))


class TamingCodec:
    """Images (size, size, 3) uint8 ↔ `LongTensor[N, h*w]`, h = w = size / f, via a taming VQGAN.

    The weights stay in the user's checkpoint: `save` records its sha256 and `load` refuses a
    checkpoint that changed. `fit` loads and checks the model and, with `remap`, keeps the codes
    the fit images use (tokens then index that list; vocabulary = its length).
    """

    name = "taming"
    needs_fit = True

    def __init__(self, options: TamingOptions) -> None:
        self.options = options
        self.model: TamingVQGAN | None = None
        self.hashes: dict[str, str] = {}
        self.report: dict[str, float] = {}

    def _fitted(self) -> TamingVQGAN:
        if self.model is None:
            raise PluginError(
                "taming codec is not fitted: call fit(items) or load(directory) first"
            )
        return self.model

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid (h, w)."""
        side = self.options.size // self._fitted().config.factor
        return side, side

    @property
    def token_spec(self) -> TokenSpec:
        model = self._fitted()
        used = None if model.used_codes is None else model.used_codes.tolist()
        return TokenSpec(
            vocab_size=model.vocab_size,
            token_shape=self.grid,
            fingerprint=fingerprint_of(
                self.name, model.config.to_json(), self.hashes, self.options.size, used
            ),
        )

    def _load_model(self, expected: dict[str, str] | None = None) -> TamingVQGAN:
        """Read config and checkpoint (absolute paths), refusing files whose sha256 differs."""
        paths = {
            "checkpoint": Path(self.options.checkpoint).expanduser().resolve(),
            "config": Path(self.options.config).expanduser().resolve(),
        }
        hashes = {}
        for what, path in paths.items():
            hashes[what] = file_sha256(path) if path.is_file() else ""
            if expected and hashes[what] and hashes[what] != expected.get(what):
                raise PluginError(
                    f"taming codec: the {what} {path} changed since this codec was saved (sha256 "
                    f"{hashes[what][:12]}… != {str(expected.get(what))[:12]}…); restore it or "
                    "re-run prepare"
                )
        model = load_taming(paths["checkpoint"], paths["config"])
        size = self.options.size or model.config.resolution
        if size % model.config.factor:
            raise PluginError(
                f"codec taming: size {size} is not a multiple of f={model.config.factor}"
            )
        if model.config.in_channels != 3 or model.config.out_ch != 3:
            raise PluginError(
                "codec taming encodes RGB images: the config needs in_channels = out_ch = 3"
            )
        self.options = replace(
            self.options,
            checkpoint=str(paths["checkpoint"]),
            config=str(paths["config"]),
            size=size,
        )
        self.hashes = hashes
        return model

    def _to_tensor(self, items: Sequence[Any]) -> torch.Tensor:
        """Validated uint8 images → float [N, 3, H, W] in [-1, 1]."""
        size = self.options.size
        return image_batch(items, (size, size, 3), "taming") / 127.5 - 1.0

    def _codes(self, model: TamingVQGAN, images: torch.Tensor) -> torch.Tensor:
        step = self.options.batch_size
        parts = [model.encode(images[i : i + step]) for i in range(0, len(images), step)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def fit(self, items: Sequence[np.ndarray]) -> None:
        """Load and check the model; remap to the codes `items` use (`remap`) or to `used_codes`."""
        model = self._load_model()
        if self.options.used_codes:
            model.set_used_codes(read_used_codes(Path(self.options.used_codes)))
        elif self.options.remap:
            images = self._to_tensor(items)
            if len(images) == 0:
                raise PluginError("taming codec: cannot find the used codes of zero images")
            model.set_used_codes(torch.unique(self._codes(model, images)))
        self.model = model
        k = model.config.n_embed
        self.report = {"codebook_size": float(k), "vocab_size": float(model.vocab_size)}
        print(f"taming codec: {k} codes, vocabulary {model.vocab_size}", flush=True)

    def encode(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        """Images → `LongTensor[N, h*w]` of tokens (row-major over the grid)."""
        model = self._fitted()
        codes = self._codes(model, self._to_tensor(items))
        return (
            codes.flatten(1)
            if len(codes)
            else torch.zeros(0, self.token_spec.seq_len, dtype=torch.long)
        )

    def decode(self, tokens: torch.Tensor) -> list[np.ndarray]:
        """`LongTensor[N, h*w]` → uint8 images (size, size, 3)."""
        model = self._fitted()
        h, w = self.grid
        k = model.vocab_size
        if tokens.ndim != 2 or tokens.shape[1] != h * w:
            raise PluginError(
                f"taming codec decodes tokens of shape [N, {h * w}], got {list(tokens.shape)}"
            )
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < k:
            raise PluginError(f"taming codec: token ids must lie in [0, {k})")
        step = self.options.batch_size
        images = [
            model.decode(tokens[i : i + step].long().reshape(-1, h, w))
            for i in range(0, len(tokens), step)
        ]
        if not images:
            return []
        pixels = ((torch.cat(images) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
        return list(pixels.numpy())

    def write(self, items: Sequence[np.ndarray], directory: Path) -> list[Path]:
        """Write `sample-NNNN.png` per image and `grid.png`, as the `vqvae` codec does."""
        return VQCodec().write(items, directory)

    def save(self, directory: Path) -> None:
        """Write `taming.json`: options, the checkpoint's and config's sha256, the remap table."""
        model = self._fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "codec": self.name,
            "options": asdict(self.options),
            "sha256": self.hashes,
            "used_codes": None if model.used_codes is None else model.used_codes.tolist(),
            "report": self.report,
        }
        (directory / STATE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Restore a saved codec, re-reading its checkpoint; refuse one whose sha256 changed."""
        path = Path(directory) / STATE_FILE
        if not path.is_file():
            raise PluginError(f"taming codec: {path} is missing; save a fitted codec there")
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("codec") != self.name:
            raise PluginError(f"taming codec: {path} holds codec {meta.get('codec')!r}")
        self.options = TamingOptions.from_dict(meta["options"])
        model = self._load_model(expected=meta["sha256"])
        model.set_used_codes(None if meta["used_codes"] is None else np.array(meta["used_codes"]))
        self.model = model
        self.report = dict(meta.get("report", {}))
