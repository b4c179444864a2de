"""The `vqvae` codec: uint8 images (H, W, C) ↔ a grid of VQ-VAE code indices."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.codec_options import codec_options
from lcmd_core.plugins import CorruptItemError, PluginError
from lcmd_image_vq.images import image_batch
from lcmd_image_vq.patch_gan import GanTraining
from lcmd_image_vq.vqvae import VQVAE, perplexity

WEIGHTS_FILE = "vqvae.safetensors"
STATE_FILE = "vqvae.json"
ENCODE_BATCH = 256
MEASURE_ITEMS = 4096  # images the fit report is measured on


@dataclass(frozen=True)
class VQOptions:
    """The codec's options (`data.codec_options`)."""

    size: int = 28
    channels: int = 1
    factor: int = 4
    codebook_size: int = 256
    code_dim: int = 32
    hidden: int = 64
    res_blocks: int = 2
    train_steps: int = 800
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    codebook_update: str = "ema"
    gan_weight: float = 0.0
    gan_start: int = 0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise PluginError(f"codec vqvae: channels must be 1 or 3, got {self.channels}")
        if self.factor not in (2, 4, 8, 16):
            raise PluginError(f"codec vqvae: factor must be 2, 4, 8 or 16, got {self.factor}")
        if self.size < self.factor or self.size % self.factor:
            raise PluginError(
                f"codec vqvae: size {self.size} is not a multiple of factor {self.factor}"
            )
        positive = ("codebook_size", "code_dim", "hidden", "train_steps", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise PluginError(f"codec vqvae: {name} must be at least 1")
        if self.codebook_size < 2 or self.res_blocks < 0 or not self.lr > 0:
            raise PluginError("codec vqvae: needs codebook_size >= 2, res_blocks >= 0, lr > 0")
        if self.codebook_update not in ("ema", "straight_through"):
            raise PluginError(
                f"codec vqvae: codebook_update must be 'ema' or 'straight_through', "
                f"got {self.codebook_update!r}"
            )
        if self.gan_weight < 0 or self.gan_start < 0:
            raise PluginError("codec vqvae: gan_weight and gan_start must be >= 0")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> VQOptions:
        """Options from a plain dict, refusing unknown keys and values of the wrong type."""
        return cls(**codec_options("vqvae", cls, options))


class VQCodec:
    """Images (size, size, channels) uint8 ↔ `LongTensor[N, h*w]`, h = w = size / factor.

    `fit` trains the VQ-VAE (on CUDA when available) with a fixed seed, reading random batches
    of the items lazily so that large data sets need not fit in memory, skipping unreadable
    images (`CorruptItemError`) with a count. It keeps `report`: reconstruction MSE on [0, 1]
    pixels, perplexity, dead codes and the fraction of codes used, on up to `MEASURE_ITEMS` of
    the fit images, and the number of images skipped.
    """

    name = "vqvae"
    needs_fit = True

    def __init__(self, options: VQOptions | None = None) -> None:
        self.options = options or VQOptions()
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model: VQVAE | None = None
        self.report: dict[str, float] = {}
        self._weights_hash = ""

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid (h, w)."""
        side = self.options.size // self.options.factor
        return side, side

    @property
    def token_spec(self) -> TokenSpec:
        self._fitted()
        return TokenSpec(
            vocab_size=self.options.codebook_size,
            token_shape=self.grid,
            fingerprint=fingerprint_of(self.name, asdict(self.options), self._weights_hash),
        )

    def _fitted(self) -> VQVAE:
        if self.model is None:
            raise PluginError("vqvae codec is not fitted: call fit(items) or load(directory) first")
        return self.model

    def _new_model(self) -> VQVAE:
        o = self.options
        return VQVAE(
            channels=o.channels,
            hidden=o.hidden,
            code_dim=o.code_dim,
            codebook_size=o.codebook_size,
            factor=o.factor,
            res_blocks=o.res_blocks,
            codebook_update=o.codebook_update,
            seed=o.seed,
        )

    def _to_tensor(self, items: Sequence[Any]) -> torch.Tensor:
        """Validated uint8 images → float [N, C, H, W] in [0, 1]."""
        o = self.options
        hint = " (resize images in the data reader or set codec_options size/channels)"
        return image_batch(items, (o.size, o.size, o.channels), "vqvae", hint) / 255.0

    def _read(self, items: Sequence[Any], index: Sequence[int], skipped: set[int]) -> torch.Tensor:
        """The readable images among `items[index]` as float [n, C, H, W] in [0, 1] on `device`;
        the indices of unreadable ones are added to `skipped`."""
        batch = []
        for i in index:
            try:
                batch.append(items[i])
            except CorruptItemError:
                skipped.add(i)
        return self._to_tensor(batch).to(self.device)

    def fit(self, items: Sequence[np.ndarray]) -> None:
        """Train the VQ-VAE on `items`; prints a progress line every tenth of the steps."""
        o = self.options
        if len(items) == 0:
            raise PluginError("vqvae codec: cannot fit on zero images")
        log_every = max(1, o.train_steps // 10)
        start = time.perf_counter()
        skipped: set[int] = set()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(o.seed)
            model = self._new_model().to(self.device)
            gan = GanTraining(model, o, self.device) if o.gan_weight > 0 else None
            optimizer = torch.optim.Adam(model.parameters(), lr=o.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, o.train_steps)
            batches = torch.Generator().manual_seed(o.seed)
            model.train()
            for step in range(1, o.train_steps + 1):
                index = torch.randint(len(items), (o.batch_size,), generator=batches).tolist()
                images = self._read(items, index, skipped)
                if len(images) == 0:
                    if len(skipped) == len(items):
                        raise PluginError("vqvae codec: none of the images could be read")
                    continue
                out = model(images)
                loss = out["loss"]
                if gan is not None and step > o.gan_start:
                    loss = loss + gan.generator_term(out)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                if gan is not None and step > o.gan_start:
                    gan.discriminator_step(images, out["recon"])
                if step % log_every == 0 or step == o.train_steps:
                    print(
                        f"vqvae step {step}/{o.train_steps}: mse {out['mse'].item():.4f} "
                        f"perplexity {perplexity(out['codes'], o.codebook_size):.1f} "
                        f"restarted codes {model.quantizer.restarts} "
                        + (gan.progress() if gan is not None else "")
                        + f"({time.perf_counter() - start:.0f}s)",
                        flush=True,
                    )
                    model.quantizer.restarts = 0
        model.eval()
        self._set_model(model)
        self.report = {**self._measure(items, skipped), "skipped_images": float(len(skipped))}
        if skipped:
            print(f"vqvae: skipped {len(skipped)} unreadable images", flush=True)
        print(
            f"vqvae fitted in {time.perf_counter() - start:.0f}s: "
            + ", ".join(f"{k} {v:.4g}" for k, v in self.report.items()),
            flush=True,
        )

    def _set_model(self, model: VQVAE) -> None:
        self.model = model
        digest = hashlib.sha256()
        for key, tensor in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self._weights_hash = digest.hexdigest()

    def _measure(self, items: Sequence[Any], skipped: set[int]) -> dict[str, float]:
        """Reconstruction MSE and codebook statistics of the fitted model on up to
        `MEASURE_ITEMS` images spread evenly over `items` (unreadable ones skipped)."""
        model = self._fitted()
        step = max(1, len(items) // MEASURE_ITEMS)
        index = [i for i in range(0, len(items), step)[:MEASURE_ITEMS] if i not in skipped]
        codes, squared, pixels = [], 0.0, 0
        for i in range(0, len(index), ENCODE_BATCH):
            batch = self._read(items, index[i : i + ENCODE_BATCH], skipped)
            batch_codes = model.encode(batch)
            squared += float(((model.decode(batch_codes) - batch) ** 2).sum())
            pixels += batch.numel()
            codes.append(batch_codes.cpu())
        all_codes = torch.cat(codes)
        used = int(torch.unique(all_codes).numel())
        k = self.options.codebook_size
        return {
            "mse": squared / max(pixels, 1),
            "perplexity": perplexity(all_codes, k),
            "dead_codes": float(k - used),
            "codebook_usage": used / k,
        }

    def encode(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        """Images → `LongTensor[N, h*w]` of code indices (row-major over the grid)."""
        model = self._fitted()
        images = self._to_tensor(items)
        parts = [
            model.encode(images[i : i + ENCODE_BATCH].to(self.device)).flatten(1).cpu()
            for i in range(0, len(images), ENCODE_BATCH)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, math.prod(self.grid), dtype=torch.long)

    def decode(self, tokens: torch.Tensor) -> list[np.ndarray]:
        """`LongTensor[N, h*w]` → uint8 images (size, size, channels)."""
        model = self._fitted()
        h, w = self.grid
        k = self.options.codebook_size
        if tokens.ndim != 2 or tokens.shape[1] != h * w:
            raise PluginError(
                f"vqvae codec decodes tokens of shape [N, {h * w}], got {list(tokens.shape)}"
            )
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < k:
            raise PluginError(f"vqvae codec: token ids must lie in [0, {k})")
        images = [
            model.decode(
                tokens[i : i + ENCODE_BATCH].long().reshape(-1, h, w).to(self.device)
            ).cpu()
            for i in range(0, len(tokens), ENCODE_BATCH)
        ]
        if not images:
            return []
        pixels = (torch.cat(images) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        return list(pixels.numpy())

    def write(self, items: Sequence[np.ndarray], directory: Path) -> list[Path]:
        """Write `sample-NNNN.png` per image and `grid.png` (a near-square grid of them)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        pictures = [_picture(item) for item in items]
        paths = []
        for i, picture in enumerate(pictures):
            path = directory / f"sample-{i:04d}.png"
            picture.save(path)
            paths.append(path)
        if pictures:
            path = directory / "grid.png"
            _grid(pictures).save(path)
            paths.append(path)
        return paths

    def save(self, directory: Path) -> None:
        """Write the weights (`vqvae.safetensors`) and options + report (`vqvae.json`)."""
        model = self._fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, directory / WEIGHTS_FILE)
        meta = {"codec": self.name, "options": asdict(self.options), "report": self.report}
        (directory / STATE_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Restore the options, weights and report written by `save`."""
        directory = Path(directory)
        meta_path, weights_path = directory / STATE_FILE, directory / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise PluginError(
                f"vqvae codec: {directory} lacks {STATE_FILE} or {WEIGHTS_FILE}; save a fitted "
                "codec there"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("codec") != self.name:
            raise PluginError(f"vqvae codec: {meta_path} holds codec {meta.get('codec')!r}")
        self.options = VQOptions.from_dict(meta["options"])
        model = self._new_model()
        model.load_state_dict(load_file(weights_path))
        model.to(self.device).eval()
        self._set_model(model)
        self.report = dict(meta.get("report", {}))


def _picture(item: np.ndarray) -> Image.Image:
    if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.ndim != 3:
        raise PluginError("vqvae codec writes uint8 arrays of shape (H, W, C)")
    return Image.fromarray(item[:, :, 0] if item.shape[2] == 1 else item)


def _grid(pictures: list[Image.Image], pad: int = 2) -> Image.Image:
    """The pictures in a near-square grid, `pad` pixels apart."""
    cols = math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / cols)
    w, h = pictures[0].size
    grid = Image.new(pictures[0].mode, (cols * (w + pad) + pad, rows * (h + pad) + pad))
    for i, picture in enumerate(pictures):
        row, col = divmod(i, cols)
        grid.paste(picture, (pad + col * (w + pad), pad + row * (h + pad)))
    return grid
