"""Conformance tests every codec passes; plugin authors subclass `CodecConformance` (needs pytest).

```python
class TestCharsCodec(CodecConformance):
    def new_codec(self):
        return CharsCodec()

    def sample_items(self):
        return ["LATIN SMALL LETTER A", "DIGIT ONE"]
```

`make_codec` fits `new_codec()` on `sample_items()` when the codec needs fitting, once per
test; override it to fit on more data (cache an expensive fit yourself). Lossy codecs set
`exact_round_trip = False` and a `round_trip_tolerance`, or override `assert_items_equal`.
A codec that takes prompts (`PromptCodec`) lists some in `valid_prompts()` and, optionally,
prompts it must refuse in `invalid_prompts()`. `lcmd check-plugin` runs the same checks on an
installed plugin's default codec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lcmd_core.codec import Codec, PromptCodec, TokenSpec
from lcmd_core.plugins import PluginError


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    if hasattr(a, "__array__") or hasattr(b, "__array__"):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return bool(a == b)


def _as_float_array(item: Any) -> np.ndarray:
    if isinstance(item, torch.Tensor):
        item = item.detach().cpu().numpy()
    return np.asarray(item, dtype=np.float64)


class CodecConformance:
    """Base class of a codec's conformance tests; subclasses named `Test*` are collected."""

    exact_round_trip: bool = True
    round_trip_tolerance: float = 0.0
    """With `exact_round_trip = False`: the largest mean absolute difference allowed between a
    decoded item and its original, both read as float arrays."""

    def new_codec(self) -> Codec:
        """A codec as the plugin's factory makes it (unfitted); `load` restores state into it."""
        raise NotImplementedError(f"{type(self).__name__} must define new_codec()")

    def sample_items(self) -> list[Any]:
        """A handful of items of the modality (more than one, not all alike)."""
        raise NotImplementedError(f"{type(self).__name__} must define sample_items()")

    def valid_prompts(self) -> list[str]:
        """Prompts a `PromptCodec` accepts for the codec `make_codec` returns."""
        return []

    def invalid_prompts(self) -> list[str]:
        """Prompts a `PromptCodec` must refuse with a `PluginError` (too long, unknown symbols)."""
        return []

    def make_codec(self) -> Codec:
        """The codec under test, fitted if it needs fitting."""
        codec = self.new_codec()
        if codec.needs_fit:
            codec.fit(self.sample_items())
        return codec

    def assert_items_equal(self, decoded: list[Any], items: list[Any]) -> None:
        """Fail unless the decoded items match the originals (exactly, or within tolerance)."""
        assert len(decoded) == len(items), f"decoded {len(decoded)} items from {len(items)}"
        for i, (got, want) in enumerate(zip(decoded, items, strict=True)):
            if self.exact_round_trip:
                assert _same(got, want), f"item {i}: decoded {got!r} != original {want!r}"
            else:
                error = float(np.mean(np.abs(_as_float_array(got) - _as_float_array(want))))
                assert error <= self.round_trip_tolerance, (
                    f"item {i}: mean absolute error {error:.4g} > {self.round_trip_tolerance}"
                )

    @pytest.fixture
    def codec(self) -> Codec:
        return self.make_codec()

    @pytest.fixture
    def items(self) -> list[Any]:
        items = list(self.sample_items())
        assert len(items) >= 2, "sample_items() must return at least two items"
        return items

    def test_token_spec_is_valid(self, codec: Codec) -> None:
        spec = codec.token_spec
        assert isinstance(spec, TokenSpec)
        assert isinstance(codec.name, str) and codec.name
        assert isinstance(codec.needs_fit, bool)
        assert spec.vocab_size >= 2
        assert spec.seq_len == int(np.prod(spec.token_shape)) >= 1
        assert isinstance(spec.fingerprint, str) and spec.fingerprint
        assert spec.num_classes >= 0
        assert not spec.class_names or len(spec.class_names) == spec.num_classes
        assert TokenSpec.from_json(spec.to_json()) == spec

    def test_encode_shape_and_dtype(self, codec: Codec, items: list[Any]) -> None:
        tokens = codec.encode(items)
        assert isinstance(tokens, torch.Tensor)
        assert tokens.dtype == torch.int64
        assert tuple(tokens.shape) == (len(items), codec.token_spec.seq_len)

    def test_tokens_within_vocab(self, codec: Codec, items: list[Any]) -> None:
        tokens = codec.encode(items)
        assert int(tokens.min()) >= 0
        assert int(tokens.max()) < codec.token_spec.vocab_size

    def test_round_trip(self, codec: Codec, items: list[Any]) -> None:
        self.assert_items_equal(codec.decode(codec.encode(items)), items)

    def test_encode_is_deterministic(self, codec: Codec, items: list[Any]) -> None:
        assert torch.equal(codec.encode(items), codec.encode(items))

    def test_encoding_is_batch_size_invariant(self, codec: Codec, items: list[Any]) -> None:
        one_by_one = torch.cat([codec.encode([item]) for item in items])
        assert torch.equal(one_by_one, codec.encode(items))

    def test_save_load_restores_codec(self, codec: Codec, items: list[Any], tmp_path: Path) -> None:
        directory = tmp_path / "codec"
        directory.mkdir()
        codec.save(directory)
        restored = self.new_codec()
        restored.load(directory)
        assert restored.name == codec.name
        assert restored.token_spec == codec.token_spec
        assert torch.equal(restored.encode(items), codec.encode(items))

    def test_any_in_range_tokens_decode(self, codec: Codec) -> None:
        spec = codec.token_spec
        generator = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, spec.vocab_size, (4, spec.seq_len), generator=generator)
        tokens[0] = 0
        tokens[1] = spec.vocab_size - 1
        decoded = codec.decode(tokens)  # what a sampler draws must always read back
        assert len(decoded) == 4, f"decoded {len(decoded)} items from 4 token rows"

    def test_prompt_tokens_contract(self, codec: Codec) -> None:
        if not isinstance(codec, PromptCodec):
            pytest.skip(f"codec {codec.name} takes no prompts")
        prompts = self.valid_prompts()
        assert prompts, "a codec that takes prompts lists some in valid_prompts()"
        spec = codec.token_spec
        for prompt in prompts:
            known = codec.prompt_tokens(prompt, spec.seq_len)
            assert isinstance(known, torch.Tensor) and known.dtype == torch.int64
            assert tuple(known.shape) == (spec.seq_len,), f"{prompt!r}: shape {list(known.shape)}"
            kept = known[known != -1]
            assert bool(((kept >= 0) & (kept < spec.vocab_size)).all()), (
                f"{prompt!r}: tokens outside -1 (free) and [0, {spec.vocab_size})"
            )
        for prompt in self.invalid_prompts():
            with pytest.raises(PluginError):
                codec.prompt_tokens(prompt, spec.seq_len)

    def test_write_creates_files(self, codec: Codec, items: list[Any], tmp_path: Path) -> None:
        decoded = codec.decode(codec.encode(items))
        paths = codec.write(decoded, tmp_path)
        assert paths, "write() returned no paths"
        for path in paths:
            path = Path(path)
            assert path.is_file(), f"write() returned {path}, which is not a file"
            assert path.stat().st_size > 0, f"write() left {path} empty"
            assert path.resolve().is_relative_to(tmp_path.resolve())


