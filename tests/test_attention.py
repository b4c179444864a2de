"""Attention backends agree, and the choice is explicit."""

import pytest
import torch

from lcmd_core.attention import attention, resolve_backend


def test_math_and_sdpa_agree():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8) for _ in range(3))
    assert torch.allclose(attention(q, k, v, "math"), attention(q, k, v, "sdpa"), atol=1e-5)


def test_auto_resolves_to_sdpa_on_cpu_and_env_overrides(monkeypatch):
    assert resolve_backend("auto", "cpu") == "sdpa"
    monkeypatch.setenv("LCMD_ATTENTION", "math")
    assert resolve_backend("auto", "cpu") == "math"


def test_xformers_on_cpu_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LCMD_ATTENTION", raising=False)
    with pytest.raises(ValueError, match="CUDA"):
        resolve_backend("xformers", "cpu")
    with pytest.raises(ValueError, match="one of"):
        resolve_backend("flash", "cpu")


def test_model_output_same_under_math_and_sdpa():
    from lcmd_core import LCMD

    torch.manual_seed(0)
    model = LCMD(7, 10, width=32, depth=2, heads=4, embed_dim=8, attention="math")
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    z, lam = torch.randn(3, 10, 8), torch.zeros(3)
    a = model.denoise(z, lam)
    model.denoiser.attention_backend = "sdpa"
    assert torch.allclose(a, model.denoise(z, lam), atol=1e-4)
