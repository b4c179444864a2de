"""taming VQGAN import: module tree, safe checkpoint reading, remap, the `taming` codec."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from lcmd_image_vq.taming import TamingConfig, TamingVQGAN, load_taming, read_state_dict
from lcmd_image_vq.taming_codec import TamingCodec, TamingOptions

from lcmd_core.plugins import DataNotFoundError, PluginError
from lcmd_core.testing import CodecConformance

DDCONFIG = {
    "double_z": False,
    "z_channels": 8,
    "resolution": 16,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [8],
    "dropout": 0.0,
}
# sha256 of the sorted "key:shape" lines of taming's own Encoder/Decoder (+ quantize.embedding,
# quant_conv, post_quant_conv) for DDCONFIG, n_embed 16, embed_dim 8; computed by instantiating
# CompVis/taming-transformers' taming/modules/diffusionmodules/model.py (155 tensors).
TAMING_KEYS_SHA256 = "3cd1cf724d94a6bc2d22a17ed008f3448fc2f8680157b6d2a664108d461ab579"


def write_config(path: Path, n_embed: int = 16, **ddconfig: Any) -> Path:
    """A YAML in the layout of taming's configs/*.yaml."""
    params = {
        "embed_dim": 8,
        "n_embed": n_embed,
        "ddconfig": {**DDCONFIG, **ddconfig},
        "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"},
    }
    model = {
        "base_learning_rate": 4.5e-6,
        "target": "taming.models.vqgan.VQModel",
        "params": params,
    }
    path.write_text(yaml.safe_dump({"model": model}), encoding="utf-8")
    return path


def sample_images() -> list[np.ndarray]:
    """Six smooth 16×16 RGB images (gradients of different slopes)."""
    ramp = np.linspace(0.0, 1.0, 16)
    images = []
    for a, b in [(0.2, 0.8), (0.9, 0.1), (0.5, 0.5), (0.1, 0.3), (0.7, 0.9), (0.3, 0.6)]:
        image = np.stack(
            [
                a * np.tile(ramp, (16, 1)),
                b * np.tile(ramp[:, None], (1, 16)),
                np.full((16, 16), (a + b) / 2),
            ],
            axis=-1,
        )
        images.append((image * 255).round().astype(np.uint8))
    return images


def as_input(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2)).float() / 127.5 - 1


def train(model: TamingVQGAN, x: torch.Tensor, steps: int = 120) -> None:
    """A few straight-through VQ-VAE steps, so that round trips mean something."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        z = model.latents(x)
        quantized = model.embed(model.quantize.nearest(z.detach()))
        reconstruction = model.decode_latents(z + (quantized - z).detach())
        loss = (
            F.mse_loss(reconstruction, x)
            + F.mse_loss(quantized, z.detach())
            + 0.25 * F.mse_loss(z, quantized.detach())
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A briefly trained tiny VQGAN as a Lightning-style .ckpt (with loss.* keys) and its YAML."""
    directory = tmp_path_factory.mktemp("taming")
    config = write_config(directory / "model.yaml")
    torch.manual_seed(0)
    model = TamingVQGAN(TamingConfig.from_yaml(config))
    train(model, as_input(sample_images()))
    state = dict(model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)
    state["loss.perceptual_loss.net.slice1.0.bias"] = torch.randn(4)
    checkpoint = directory / "last.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 120}, checkpoint)
    return {"checkpoint": checkpoint, "config": config, "model": model, "dir": directory}


def new_codec(files: dict[str, Any], **options: Any) -> TamingCodec:
    paths = {"checkpoint": str(files["checkpoint"]), "config": str(files["config"])}
    return TamingCodec(TamingOptions.from_dict({**paths, **options}))


