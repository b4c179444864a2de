"""Each loss term against an independent closed-form computation, plus sampling helpers."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from lcmd_core import objective as obj


def test_diffusion_loss_matches_hand_computation():
    e = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    x_hat = torch.tensor([[[0.5, 0.0], [0.0, 1.0]]])
    keep = torch.tensor([[True, False]])
    snr_prime = torch.tensor([-4.0])
    # −½ · (−4) · (0.5² only at the kept position) = 0.5
    assert torch.allclose(obj.diffusion_loss(e, x_hat, snr_prime, keep), torch.tensor([0.5]))
    keep_all = torch.ones(1, 2, dtype=torch.bool)
    assert torch.allclose(obj.diffusion_loss(e, x_hat, snr_prime, keep_all), torch.tensor([2.5]))


def test_prior_loss_is_gaussian_kl():
    e = torch.randn(3, 5, 4, dtype=torch.float64)
    alpha, sigma = torch.tensor(0.3, dtype=torch.float64), torch.tensor(math.sqrt(1 - 0.09))
    q = torch.distributions.Normal(alpha * e, sigma.double())
    p = torch.distributions.Normal(torch.zeros_like(e), torch.ones_like(e))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(-1)
    assert torch.allclose(obj.prior_loss(e, alpha, sigma.double()), expected)


def test_cross_entropy_is_sum_of_negative_log_probs():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]]))
    tokens = torch.tensor([[0, 2]])
    expected = -(math.log(0.5) + math.log(0.8))
    assert math.isclose(float(obj.cross_entropy(logits, tokens)), expected, rel_tol=1e-6)
    where = torch.tensor([[False, True]])
    assert math.isclose(
        float(obj.cross_entropy(logits, tokens, where)), -math.log(0.8), rel_tol=1e-6
    )


def test_consistency_loss_is_kl_and_only_trains_the_later_prediction():
    p_s = torch.tensor([[[0.7, 0.2, 0.1]]])
    p_t = torch.tensor([[[0.4, 0.4, 0.2]]])
    target, logits = p_s.log(), p_t.log().requires_grad_(True)
    expected = float((p_s * (p_s / p_t).log()).sum())
    loss = obj.consistency_loss(target.requires_grad_(True), logits)
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-5)
    loss.sum().backward()
    assert target.grad is None and logits.grad is not None


@given(st.integers(1, 4), st.integers(1, 8), st.integers(2, 50), st.floats(-20, 20))
def test_consistency_loss_zero_when_predictions_agree(b, length, k, scale):
    logits = torch.randn(b, length, k) * scale
    assert torch.allclose(obj.consistency_loss(logits, logits.clone()), torch.zeros(b), atol=1e-5)


@given(st.integers(1, 300))
def test_low_discrepancy_times_cover_unit_interval_evenly(n):
    t = obj.low_discrepancy_times(n, generator=torch.Generator().manual_seed(n))
    assert t.min() >= 0 and t.max() < 1
    counts = torch.histc(t, bins=n, min=0, max=1)
    assert int(counts.max()) <= 2  # one per bin up to the boundary shift


def test_drop_mask_rate_matches_probability():
    gen = torch.Generator().manual_seed(0)
    for p in (0.1, 0.3, 0.5):
        rate = obj.drop_mask((200, 256), p, generator=gen).float().mean()
        # 51,200 Bernoulli draws: standard error ≈ 0.0022
        assert abs(float(rate) - p) < 0.01
    assert not obj.drop_mask((4, 4), 0.0).any()


def test_consistency_times_are_earlier():
    t = torch.rand(100, dtype=torch.float64)
    s = obj.consistency_times(t, "uniform", 0.1, generator=torch.Generator().manual_seed(0))
    assert torch.all(s <= t) and torch.all(s >= 0)
    assert torch.allclose(obj.consistency_times(t, "delta", 0.1), (t - 0.1).clamp_min(0))


def test_bayes_readout_is_the_exact_posterior():
    torch.manual_seed(0)
    table = torch.randn(5, 3, dtype=torch.float64)
    z = torch.randn(2, 4, 3, dtype=torch.float64)
    alpha = torch.tensor([0.8, 0.3], dtype=torch.float64)
    sigma = (1 - alpha**2).sqrt()
    logits = obj.bayes_readout(z, table, alpha, sigma)
    # posterior ∝ N(z; α E_k, σ²) under a uniform prior over k
    dist = torch.distributions.Normal(
        alpha[:, None, None, None] * table, sigma[:, None, None, None]
    )
    loglik = dist.log_prob(z[:, :, None, :]).sum(-1)
    assert torch.allclose(logits.log_softmax(-1), loglik.log_softmax(-1), atol=1e-9)


def test_bayes_readout_adds_to_base_only_where_kept():
    torch.manual_seed(1)
    table = torch.randn(7, 4, dtype=torch.float64)
    z = torch.randn(3, 5, 4, dtype=torch.float64)
    alpha = torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)
    sigma = (1 - alpha**2).sqrt()
    keep = torch.rand(3, 5) > 0.4
    base = torch.randn(3, 5, 7, dtype=torch.float64)
    readout = obj.bayes_readout(z, table, alpha, sigma)
    fused = obj.bayes_readout(z, table, alpha, sigma, keep, base=base)
    expected = base + torch.where(keep[..., None], readout, torch.zeros(()))
    assert torch.allclose(fused, expected, atol=1e-10)
    # The two terms written out, the way the readout is usually stated.
    a, s2 = alpha[:, None, None], sigma[:, None, None] ** 2
    direct = (a / s2) * (z @ table.T) - (a * a / (2 * s2)) * table.pow(2).sum(-1)
    assert torch.allclose(readout, direct, atol=1e-10)


def test_expected_embedding_stays_float32_under_autocast():
    logits = torch.randn(2, 3, 5)
    table = torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat = obj.expected_embedding(logits, table)
        plain_matmul = logits.softmax(-1) @ table
    assert plain_matmul.dtype == torch.bfloat16  # what autocast would otherwise do
    assert x_hat.dtype == torch.float32
    assert torch.allclose(x_hat, logits.softmax(-1) @ table, atol=1e-6)
