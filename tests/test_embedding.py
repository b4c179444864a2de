"""Embedding normalisation, freezing and the collapse diagnostics."""

import math

import pytest
import torch

from lcmd_core.embedding import TokenEmbedding, collapse_diagnostics


@pytest.mark.parametrize(("norm", "expected"), [("l2", 1.0), ("l2_scaled", math.sqrt(16))])
def test_normalised_rows(norm, expected):
    emb = TokenEmbedding(10, 16, norm=norm)
    assert torch.allclose(emb.weight.norm(dim=-1), torch.full((10,), expected), atol=1e-5)


@pytest.mark.parametrize(("norm", "unit"), [("l2", 1.0), ("l2_scaled", 4.0)])
@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_scale_sets_the_fixed_norm_of_normalised_rows(norm, unit, scale):
    emb = TokenEmbedding(10, 16, norm=norm, scale=scale)
    assert torch.allclose(emb.weight.norm(dim=-1), torch.full((10,), scale * unit), atol=1e-5)


def test_scale_sets_the_initial_norm_and_the_table_stays_free():
    torch.manual_seed(0)
    plain, scaled = TokenEmbedding(2000, 64), TokenEmbedding(2000, 64, scale=5.0)
    assert abs(float(plain.weight.detach().norm(dim=-1).mean()) - 1.0) < 0.02
    assert abs(float(scaled.weight.detach().norm(dim=-1).mean()) - 5.0) < 0.1
    assert scaled.weight is scaled.table  # not renormalised: training may change the norm


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="embed_scale"):
        TokenEmbedding(4, 4, scale=0.0)


def test_frozen_table_gets_no_gradient_but_mask_vector_does():
    emb = TokenEmbedding(5, 4, frozen=True)
    assert not emb.table.requires_grad and emb.mask_vector.requires_grad


def test_diagnostics_detect_collapse():
    torch.manual_seed(0)
    spread = collapse_diagnostics(torch.randn(32, 8))
    collapsed = collapse_diagnostics(torch.randn(1, 8).expand(32, 8) + 1e-6 * torch.randn(32, 8))
    for key in ("mean_pairwise_dist", "cov_trace", "mean_nn_dist"):
        assert collapsed[key] < 1e-3 * spread[key]
    assert spread["effective_rank"] > 6
    # a rank-1 spread (all rows on one line) has effective rank near 1
    line = torch.linspace(-1, 1, 32)[:, None] * torch.randn(1, 8)
    assert collapse_diagnostics(line)["effective_rank"] == pytest.approx(1.0, abs=1e-3)


def test_diagnostics_closed_form_on_two_points():
    d = collapse_diagnostics(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert d["mean_pairwise_dist"] == pytest.approx(5.0)
    assert d["mean_nn_dist"] == pytest.approx(5.0)
    assert d["cov_trace"] == pytest.approx(12.5)  # var over 2 rows, n−1: (1.5²·2)/1 + (2²·2)/1
