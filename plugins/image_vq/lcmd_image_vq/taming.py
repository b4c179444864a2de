"""taming-transformers' VQGAN (`VQModel`) inference path in plain torch, and its safe loading.

The module tree follows taming's `Encoder`, `Decoder` and `VectorQuantizer2`, so the `state_dict`
of a taming checkpoint loads strictly once its `loss.*` (LPIPS, discriminator) keys are dropped.
Checkpoints are read with `torch.load(weights_only=True)`: nothing in them is ever executed.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from lcmd_core.plugins import DataNotFoundError, PluginError

CHECKPOINT_SOURCE = (
    "a taming-transformers VQModel checkpoint, e.g. vqgan_imagenet_f16_16384 from the "
    "taming-transformers model zoo or the FFHQ f16 1024 VQGAN linked from the VQ-Diffusion readme"
)
CONFIG_SOURCE = "the YAML that comes with the checkpoint (configs/model.yaml in taming's downloads)"
IGNORED_PREFIX = "loss."


@dataclass(frozen=True)
class TamingConfig:
    """A `VQModel`'s architecture: its YAML's `ddconfig` plus `n_embed` and `embed_dim`."""

    ch: int
    out_ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    in_channels: int
    resolution: int
    z_channels: int
    n_embed: int
    embed_dim: int
    dropout: float = 0.0

    @property
    def factor(self) -> int:
        """Downsampling factor f: tokens per side = image side / f."""
        return 2 ** (len(self.ch_mult) - 1)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of this config."""
        data = asdict(self)
        data["ch_mult"], data["attn_resolutions"] = list(self.ch_mult), list(self.attn_resolutions)
        return data

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str = "config") -> TamingConfig:
        """From `{ddconfig: {...}, n_embed, embed_dim}` (taming's `model.params`)."""
        dd = params.get("ddconfig")
        if not isinstance(dd, dict):
            raise PluginError(f"taming {where}: no ddconfig under model.params")
        if dd.get("double_z", False):
            raise PluginError(f"taming {where}: double_z is true, which is not a VQModel config")
        if not dd.get("resamp_with_conv", True) or dd.get("give_pre_end", False):
            raise PluginError(
                f"taming {where}: resamp_with_conv false / give_pre_end true are unsupported"
            )
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            source = params if name in ("n_embed", "embed_dim") else dd
            if name not in source:
                if name == "dropout":
                    continue
                raise PluginError(f"taming {where}: missing {name}")
            value = source[name]
            if name in ("ch_mult", "attn_resolutions"):
                ok = isinstance(value, list) and all(type(v) is int and v > 0 for v in value)
                value = tuple(value) if ok else value
            elif name == "dropout":
                ok = isinstance(value, int | float) and not isinstance(value, bool)
            else:
                ok = type(value) is int and value > 0
            if not ok:
                raise PluginError(f"taming {where}: {name} has the invalid value {value!r}")
            values[name] = value
        config = cls(**values)
        widths = [config.ch * m for m in config.ch_mult]
        if not config.ch_mult or any(w % 32 for w in widths):
            raise PluginError(f"taming {where}: ch * ch_mult must be multiples of 32 (GroupNorm)")
        if config.resolution % config.factor:
            raise PluginError(f"taming {where}: resolution is not a multiple of {config.factor}")
        return config

    @classmethod
    def from_yaml(cls, path: Path) -> TamingConfig:
        """Read a taming YAML (`model: params: {...}`, or those params at the top level)."""
        path = Path(path)
        if not path.is_file():
            raise DataNotFoundError(f"taming config {path} not found: expected {CONFIG_SOURCE}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise PluginError(f"taming config {path} is not valid YAML: {first}") from None
        if isinstance(data, dict) and isinstance(data.get("model"), dict):
            data = data["model"].get("params")
        if not isinstance(data, dict):
            raise PluginError(f"taming config {path}: expected a mapping with model: params:")
        return cls.from_params(data, where=f"config {path}")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


def _conv3(c_in: int, c_out: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding)


class ResnetBlock(nn.Module):
    """Residual block: (GroupNorm, swish, conv) ×2; a 1×1 `nin_shortcut` when the width changes."""

    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), _conv3(c_in, c_out)
        self.norm2, self.dropout, self.conv2 = (
            _norm(c_out),
            nn.Dropout(dropout),
            _conv3(c_out, c_out),
        )
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions; 1×1 convs `q`, `k`, `v`, `proj_out`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (proj(y).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3×3 conv after padding one zero row and column at the bottom and right."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2 then a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution: `block` (ResnetBlocks), `attn` (one per block or none), then a resampler."""

    def __init__(
        self, blocks: list[ResnetBlock], attention: bool, resample: nn.Module | None, name: str
    ) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(
            [AttnBlock(b.conv2.out_channels) for b in blocks] if attention else []
        )
        self.resample_name = name
        if resample is not None:
            self.add_module(name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        resample = getattr(self, self.resample_name, None)
        return x if resample is None else resample(x)


class Mid(nn.Module):
    """The bottleneck: `block_1`, `attn_1`, `block_2`."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """Images [N, in_channels, H, W] → latents [N, z_channels, H/f, W/f]."""

    def __init__(self, c: TamingConfig) -> None:
        super().__init__()
        self.conv_in = _conv3(c.in_channels, c.ch)
        widths, res, levels = [c.ch * m for m in c.ch_mult], c.resolution, []
        c_in = c.ch
        for i, width in enumerate(widths):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(ResnetBlock(c_in, width, c.dropout))
                c_in = width
            last = i == len(widths) - 1
            levels.append(
                Level(
                    blocks,
                    res in c.attn_resolutions,
                    None if last else Downsample(width),
                    "downsample",
                )
            )
            res = res if last else res // 2
        self.down = nn.ModuleList(levels)
        self.mid = Mid(c_in, c.dropout)
        self.norm_out = _norm(c_in)
        self.conv_out = _conv3(c_in, c.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Latents [N, z_channels, h, w] → images [N, out_ch, h·f, w·f]; `up[0]` is the finest level."""

    def __init__(self, c: TamingConfig) -> None:
        super().__init__()
        widths = [c.ch * m for m in c.ch_mult]
        c_in, res = widths[-1], c.resolution // c.factor
        self.conv_in = _conv3(c.z_channels, c_in)
        self.mid = Mid(c_in, c.dropout)
        levels: list[Level] = []
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(ResnetBlock(c_in, widths[i], c.dropout))
                c_in = widths[i]
            upsample = Upsample(c_in) if i else None
            levels.insert(0, Level(blocks, res in c.attn_resolutions, upsample, "upsample"))
            res = res * 2 if i else res
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(c_in)
        self.conv_out = _conv3(c_in, c.out_ch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The codebook `embedding` [n_embed, embed_dim] and nearest-entry lookup."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def nearest(self, z: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Latents [N, D, h, w] → indices [N, h, w] of the nearest (squared L2) entry.

        With `codes`, only those entries compete and the result indexes into `codes`.
        """
        n, d, h, w = z.shape
        weight = self.embedding.weight if codes is None else self.embedding.weight[codes]
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        distance = flat.pow(2).sum(1, keepdim=True) + weight.pow(2).sum(1) - 2 * flat @ weight.T
        return distance.argmin(1).view(n, h, w)


class TamingVQGAN(nn.Module):
    """taming's `VQModel` for inference: `encode(x in [-1, 1]) -> indices`, `decode(indices)`.

    With `used_codes` set (a remap, as VQ-Diffusion's 974 of 16384), tokens are positions in that
    list, the vocabulary shrinks to its length and encoding picks the nearest *used* entry.
    """

    def __init__(self, config: TamingConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder, self.decoder = Encoder(config), Decoder(config)
        self.quantize = VectorQuantizer(config.n_embed, config.embed_dim)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.used_codes: torch.Tensor | None = None

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens: n_embed, or the number of used codes when remapped."""
        return self.config.n_embed if self.used_codes is None else len(self.used_codes)

    def set_used_codes(self, codes: torch.Tensor | np.ndarray | None) -> None:
        """Remap to `codes` (distinct codebook indices, at least two), or undo it with None."""
        if codes is None:
            self.used_codes = None
            return
        codes = torch.as_tensor(np.asarray(codes))
        n = self.config.n_embed
        if codes.ndim != 1 or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise PluginError(
                f"taming used codes must be a 1-D integer array, got {codes.dtype} "
                f"{list(codes.shape)}"
            )
        if len(codes) < 2 or len(torch.unique(codes)) != len(codes):
            raise PluginError("taming used codes must be at least two distinct indices")
        if int(codes.min()) < 0 or int(codes.max()) >= n:
            raise PluginError(f"taming used codes must lie in [0, {n}) (the codebook size)")
        self.used_codes = codes.long()

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] in [-1, 1] → pre-quantisation latents [N, embed_dim, h, w]."""
        return self.quant_conv(self.encoder(x))

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices [N, h, w] → codebook vectors [N, embed_dim, h, w]."""
        if self.used_codes is not None:
            indices = self.used_codes.to(indices.device)[indices]
        return self.quantize.embedding(indices).permute(0, 3, 1, 2)

    def decode_latents(self, quantized: torch.Tensor) -> torch.Tensor:
        """Codebook vectors [N, embed_dim, h, w] → images [N, out_ch, H, W] (about [-1, 1])."""
        return self.decoder(self.post_quant_conv(quantized))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [N, C, H, W] in [-1, 1] → token indices [N, h, w]."""
        codes = None if self.used_codes is None else self.used_codes.to(x.device)
        return self.quantize.nearest(self.latents(x), codes)

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Token indices [N, h, w] → images [N, out_ch, H, W] clamped to [-1, 1]."""
        return self.decode_latents(self.embed(indices)).clamp(-1, 1)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The weights in a taming `.ckpt` (Lightning `{"state_dict": ...}`) or a plain state_dict.

    Read with `weights_only=True`; `loss.*` keys are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"taming checkpoint {path} not found: expected {CHECKPOINT_SOURCE}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        if found is None:
            raise PluginError(f"taming checkpoint {path} is not a readable PyTorch file") from None
        raise PluginError(
            f"taming checkpoint {path} holds non-tensor objects ({found.group(1)}), which lcmd "
            "will not unpickle; if you trust the file, extract its weights in your own "
            "environment with: import torch; "
            f"ckpt = torch.load({str(path)!r}, map_location='cpu', weights_only=False); "
            f"torch.save(ckpt['state_dict'], {str(path) + '.state_dict.pt'!r}) "
            "and give that file as the checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise PluginError(
            f"taming checkpoint {path} is not a readable PyTorch file ({type(error).__name__})"
        ) from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise PluginError(f"taming checkpoint {path} holds no state_dict")
    weights = {}
    for key, value in state.items():
        if str(key).startswith(IGNORED_PREFIX):
            continue
        if not isinstance(value, torch.Tensor):
            raise PluginError(
                f"taming checkpoint {path}: {key} is a {type(value).__name__}, not a tensor"
            )
        weights[key] = value
    return weights


def load_taming(checkpoint: Path, config: Path) -> TamingVQGAN:
    """A `TamingVQGAN` built from the YAML `config` with the weights of `checkpoint`, in eval mode.

    Keys must match exactly (besides `loss.*`): the first missing, unexpected or misshapen one is
    named in a `PluginError`.
    """
    model = TamingVQGAN(TamingConfig.from_yaml(config))
    state = read_state_dict(checkpoint)
    expected = model.state_dict()
    hint = f"is {config} the config of {checkpoint}?"
    for key in expected:
        if key not in state:
            raise PluginError(f"taming checkpoint {checkpoint} lacks {key}; {hint}")
    for key, value in state.items():
        if key not in expected:
            raise PluginError(
                f"taming checkpoint {checkpoint} has the unexpected key {key}; {hint}"
            )
        if value.shape != expected[key].shape:
            raise PluginError(
                f"taming checkpoint {checkpoint}: {key} has shape {list(value.shape)}, the config "
                f"makes {list(expected[key].shape)}; {hint}"
            )
    model.load_state_dict(state)
    return model.eval()


def read_used_codes(path: Path) -> np.ndarray:
    """A `.npy` array of used codebook indices (taming's `remap` file), read without pickle."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"taming used-codes file {path} not found: expected a .npy of used codebook indices "
            "(e.g. computed by `lcmd prepare` with remap, or taming's remap file)"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise PluginError(
            f"taming used-codes file {path} is not a numeric .npy array ({error})"
        ) from None