def test_state_dict_keys_follow_taming() -> None:
    config = TamingConfig.from_params({"ddconfig": DDCONFIG, "n_embed": 16, "embed_dim": 8})
    shapes = {k: list(v.shape) for k, v in TamingVQGAN(config).state_dict().items()}
    known = {
        "encoder.conv_in.weight": [32, 3, 3, 3],
        "encoder.down.0.block.0.norm1.weight": [32],
        "encoder.down.0.downsample.conv.weight": [32, 32, 3, 3],
        "encoder.down.1.block.0.nin_shortcut.weight": [64, 32, 1, 1],
        "encoder.down.1.attn.0.q.weight": [64, 64, 1, 1],
        "encoder.mid.block_1.conv1.weight": [64, 64, 3, 3],
        "encoder.mid.attn_1.proj_out.weight": [64, 64, 1, 1],
        "encoder.conv_out.weight": [8, 64, 3, 3],
        "quant_conv.weight": [8, 8, 1, 1],
        "quantize.embedding.weight": [16, 8],
        "post_quant_conv.weight": [8, 8, 1, 1],
        "decoder.conv_in.weight": [64, 8, 3, 3],
        "decoder.up.1.attn.1.k.weight": [64, 64, 1, 1],
        "decoder.up.1.upsample.conv.weight": [64, 64, 3, 3],
        "decoder.up.0.block.0.nin_shortcut.weight": [32, 64, 1, 1],
        "decoder.up.0.block.1.conv2.weight": [32, 32, 3, 3],
        "decoder.norm_out.weight": [32],
        "decoder.conv_out.weight": [3, 32, 3, 3],
    }
    assert {k: shapes.get(k) for k in known} == known
    absent = ("encoder.down.1.downsample.conv.weight", "decoder.up.0.upsample.conv.weight")
    assert not any(k in shapes for k in absent)
    assert not any("temb" in k or "attn" in k for k in shapes if k.startswith("encoder.down.0"))
    lines = "\n".join(f"{k}:{v}" for k, v in sorted(shapes.items()))
    assert hashlib.sha256(lines.encode()).hexdigest() == TAMING_KEYS_SHA256


def test_config_layouts_and_errors(tmp_path: Path) -> None:
    nested = TamingConfig.from_yaml(write_config(tmp_path / "a.yaml"))
    flat = tmp_path / "b.yaml"
    flat.write_text(yaml.safe_dump({"ddconfig": DDCONFIG, "n_embed": 16, "embed_dim": 8}))
    assert TamingConfig.from_yaml(flat) == nested and nested.factor == 2
    with pytest.raises(PluginError, match="double_z"):
        TamingConfig.from_yaml(write_config(tmp_path / "c.yaml", double_z=True))
    with pytest.raises(PluginError, match="multiples of 32"):
        TamingConfig.from_yaml(write_config(tmp_path / "d.yaml", ch=24))
    (tmp_path / "e.yaml").write_text(
        "model: {params: {n_embed: 16, embed_dim: 8, ddconfig: {ch: 32}}}"
    )
    with pytest.raises(PluginError, match="missing out_ch"):
        TamingConfig.from_yaml(tmp_path / "e.yaml")


def test_lightning_checkpoint_loads_strictly(files: dict[str, Any]) -> None:
    loaded = load_taming(files["checkpoint"], files["config"])
    x = as_input(sample_images())
    codes = files["model"].encode(x)
    assert codes.shape == (6, 8, 8)
    assert torch.equal(loaded.encode(x), codes)
    assert torch.equal(loaded.decode(codes), files["model"].decode(codes))


def test_plain_state_dict_loads(files: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(files["model"].state_dict(), path)
    assert set(read_state_dict(path)) == set(files["model"].state_dict())


class RunsCode:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"echo pwned > {self.marker}",)


