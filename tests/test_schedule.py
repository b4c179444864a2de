"""Shifted cosine schedule: monotone, variance preserving, exact shift, clipping, derivatives;
staggered per-position times."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lcmd_core import ShiftedCosineSchedule
from lcmd_core.schedule import staggered_times

shifts = st.floats(-6.0, 6.0, allow_nan=False)
times = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=64)


@given(shift=shifts, ts=times)
def test_log_snr_decreases_with_t(shift, ts):
    sched = ShiftedCosineSchedule(shift)
    t = torch.tensor(sorted(ts), dtype=torch.float64)
    lam = sched.log_snr(t)
    assert torch.all(lam[1:] <= lam[:-1] + 1e-12)


@given(shift=shifts, ts=times)
def test_alpha_sigma_variance_preserving(shift, ts):
    alpha, sigma = ShiftedCosineSchedule(shift).alpha_sigma(torch.tensor(ts, dtype=torch.float64))
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(alpha), atol=1e-12)
    assert torch.all(alpha > 0) and torch.all(sigma > 0)


@given(shift=shifts, ts=times)
def test_shift_moves_log_snr_by_exactly_shift(shift, ts):
    t = torch.tensor(ts, dtype=torch.float64)
    base = ShiftedCosineSchedule(0.0).log_snr(t)
    shifted = ShiftedCosineSchedule(shift).log_snr(t)
    assert torch.allclose(shifted - base, torch.full_like(base, shift), atol=1e-9)


@given(lo=st.floats(-20, -1), hi=st.floats(1, 20), ts=times)
def test_clipping_respected(lo, hi, ts):
    sched = ShiftedCosineSchedule(0.0, lo, hi)
    lam = sched.log_snr(torch.tensor([*ts, 0.0, 1.0, -0.5, 1.5], dtype=torch.float64))
    assert torch.all(lam >= lo - 1e-9) and torch.all(lam <= hi + 1e-9)
    assert math.isclose(float(sched.log_snr(0.0)), hi, abs_tol=1e-4)
    assert math.isclose(float(sched.log_snr(1.0)), lo, abs_tol=1e-4)


@settings(deadline=None)
@given(shift=shifts, ts=st.lists(st.floats(0.01, 0.99), min_size=1, max_size=16))
def test_derivatives_match_autograd(shift, ts):
    sched = ShiftedCosineSchedule(shift)
    t = torch.tensor(ts, dtype=torch.float64, requires_grad=True)
    lam = sched.log_snr(t)
    (grad,) = torch.autograd.grad(lam.sum(), t)
    assert torch.allclose(sched.dlog_snr_dt(t.detach()), grad, rtol=1e-9)
    snr = torch.exp(sched.log_snr(t))
    (snr_grad,) = torch.autograd.grad(snr.sum(), t)
    assert torch.allclose(sched.snr_prime(t.detach()), snr_grad, rtol=1e-9)
    assert torch.all(sched.snr_prime(t.detach()) < 0)


@given(shift=shifts, ts=times)
def test_t_from_log_snr_inverts(shift, ts):
    sched = ShiftedCosineSchedule(shift)
    t = torch.tensor(ts, dtype=torch.float64)
    assert torch.allclose(sched.t_from_log_snr(sched.log_snr(t)), t, atol=1e-9)


def test_float32_in_float32_out_and_unshifted_midpoint():
    sched = ShiftedCosineSchedule()
    lam = sched.log_snr(torch.tensor([0.5], dtype=torch.float32))
    assert lam.dtype == torch.float32
    assert abs(float(lam)) < 1e-5  # tan(π/4) = 1 with symmetric clipping


staggers = st.floats(0.0, 50.0, allow_nan=False)


@given(stagger=staggers, ts=times, length=st.integers(1, 40))
def test_staggered_times_are_ordered_windows_of_t(stagger, ts, length):
    t = torch.tensor(ts, dtype=torch.float64)
    tau, rate = staggered_times(t, length, stagger)
    assert tau.shape == rate.shape == (len(ts), length)
    assert ((tau >= 0) & (tau <= 1)).all()
    assert (tau[:, :-1] <= tau[:, 1:]).all()  # earlier positions are never noisier
    ends, _ = staggered_times(torch.tensor([0.0, 1.0], dtype=torch.float64), length, stagger)
    assert (ends[0] == 0).all() and (ends[1] == 1).all()
    order = t.argsort()
    assert (tau[order].diff(dim=0) >= 0).all()  # monotone in t
    inside = (tau > 0) & (tau < 1)
    assert torch.equal(rate, inside.double() * (1 + stagger))
    if stagger == 0:
        assert torch.equal(tau, t[:, None].expand(-1, length))


@settings(deadline=None, max_examples=20)
@given(stagger=staggers, length=st.integers(1, 12))
def test_every_position_runs_its_whole_schedule(stagger, length):
    """∫₀¹ dτ_i/dt dt = 1 for every position: each one's window carries its full schedule, so the
    diffusion term's per-position weights integrate to the same value as without staggering."""
    grid = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    _, rate = staggered_times(grid, length, stagger)
    assert torch.allclose(rate.mean(0), torch.ones(length, dtype=torch.float64), atol=1e-3)
