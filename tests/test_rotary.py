"""Rotary positions (RoPE): attention scores depend on relative offsets only."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lcmd_core import LCMD
from lcmd_core.denoiser import Denoiser, grid_coordinates, rotary_angles, rotate


@settings(deadline=None, max_examples=40)
@given(
    axes=st.integers(1, 3),
    head_dim=st.sampled_from([6, 8, 12, 16]),
    offset=st.lists(st.integers(-50, 50), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_scores_are_invariant_to_a_common_shift(axes, head_dim, offset, seed):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.randint(-20, 20, (5, axes), generator=gen)
    shifted = coords + torch.tensor(offset[:axes])
    q, k = torch.randn(2, 1, 1, 5, head_dim, generator=gen, dtype=torch.float64)

    def scores(c: torch.Tensor) -> torch.Tensor:
        angles = rotary_angles(c, head_dim)
        cos, sin = angles.cos(), angles.sin()
        return rotate(q, cos, sin) @ rotate(k, cos, sin).transpose(-1, -2)

    torch.testing.assert_close(scores(coords), scores(shifted), rtol=1e-6, atol=1e-6)
    angles = rotary_angles(coords, head_dim)
    rotated = rotate(q, angles.cos(), angles.sin())
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm(dim=-1))  # a rotation


def test_each_axis_gets_its_own_channel_pairs():
    angles = rotary_angles(grid_coordinates((3, 4)), 8).view(3, 4, 4)  # 2 pairs per axis
    assert torch.equal(angles[1, 0, :2], angles[1, 3, :2])  # rows: first pairs
    assert torch.equal(angles[0, 2, 2:], angles[2, 2, 2:])  # columns: last pairs
    assert not torch.equal(angles[0, 0, :2], angles[1, 0, :2])


def test_rope_denoiser_sees_no_absolute_position():
    """Identical latents everywhere give identical logits with RoPE, not with sin-cos."""
    torch.manual_seed(0)
    z = torch.randn(1, 1, 8).expand(2, 12, 8)
    lam = torch.tensor([0.0, 3.0])
    for encoding, same in (("rope", True), ("sincos", False)):
        net = Denoiser(10, 8, (12,), width=32, depth=2, heads=2, pos_encoding=encoding)
        for p in net.parameters():  # leave adaLN-Zero's identity so the blocks do something
            torch.nn.init.normal_(p, std=0.1)
        out = net(z, lam)
        assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-5) == same, encoding
        # yet RoPE does see order: reversing the input does not just reverse the output
        varied = torch.randn(2, 12, 8)
        flipped = net(varied.flip(1), lam).flip(1)
        assert not torch.allclose(flipped, net(varied, lam), atol=1e-4), encoding


def test_rope_model_trains_and_samples():
    torch.manual_seed(0)
    model = LCMD(9, 10, token_shape=(2, 5), pos_encoding="rope", width=32, depth=1, heads=2)
    tokens = torch.randint(0, 9, (4, 10))
    out = model.loss(tokens)
    out["total"].backward()
    assert torch.isfinite(out["total"])
    assert model.sample(2, steps=3, seed=0).shape == (2, 10)
    assert "angles" not in model.state_dict()  # derived from the coordinates, not saved


def test_rope_needs_a_channel_pair_per_axis():
    with pytest.raises(ValueError, match="rope needs at least 6 channels a head for 3"):
        Denoiser(10, 8, (2, 2, 2), width=8, depth=1, heads=2, pos_encoding="rope")