def test_checkpoint_that_would_run_code_is_refused(files: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": files["model"].state_dict(), "callbacks": RunsCode(marker)}, path)
    with pytest.raises(PluginError, match="non-tensor objects") as error:
        load_taming(path, files["config"])
    message = str(error.value)
    assert "\n" not in message and "weights_only=False" in message and "state_dict" in message
    assert not marker.exists()


def test_missing_files_are_data_not_found(files: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"nope\.ckpt not found.*vqgan_imagenet_f16_16384"):
        load_taming(tmp_path / "nope.ckpt", files["config"])
    with pytest.raises(DataNotFoundError, match=r"nope\.yaml not found"):
        load_taming(files["checkpoint"], tmp_path / "nope.yaml")


def test_wrong_keys_name_the_first_one(files: dict[str, Any], tmp_path: Path) -> None:
    state = dict(files["model"].state_dict())
    state["encoder.mid.attn_1.out.weight"] = state.pop("encoder.mid.attn_1.proj_out.weight")
    torch.save({"state_dict": state}, tmp_path / "renamed.ckpt")
    with pytest.raises(PluginError, match=r"lacks encoder\.mid\.attn_1\.proj_out\.weight"):
        load_taming(tmp_path / "renamed.ckpt", files["config"])
    state = {**files["model"].state_dict(), "quantize.used": torch.arange(4)}
    torch.save({"state_dict": state}, tmp_path / "extra.ckpt")
    with pytest.raises(PluginError, match=r"unexpected key quantize\.used"):
        load_taming(tmp_path / "extra.ckpt", files["config"])
    with pytest.raises(PluginError, match=r"quantize\.embedding\.weight has shape \[16, 8\]"):
        load_taming(files["checkpoint"], write_config(tmp_path / "k32.yaml", n_embed=32))
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(PluginError, match="not a readable PyTorch file"):
        load_taming(tmp_path / "junk.ckpt", files["config"])


def test_remap_to_used_codes(files: dict[str, Any]) -> None:
    images = sample_images()
    full, remapped = new_codec(files), new_codec(files, remap=True)
    full.fit(images)
    remapped.fit(images)
    full_tokens, tokens = full.encode(images), remapped.encode(images)
    used = remapped.model.used_codes
    assert remapped.token_spec.vocab_size == len(used) == len(torch.unique(full_tokens)) < 16
    assert int(tokens.min()) >= 0 and int(tokens.max()) < len(used)
    assert torch.equal(used[tokens], full_tokens)
    assert remapped.token_spec.fingerprint != full.token_spec.fingerprint
    for a, b in zip(remapped.decode(tokens), full.decode(full_tokens), strict=True):
        assert np.array_equal(a, b)


def test_used_codes_file(files: dict[str, Any], tmp_path: Path) -> None:
    np.save(tmp_path / "used.npy", np.array([3, 0, 9, 12]))
    codec = new_codec(files, used_codes=str(tmp_path / "used.npy"))
    codec.fit([])
    assert codec.token_spec.vocab_size == 4
    assert int(codec.encode(sample_images()).max()) < 4
    np.save(tmp_path / "dup.npy", np.array([3, 3, 9]))
    with pytest.raises(PluginError, match="distinct"):
        new_codec(files, used_codes=str(tmp_path / "dup.npy")).fit([])
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(PluginError, match="not a numeric"):
        new_codec(files, used_codes=str(tmp_path / "objects.npy")).fit([])


def test_options_are_checked(files: dict[str, Any]) -> None:
    with pytest.raises(PluginError, match="needs the options checkpoint"):
        TamingOptions.from_dict({"remap": True})
    with pytest.raises(PluginError, match="unknown option ckpt"):
        TamingOptions.from_dict({"ckpt": "x"})
    with pytest.raises(PluginError, match="remap must be a bool"):
        new_codec(files, remap=1)
    with pytest.raises(PluginError, match="not a multiple"):
        new_codec(files, size=15).fit([])


def test_load_refuses_a_changed_checkpoint(files: dict[str, Any], tmp_path: Path) -> None:
    checkpoint = tmp_path / "copy.ckpt"
    shutil.copy(files["checkpoint"], checkpoint)
    codec = TamingCodec(
        TamingOptions(checkpoint=str(checkpoint), config=str(files["config"]), remap=True)
    )
    codec.fit(sample_images())
    codec.save(tmp_path / "codec")
    state = files["model"].state_dict()
    state["quantize.embedding.weight"] = state["quantize.embedding.weight"] + 1
    torch.save({"state_dict": state}, checkpoint)
    restored = TamingCodec(TamingOptions(checkpoint="elsewhere", config="elsewhere"))
    with pytest.raises(
        PluginError, match=r"checkpoint .*copy\.ckpt changed since this codec was saved"
    ):
        restored.load(tmp_path / "codec")


class TestTamingCodec(CodecConformance):
    exact_round_trip = False
    round_trip_tolerance = 40.0  # of 255; the tiny model's trained error is ≤ 26, untrained 50–86

    @pytest.fixture(autouse=True)
    def _files(self, files: dict[str, Any]) -> None:
        self.files = files

    def new_codec(self) -> TamingCodec:
        return new_codec(self.files, remap=True)

    def sample_items(self) -> list[np.ndarray]:
        return sample_images()
