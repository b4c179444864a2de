"""Samplers: exact x̂ recovers the data, guidance w=1 is the conditional model, known tokens stay."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lcmd_core import LCMD, Sampler, ShiftedCosineSchedule
from lcmd_core import objective as obj
from lcmd_core.sampler import guided_logits
from lcmd_core.schedule import staggered_times


def oracle(table: torch.Tensor, target: torch.Tensor):
    """A denoiser that knows the answer: logits peaked on the target tokens."""

    def denoise(z, log_snr, labels, self_cond):
        return torch.nn.functional.one_hot(target, table.shape[0]).to(z.dtype) * 50.0

    return denoise


@pytest.mark.parametrize("kind", ["ancestral", "ddim"])
@pytest.mark.parametrize("shift", [0.0, -3.0])
def test_exact_prediction_returns_the_data(kind, shift):
    torch.manual_seed(0)
    table = torch.randn(12, 8)
    target = torch.randint(0, 12, (6, 20))
    sampler = Sampler(ShiftedCosineSchedule(shift), kind=kind, steps=10)
    out = sampler.sample(
        oracle(table, target), table, 6, 20, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(out, target)


@pytest.mark.parametrize("kind", ["ancestral", "ddim"])
def test_bayes_readout_alone_keeps_final_latent_near_data(kind):
    """With the readout as the only denoiser, the last latent decodes to finite tokens (no NaN)."""
    table = torch.randn(10, 4)
    sched = ShiftedCosineSchedule()

    def denoise(z, lam, labels, sc):
        alpha, sigma = sched.alpha_sigma(sched.t_from_log_snr(lam))
        return obj.bayes_readout(z, table, alpha, sigma)

    out = Sampler(sched, kind=kind, steps=20).sample(
        denoise, table, 4, 7, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (4, 7) and out.min() >= 0 and out.max() < 10


def small_model(**kw):
    torch.manual_seed(0)
    model = LCMD(9, 6, num_classes=3, width=32, depth=1, heads=2, embed_dim=8, **kw)
    # give the class embedding and the output layer non-zero weights so guidance matters
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def test_guidance_one_equals_conditional_model():
    model = small_model()
    labels = torch.tensor([0, 2, 1])
    a = model.sample(3, steps=6, labels=labels, guidance=1.0, seed=3)
    sched_calls = []
    orig = model.denoise

    def spy(z, lam, lab, sc=None, dropped=None, sampling_gate=None):
        sched_calls.append(lab)
        return orig(z, lam, lab, sc, dropped, sampling_gate)

    model.denoise = spy
    b = model.sample(3, steps=6, labels=labels, guidance=1.0, seed=3)
    assert torch.equal(a, b)
    assert all(torch.equal(lab, labels) for lab in sched_calls)  # never the null class


def test_guidance_mixes_logits_in_one_batched_call():
    calls = []

    def denoise(z, lam, labels, sc):
        calls.append(labels.clone())
        return torch.where(labels[:, None, None] == 9, 1.0, 2.0).expand(*z.shape[:2], 4)

    z = torch.zeros(2, 5, 3)
    out = guided_logits(denoise, z, torch.zeros(2), torch.tensor([1, 2]), 9, None, 3.0)
    assert len(calls) == 1 and calls[0].tolist() == [1, 2, 9, 9]
    assert torch.allclose(out, torch.full_like(out, 1.0 + 3.0 * (2.0 - 1.0)))


def test_known_tokens_kept_exactly_and_sampling_deterministic():
    model = small_model()
    known = torch.full((4, 6), -1)
    known[:, :2] = torch.tensor([3, 7])
    known[1, 5] = 0
    a = model.sample(4, steps=5, known=known, seed=11, labels=torch.tensor([0, 1, 2, 0]))
    b = model.sample(4, steps=5, known=known, seed=11, labels=torch.tensor([0, 1, 2, 0]))
    assert torch.equal(a, b)
    assert torch.equal(a[known >= 0], known[known >= 0])
    c = model.sample(4, steps=5, known=known, seed=12, labels=torch.tensor([0, 1, 2, 0]))
    assert not torch.equal(a, c)


def test_temperature_sampling_and_self_conditioning_run():
    model = small_model(self_condition=True)
    out = model.sample(5, steps=4, temperature=1.0, seed=0)
    assert out.shape == (5, 6) and out.dtype == torch.long


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"sampler": "euler"}, "sampler"),
        ({"temperature": -1.0}, "temperature"),
        ({"x0_temperature": -0.5}, "x0_temperature must be >= 0"),
        ({"x0_temperature": float("nan")}, "x0_temperature must be >= 0"),
    ],
)
def test_sampler_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_model().sample(2, **kwargs)


@settings(deadline=None, max_examples=20)
@given(
    mask_seed=st.integers(0, 2**16),
    fraction=st.floats(0.0, 1.0),
    kind=st.sampled_from(["ancestral", "ddim"]),
    steps=st.integers(1, 6),
)
def test_any_known_subset_is_kept_exactly(mask_seed, fraction, kind, steps):
    model = small_model()
    gen = torch.Generator().manual_seed(mask_seed)
    values = torch.randint(0, 9, (3, 6), generator=gen)
    known = torch.where(torch.rand(3, 6, generator=gen) < fraction, values, -1)
    out = model.sample(
        3, steps=steps, known=known, seed=mask_seed, sampler=kind, labels=torch.tensor([0, 1, 2])
    )
    assert torch.equal(out[known >= 0], known[known >= 0])
    assert out.min() >= 0 and out.max() < 9


def staggered(length: int, stagger: float):
    return lambda t: staggered_times(t, length, stagger)


@pytest.mark.parametrize("kind", ["ancestral", "ddim"])
def test_staggered_sampler_steps_every_position_through_its_own_window(kind):
    torch.manual_seed(0)
    table, length = torch.randn(12, 8), 10
    target = torch.randint(0, 12, (3, length))
    sched = ShiftedCosineSchedule()
    seen = []

    def denoise(z, log_snr, labels, self_cond):
        seen.append(log_snr.clone())
        return oracle(table, target)(z, log_snr, labels, self_cond)

    sampler = Sampler(sched, kind=kind, steps=12, token_times=staggered(length, 3.0))
    out = sampler.sample(denoise, table, 3, length, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, target)
    lams = torch.stack(seen)  # [calls, B, L]
    assert lams.shape == (13, 3, length)
    assert (lams[:, :, :-1] >= lams[:, :, 1:]).all()  # earlier positions are ahead
    assert (lams.diff(dim=0) >= 0).all()  # each position only ever clears
    assert torch.allclose(lams[0, :, -1], sched.log_snr(1.0))  # the last starts as pure noise
    assert torch.allclose(lams[-1], sched.log_snr(0.0).expand(3, length))
    # mid-way some positions are done while others have not started
    mid = lams[6, 0]
    assert mid[0] == sched.log_snr(0.0) and mid[-1] == sched.log_snr(1.0)


@pytest.mark.parametrize("tau", [0.0, 0.5])
def test_x0_temperature_sharpens_the_estimate_but_not_the_self_conditioning(tau):
    torch.manual_seed(0)
    table, length = torch.randn(5, 4), 3
    fixed = torch.randn(2, length, 5)  # the same moderately confident logits at every step
    drafts = []

    def denoise(z, log_snr, labels, self_cond):
        drafts.append(self_cond.clone())
        return fixed

    sampler = Sampler(ShiftedCosineSchedule(), kind="ddim", steps=4, x0_temperature=tau)
    sampler.sample(denoise, table, 2, length, self_condition=True)
    plain = obj.expected_embedding(fixed, table)
    assert torch.equal(drafts[0], torch.zeros_like(plain))
    assert all(torch.allclose(d, plain) for d in drafts[1:])
    sharp = table[fixed.argmax(-1)] if tau == 0 else obj.expected_embedding(fixed / tau, table)
    assert torch.allclose(sampler._estimate(fixed, table), sharp)
    assert not torch.allclose(sharp, plain)
