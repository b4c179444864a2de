"""The importance-sampling proposal for t: a valid, monotone CDF whose reweighting is unbiased."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lcmd_core import LCMD
from lcmd_core.objective import low_discrepancy_times
from lcmd_core.time_warp import TimeWarp

losses = st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=40)


def fitted(bin_loss: list[float], uniform_mix: float = 0.1) -> TimeWarp:
    warp = TimeWarp(bins=len(bin_loss), uniform_mix=uniform_mix)
    warp.bin_loss.copy_(torch.tensor(bin_loss, dtype=torch.float64))
    return warp


@settings(deadline=None)
@given(losses, st.floats(0.01, 1.0))
def test_cdf_is_monotone_and_normalised(bin_loss, mix):
    warp = fitted(bin_loss, mix)
    cdf = warp.cdf()
    assert cdf[0] == 0.0 and math.isclose(float(cdf[-1]), 1.0)
    assert bool((cdf[1:] > cdf[:-1]).all())  # strictly: every bin keeps the uniform share
    # the density integrates to one and never falls below the uniform share
    assert math.isclose(float(warp.masses().sum()), 1.0, rel_tol=1e-12)
    t = (torch.arange(len(bin_loss), dtype=torch.float64) + 0.5) / len(bin_loss)
    assert bool((warp.density(t) >= mix - 1e-12).all())


@settings(deadline=None)
@given(losses, st.lists(st.floats(0.0, 0.999999), min_size=1, max_size=20))
def test_sample_inverts_the_cdf(bin_loss, us):
    warp = fitted(bin_loss)
    u = torch.tensor(us, dtype=torch.float64)
    t = warp.sample(u)
    assert bool(((t >= 0) & (t <= 1)).all())
    # the piecewise-linear CDF at the sampled t gives u back
    edges = warp.cdf()
    position = t * warp.bins
    index = position.floor().long().clamp(0, warp.bins - 1)
    cdf_t = edges[index] + (position - index) * (edges[index + 1] - edges[index])
    assert torch.allclose(cdf_t, u, atol=1e-9)
    assert bool((t[u.argsort()].diff() >= -1e-12).all())  # monotone


def test_samples_follow_the_density():
    warp = fitted([1.0, 8.0, 0.0, 3.0])
    t = warp.sample(low_discrepancy_times(40_000, generator=torch.Generator().manual_seed(0)))
    share = torch.bincount((t * 4).long().clamp(max=3), minlength=4).double() / len(t)
    assert torch.allclose(share, warp.masses(), atol=1e-3)


@pytest.mark.parametrize("bin_loss", [[1.0] * 8, [50.0, 10.0, 3.0, 1.0, 1.0, 0.5, 0.1, 0.0]])
def test_reweighted_estimate_is_unbiased(bin_loss):
    """E_q[f(t)/q(t)] = ∫₀¹ f = 1/3 + 1/2 for f(t) = t² + 1/2, whatever the proposal."""
    warp = fitted(bin_loss)
    gen = torch.Generator().manual_seed(1)
    estimates = []
    for _ in range(400):
        t = warp.sample(low_discrepancy_times(16, generator=gen))
        estimates.append(float(((t**2 + 0.5) / warp.density(t)).mean()))
    mean = sum(estimates) / len(estimates)
    stderr = torch.tensor(estimates).std().item() / math.sqrt(len(estimates))
    assert abs(mean - (1 / 3 + 0.5)) < 4 * stderr + 1e-4
    # dropping the weight (CDCD's unweighted draw) is biased for the skewed proposal
    if len(set(bin_loss)) > 1:
        t = warp.sample(low_discrepancy_times(10_000, generator=gen))
        assert abs(float((t**2 + 0.5).mean()) - (1 / 3 + 0.5)) > 0.05


def test_update_tracks_the_loss_and_starts_from_the_batch_mean():
    warp = TimeWarp(bins=4, decay=0.5)
    t = torch.tensor([0.1, 0.1, 0.6])
    warp.update(t, torch.tensor([2.0, 4.0, -6.0]))  # |ℓ|: bins 0 and 2 seen
    # first update: every bin starts at the batch mean 4, then seen bins move halfway
    assert torch.allclose(warp.bin_loss, torch.tensor([3.5, 4.0, 5.0, 4.0], dtype=torch.float64))
    assert int(warp.updates) == 1


@pytest.mark.parametrize("bad", [{"bins": 0}, {"decay": 1.0}, {"uniform_mix": 0.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TimeWarp(**bad)


@pytest.mark.parametrize("mode", ["importance", "warp"])
def test_lcmd_elbo_estimate_is_unbiased_under_a_fitted_proposal(mode):
    """A fixed model's training-mode ELBO estimate has the same mean with t drawn uniformly and
    with t drawn from a skewed proposal and reweighted (warp reweights only the estimate)."""
    torch.manual_seed(0)
    data = torch.randint(0, 8, (32, 6), generator=torch.Generator().manual_seed(3))
    kw = dict(width=32, depth=1, heads=2, embed_dim=8, drop_prob=0.0, cm_weight=0.0)
    uniform = LCMD(8, 6, **kw)
    warped = LCMD(8, 6, time_sampling=mode, **kw)
    warped.load_state_dict(uniform.state_dict(), strict=False)  # the same network and table
    warped.time_warp.bin_loss.copy_(torch.logspace(3, -1, 64, dtype=torch.float64))
    warped.time_warp.updates.fill_(1)
    warped.time_warp.decay = 1.0 - 1e-12  # keep the proposal fixed while estimating
    samples = {"uniform": [], "warped": []}
    with torch.no_grad():
        for i in range(300):
            for name, model in (("uniform", uniform), ("warped", warped)):
                out = model.loss(data, generator=torch.Generator().manual_seed(i))
                samples[name].append(float(out["bits_per_token"].mean()))
    means = {k: sum(v) / len(v) for k, v in samples.items()}
    var = {k: torch.tensor(v).var().item() for k, v in samples.items()}
    stderr = math.sqrt(sum(v / 300 for v in var.values()))
    assert abs(means["uniform"] - means["warped"]) < 4 * stderr


def test_warp_keeps_the_training_terms_unweighted_and_fits_the_elbo_integrand():
    """Under `warp` the per-sample terms are those at the drawn t (importance divides them by
    q(t)), the ELBO estimate is reweighted in both, and the proposal is fitted to the diffusion
    term alone (the ELBO's integrand at t)."""
    data = torch.randint(0, 8, (16, 6), generator=torch.Generator().manual_seed(3))
    kw = dict(width=32, depth=1, heads=2, embed_dim=8, drop_prob=0.0, cm_weight=0.0)
    kw |= dict(ce_weight=1.0)
    models = {m: LCMD(8, 6, time_sampling=m, **kw) for m in ("importance", "warp")}
    models["warp"].load_state_dict(models["importance"].state_dict())
    for model in models.values():
        model.time_warp.bin_loss.copy_(torch.logspace(2, -1, 64, dtype=torch.float64))
        model.time_warp.updates.fill_(1)
    inverse_densities = 1.0 / (models["warp"].time_warp.masses() * 64)  # before the update
    out = {  # per-sample terms
        m: model._terms(data, None, torch.Generator().manual_seed(5)) for m, model in models.items()
    }
    seen = out["warp"]["noisy_ce"] > 0
    ratio = (out["importance"]["noisy_ce"][seen] / out["warp"]["noisy_ce"][seen]).double()
    nearest = (ratio[:, None] - inverse_densities[None]).abs().min(-1).values
    assert torch.all(nearest < 1e-4 * ratio)
    assert ratio.max() / ratio.min() > 2  # the proposal is skewed: the weights differ
    torch.testing.assert_close(out["importance"]["bits_per_token"], out["warp"]["bits_per_token"])

    fresh = LCMD(8, 6, time_sampling="warp", **kw)
    terms = fresh._terms(data, None, torch.Generator().manual_seed(5))
    mean_diffusion = float(
        terms["diffusion"].detach().double().mean() * 6
    )  # per sequence, as fitted
    running = fresh.time_warp.bin_loss
    assert running.min() < mean_diffusion < running.max()  # seen bins moved toward their losses
    assert float(running.median()) == pytest.approx(mean_diffusion, rel=1e-6)


def test_a_deferred_step_folds_its_micro_batches_in_once_as_one_batch():
    """Split into micro-batches and committed once, a step updates the proposal exactly as the
    whole batch does; non-finite losses are left out instead of poisoning the bins."""
    t = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = torch.rand(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    whole, split = TimeWarp(), TimeWarp()
    for step in range(2):  # the first commit initialises, the second is an EMA step
        whole.update(t, loss)
        split.deferred = True
        for part in range(4):
            split.update(t[part::4], loss[part::4])
            assert split.updates == step  # nothing applied before the commit
        split.commit()
        torch.testing.assert_close(split.bin_loss, whole.bin_loss)
    poisoned = TimeWarp()
    poisoned.update(t, torch.cat([loss[:-2], torch.tensor([float("nan"), float("inf")])]))
    clean = TimeWarp()
    clean.update(t[:-2], loss[:-2])
    torch.testing.assert_close(poisoned.bin_loss, clean.bin_loss)
    assert torch.isfinite(poisoned.bin_loss).all()