def check_backbone(
    name: str,
    spec: TokenSpec,
    *,
    plugins: Any = None,
    batch: int = 2,
    **model_options: Any,
) -> None:
    """Assert that backbone `name` keeps the contract for tokens of `spec` (raises AssertionError).

    Checks the logits' shape with and without labels and self-conditioning, that the output
    depends on z, λ, the labels and the self-conditioning input once the weights are perturbed
    away from their (possibly zero) initialisation, that it is deterministic in eval mode, and
    that both processes train a step (finite loss, gradients reach the network) and sample with
    it. `plugins` is the plugin manager that registers it (default: the installed plugins);
    `model_options` are `ModelConfig` fields (e.g. width=32, depth=1).
    """
    from lcmd_core.backbone import BackboneSpec, build_backbone
    from lcmd_core.config import ModelConfig
    from lcmd_core.masked import MaskedDiffusion
    from lcmd_core.model import LCMD

    options = {"width": 32, "depth": 1, "heads": 2, "embed_dim": 8, **model_options}
    model = ModelConfig(backbone=name, self_condition=True, **options)
    bspec = BackboneSpec(
        vocab_size=spec.vocab_size,
        embed_dim=model.embed_dim,
        token_shape=spec.token_shape,
        positions=spec.positions,
        num_classes=max(spec.num_classes, 2),
        model=model,
    )
    torch.manual_seed(0)
    net, _ = build_backbone(bspec, plugins)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    net.eval()
    gen = torch.Generator().manual_seed(1)
    shape = (batch, spec.seq_len, model.embed_dim)
    z, cond = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    lam = torch.linspace(-3.0, 3.0, batch)
    labels = torch.arange(batch) % bspec.num_classes
    expected = (batch, spec.seq_len, spec.vocab_size)

    def run(z: Any, lam: Any, labels: Any, cond: Any) -> torch.Tensor:
        with torch.no_grad():
            out = net(z, lam, labels, cond)
        assert isinstance(out, torch.Tensor), f"backbone {name!r} returned {type(out).__name__}"
        assert tuple(out.shape) == expected, f"logits {list(out.shape)}, expected {list(expected)}"
        assert torch.isfinite(out).all(), f"backbone {name!r} returned non-finite logits"
        return out

    base = run(z, lam, labels, cond)
    assert torch.equal(base, run(z, lam, labels, cond)), "not deterministic in eval mode"
    run(z, lam, None, None)  # no labels (null class), no self-conditioning
    changes = {
        "z": run(z + 1.0, lam, labels, cond),
        "log_snr": run(z, lam + 2.0, labels, cond),
        "labels": run(z, lam, torch.full_like(labels, bspec.num_classes), cond),
        "self_cond": run(z, lam, labels, cond + 1.0),
    }
    for what, out in changes.items():
        assert not torch.allclose(out, base), f"backbone {name!r} ignores {what}"

    tokens = torch.randint(0, spec.vocab_size, (batch, spec.seq_len), generator=gen)
    for process in (LCMD, MaskedDiffusion):
        diffusion_model = process(
            spec.vocab_size,
            spec.seq_len,
            token_shape=spec.token_shape,
            positions=spec.positions,
            plugins=plugins,
            backbone=name,
            **options,
        )
        terms = diffusion_model.loss(tokens)
        assert torch.isfinite(terms["total"]), f"{process.__name__}: non-finite loss"
        terms["total"].backward()
        grads = [p.grad for p in diffusion_model.denoiser.parameters() if p.requires_grad]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads), (
            f"{process.__name__}: no gradient reaches backbone {name!r}"
        )
        diffusion_model.eval()
        drawn = diffusion_model.sample(batch, steps=2, seed=0)
        assert tuple(drawn.shape) == (batch, spec.seq_len)
        assert int(drawn.min()) >= 0 and int(drawn.max()) < spec.vocab_size
