"""LCMD end to end: input checks, loss terms, and that a tiny model really learns."""

import importlib.util
import itertools
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lcmd_core import EMA, LCMD, build_model
from lcmd_core.codec import TokenSpec
from lcmd_core.config import ConfigError, DiffusionConfig, ModelConfig, validate_config
from lcmd_core.denoiser import Denoiser, sincos_positions
from lcmd_core.schedule import alpha_sigma_from_log_snr

TINY = {"width": 32, "depth": 1, "heads": 2, "embed_dim": 8}


@settings(deadline=None, max_examples=25)
@given(
    vocab=st.integers(2, 40),
    length=st.integers(1, 12),
    batch=st.integers(1, 5),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    tok_dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8]),
    loss=st.sampled_from(["lcmd", "ce_only"]),
    training=st.booleans(),
    extra=st.sampled_from(
        [
            {},
            {"ce_weight": 1.0, "output_prior_logsnr": 4.0},
            {"time_sampling": "importance", "embed_scale": 4.0},
        ]
    ),
)
def test_loss_terms_finite_and_non_negative(
    vocab, length, batch, dtype, tok_dtype, loss, training, extra
):
    torch.manual_seed(vocab * 31 + length)
    if loss == "ce_only":
        extra = {k: v for k, v in extra.items() if k != "time_sampling"}
    model = LCMD(vocab, length, loss=loss, drop_prob=0.3, **TINY, **extra)
    model = model.to(dtype).train(training)
    tokens = torch.randint(0, min(vocab, 255), (batch, length)).to(tok_dtype)
    out = model.loss(tokens)
    for key in ("total", "diffusion", "reconstruction", "prior", "consistency", "dropped_ce",
                "noisy_ce"):  # fmt: skip
        assert torch.isfinite(out[key]), key
        assert out[key] >= -1e-6, key
    assert torch.isfinite(out["bits_per_token"])
    out["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_initial_loss_is_moderate_thanks_to_bayes_readout():
    """Under the diffusion bound's MSE weight (w_diff), the readout keeps the first loss small."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 256, (16, 49))
    bound = {**TINY, "w_diff": 1.0, "ce_weight": 0.0, "embed_norm": "none"}
    with_readout = LCMD(256, 49, **bound).loss(tokens)["total"]
    without = LCMD(256, 49, output_prior=False, **bound).loss(tokens)["total"]
    assert with_readout < 50 < without


@pytest.mark.parametrize("scale", [1.0, 8.0])
@pytest.mark.parametrize("lam", [-4.0, 0.0, 6.0])
def test_network_input_has_unit_variance_at_any_embedding_scale(scale, lam):
    """The denoiser sees z_t rescaled by the table's own per-dimension variance."""
    torch.manual_seed(0)
    model = LCMD(64, 16, embed_scale=scale, **TINY)
    seen = {}
    model.denoiser.register_forward_hook(lambda m, args, out: seen.update(x=args[0].detach()))
    tokens = torch.randint(0, 64, (256, 16))
    log_snr = torch.full((256,), lam)
    alpha, sigma = alpha_sigma_from_log_snr(log_snr)
    e = model.embedding(tokens)
    z = alpha[:, None, None] * e + sigma[:, None, None] * torch.randn_like(e)
    model.denoise(z, log_snr)
    assert abs(float(seen["x"].pow(2).mean()) - 1.0) < 0.1


def test_readout_gate_follows_the_effective_log_snr():
    torch.manual_seed(0)
    plain = LCMD(12, 5, **TINY)
    assert plain.readout_gate(torch.zeros(2)) is None
    lam = torch.tensor([-30.0, 0.0, 30.0])
    for scale in (1.0, 4.0):
        model = LCMD(12, 5, embed_scale=scale, embed_norm="l2", output_prior_logsnr=3.0, **TINY)
        gate = model.readout_gate(lam)
        # λ_eff = λ + log ‖E‖² = λ + 2 log s: the gate moves with the table's scale
        expected = torch.sigmoid(lam + 2 * math.log(scale) - 3.0)
        assert torch.allclose(gate, expected, atol=1e-6)
    # far above the centre the logits are the network's plus the whole readout, far below the
    # network's alone
    model = LCMD(12, 5, output_prior_logsnr=3.0, **TINY)
    with torch.no_grad():
        model.denoiser.out.weight.normal_()
    z = torch.randn(3, 5, TINY["embed_dim"])
    gated = model.denoise(z, lam)
    model.model_config.output_prior_logsnr = None
    full = model.denoise(z, lam)
    model.model_config.output_prior = False
    network = model.denoise(z, lam)
    assert torch.allclose(gated[2], full[2]) and torch.allclose(gated[0], network[0], atol=1e-5)
    assert not torch.allclose(gated[1], full[1]) and not torch.allclose(gated[1], network[1])


def test_ce_weight_adds_the_cross_entropy_at_t_of_kept_positions():
    torch.manual_seed(0)
    tokens = torch.randint(0, 10, (8, 6))
    base = LCMD(10, 6, drop_prob=0.5, ce_weight=0.0, **TINY)
    weighted = LCMD(10, 6, drop_prob=0.5, ce_weight=2.0, **TINY)
    weighted.load_state_dict(base.state_dict())
    a = base.loss(tokens, generator=torch.Generator().manual_seed(1))
    b = weighted.loss(tokens, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(b["total"], a["total"] + 2.0 * a["noisy_ce"].mean())
    assert bool((a["noisy_ce"] > 0).all())


def test_eval_mode_has_no_dropping_and_no_cm():
    torch.manual_seed(0)
    model = LCMD(10, 8, drop_prob=0.5, **TINY).eval()
    out = model.loss(torch.randint(0, 10, (4, 8)))
    assert out["dropped_ce"] == 0 and out["consistency"] == 0
    assert model.elbo(torch.randint(0, 10, (4, 8))).shape == (4,)


@pytest.mark.parametrize("target", ["same_noise", "ddim"])
@pytest.mark.parametrize("pairs", ["uniform", "delta"])
def test_cm_variants_give_positive_consistency(target, pairs):
    torch.manual_seed(0)
    model = LCMD(10, 8, cm_target=target, cm_pairs=pairs, **TINY)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    assert model.loss(torch.randint(0, 10, (6, 8)))["consistency"] > 0


@pytest.mark.parametrize(
    ("tokens", "match"),
    [
        (torch.zeros(2, 8), "integer tensor"),
        (torch.zeros(2, 7, dtype=torch.long), r"shape \[B, 8\]"),
        (torch.zeros(8, dtype=torch.long), r"shape \[B, 8\]"),
        (torch.full((2, 8), 10), r"\[0, 10\)"),
        (torch.full((2, 8), -1), r"\[0, 10\)"),
        (torch.zeros(2, 8, dtype=torch.bool), "integer tensor"),
    ],
)
def test_bad_tokens_rejected(tokens, match):
    with pytest.raises(ValueError, match=match):
        LCMD(10, 8, **TINY).loss(tokens)


def test_bad_labels_and_guidance_rejected():
    uncond = LCMD(10, 8, **TINY)
    tokens = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.loss(tokens, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="guidance"):
        uncond.sample(2, steps=2, guidance=2.0)
    cond = LCMD(10, 8, num_classes=3, **TINY)
    with pytest.raises(ValueError, match=r"LongTensor\[2\]"):
        cond.loss(tokens, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cond.loss(tokens, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="needs labels"):
        cond.sample(2, steps=2, guidance=2.0)
    with pytest.raises(ValueError, match="known"):
        cond.sample(2, steps=2, known=torch.zeros(2, 7, dtype=torch.long))


def test_unknown_or_invalid_options_rejected():
    with pytest.raises(ValueError, match="unknown LCMD option 'widht'"):
        LCMD(10, 8, widht=3)
    with pytest.raises(ValueError, match="drop_prob"):
        LCMD(10, 8, drop_prob=1.5)
    with pytest.raises(ValueError, match="divisible"):
        LCMD(10, 8, width=30, heads=4)


def test_hparams_rebuild_the_same_model():
    model = LCMD(10, 12, num_classes=2, token_shape=(3, 4), shift=-1.0, **TINY)
    clone = LCMD(**model.hparams())
    clone.load_state_dict(model.state_dict())
    assert clone.hparams() == model.hparams()


def test_hparams_carry_explicit_positions():
    positions = [(i, j) for i in range(4) for j in range(i + 1, 4)]  # a 4-node upper triangle
    model = LCMD(10, 6, positions=positions, **TINY)
    assert model.hparams()["positions"] == [list(p) for p in positions]
    clone = LCMD(**model.hparams())
    assert clone.positions == model.positions == tuple(positions)
    assert torch.equal(clone.denoiser.pos, model.denoiser.pos)
    assert LCMD(10, 6, **TINY).hparams()["positions"] is None


def test_from_config_takes_positions_from_the_token_spec():
    positions = ((0, 1), (0, 2), (1, 2))
    spec = TokenSpec(vocab_size=3, token_shape=(3,), fingerprint="tri", positions=positions)
    model = build_model(spec, ModelConfig(**TINY), DiffusionConfig())
    expected = sincos_positions(torch.tensor(positions), model.denoiser.width)
    assert model.positions == positions
    assert torch.equal(model.denoiser.pos, expected)


def test_grid_and_its_explicit_coordinates_give_identical_encodings():
    for shape in [(7,), (3, 5), (2, 3, 4)]:
        coords = [tuple(int(c) for c in idx) for idx in itertools.product(*map(range, shape))]
        grid = Denoiser(10, 8, shape, width=48, depth=1, heads=2)
        explicit = Denoiser(10, 8, shape, width=48, depth=1, heads=2, positions=coords)
        assert torch.equal(grid.pos, explicit.pos), shape
    # and the 2-D grid encoding is DiT's: rows in the first half, columns in the second
    pos = Denoiser(10, 8, (3, 5), width=48, depth=1, heads=2).pos.reshape(3, 5, 48)
    assert torch.equal(pos[1, 0, :24], pos[1, 4, :24]) and torch.equal(
        pos[0, 2, 24:], pos[2, 2, 24:]
    )
    assert not torch.equal(pos[0, 0, :24], pos[1, 0, :24])


def test_positions_change_the_encoding_and_bad_lengths_are_refused():
    triangle = [(0, 1), (0, 2), (1, 2)]
    assert not torch.equal(
        LCMD(5, 3, positions=triangle, **TINY).denoiser.pos, LCMD(5, 3, **TINY).denoiser.pos
    )
    with pytest.raises(ValueError, match=r"one coordinate per token \(4\), got 3"):
        LCMD(5, 4, positions=triangle, **TINY)


def test_param_groups_separate_embeddings():
    model = LCMD(10, 8, **TINY)
    groups = {g["name"]: g for g in model.param_groups(1e-3, 1e-2, 0.1)}
    assert groups["embeddings"]["lr"] == 1e-2 and groups["embeddings"]["weight_decay"] == 0
    assert {id(p) for p in groups["embeddings"]["params"]} == {
        id(model.embedding.table),
        id(model.embedding.mask_vector),
    }
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(model.parameters()))


def test_ema_warms_up_then_follows_decay():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert torch.allclose(
        ema.module.weight, 0.1 * ema.module.weight.new_ones(2, 2) + 0.9 * torch.ones(2, 2), atol=1.0
    )
    ema.num_updates = 10**6
    assert ema.current_decay() == 0.999


# ---------------------------------------------------------------------------- it learns
K, L, N_SEQ = 16, 16, 4


def train_toy(steps: int, collapse: bool = False, **kw) -> tuple[LCMD, torch.Tensor, dict]:
    torch.manual_seed(0)
    data = torch.randint(0, K, (N_SEQ, L), generator=torch.Generator().manual_seed(1))
    model = LCMD(K, L, width=64, depth=2, heads=2, embed_dim=16, freeze_embeddings=collapse, **kw)
    if collapse:
        with torch.no_grad():
            model.embedding.table.copy_(model.embedding.table[:1].expand(K, -1))
    opt = torch.optim.AdamW(model.param_groups(1e-3, 1e-2, 0.0))
    ema = EMA(model, 0.99)
    gen = torch.Generator().manual_seed(2)
    for _ in range(steps):
        batch = data[torch.randint(0, N_SEQ, (32,), generator=gen)]
        loss = model.loss(batch)["total"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
    trained = ema.module
    samples = trained.sample(32, steps=50, seed=0)
    match = (samples[:, None, :] == data[None]).all(-1).any(-1).float().mean()
    with torch.no_grad():
        t0 = torch.zeros(N_SEQ, dtype=torch.float64)
        alpha, sigma = trained.schedule.alpha_sigma(t0)
        z0 = alpha[:, None, None] * trained.embedding(data) + sigma[:, None, None] * torch.randn(
            N_SEQ, L, 16
        )
        acc = (trained.denoise(z0, trained.schedule.log_snr(t0)).argmax(-1) == data).float().mean()
    return trained, data, {"match": float(match), "acc_t0": float(acc)}


def test_tiny_model_learns_toy_sequences():
    _, _, stats = train_toy(1000)
    assert stats["acc_t0"] > 0.99
    assert stats["match"] >= 0.8


def test_collapsed_embeddings_cannot_learn():
    _, _, stats = train_toy(300, collapse=True)
    assert stats["acc_t0"] < 0.6
    assert stats["match"] < 0.2


def test_bf16_autocast_keeps_losses_float32_and_finite():
    """The GPU recipe (bf16 autocast around the loss), exercised on the CPU at a tiny size."""
    torch.manual_seed(0)
    model = LCMD(12, 6, num_classes=2, **TINY)
    tokens, labels = torch.randint(0, 12, (4, 6)), torch.tensor([0, 1, 0, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.loss(tokens, labels)
        samples = model.sample(2, steps=3, labels=torch.tensor([0, 1]), guidance=2.0, seed=0)
    for key in ("total", "diffusion", "reconstruction", "consistency"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]), key
    out["total"].backward()
    assert samples.shape == (2, 6)


def toy_memorise():
    """examples/toy_memorise.py, the protocol its table was measured with."""
    path = Path(__file__).parents[1] / "examples" / "toy_memorise.py"
    spec = importlib.util.spec_from_file_location("toy_memorise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readout_gate_memorises_the_toy_in_400_steps():
    """Measured on the defaults (seeds 0/1): 0.91/0.94 with the gate at c = 5, 0.66/0.48
    without (the paper's objective: 0.86/0.89 with it, 0.28/0.25 without)."""
    match = toy_memorise().train({"output_prior_logsnr": 5.0}, steps=400, seed=0, every=400)
    assert match[400] >= 0.8


def test_the_defaults_memorise_the_toy_in_400_steps():
    """The sampling gate (LCMD's default, c = 1) on a model trained with the readout at full
    weight. Measured over seeds 0-3: 0.95 / 0.83 / 0.84 / 0.69 with it, 0.77 / 0.58 / 0.59 /
    0.45 with readout_gate="off" (seed 0 here)."""
    toy = toy_memorise()
    model, data, found = toy.fit({}, steps=400, seed=0, every=400)
    assert found[400] >= 0.8
    model.eval()
    off = model.sample(64, steps=50, seed=0, readout_gate="off")
    assert float((off[:, None, :] == data[None]).all(-1).any(-1).float().mean()) < found[400]


def test_the_sampling_gate_multiplies_the_readout_weight():
    torch.manual_seed(0)
    model = LCMD(7, 6, width=16, depth=1, heads=2, embed_dim=4)
    lam = torch.linspace(-6.0, 6.0, 5)
    lam_eff = lam + model.embedding.weight.detach().pow(2).sum(-1).mean().log()
    assert model.readout_gate(lam) is None
    assert torch.allclose(model.readout_gate(lam, 1.0), torch.sigmoid(lam_eff - 1.0))
    model.model_config = model.model_config.model_copy(update={"output_prior_logsnr": 3.0})
    assert torch.allclose(model.readout_gate(lam), torch.sigmoid(lam_eff - 3.0))
    both = torch.sigmoid(lam_eff - 3.0) * torch.sigmoid(lam_eff + 2.0)
    assert torch.allclose(model.readout_gate(lam, -2.0), both)


def test_lcmd_samples_with_its_default_sampling_gate():
    torch.manual_seed(0)
    model = LCMD(7, 6, width=16, depth=1, heads=2, embed_dim=4)
    default = model.sample(4, steps=4, seed=0)
    assert torch.equal(default, model.sample(4, steps=4, seed=0, readout_gate=1.0))
    assert not torch.equal(default, model.sample(4, steps=4, seed=0, readout_gate="off"))
    with pytest.raises(ValueError, match="finite number or 'off'"):
        model.sample(4, steps=4, readout_gate=float("nan"))


def test_configs_given_directly_build_the_model_the_keywords_build():
    from lcmd_core.config import DiffusionConfig, ModelConfig

    model_cfg = ModelConfig(width=16, depth=1, heads=2, embed_dim=4)
    diffusion_cfg = DiffusionConfig(shift=2.0, cm_weight=0.0)
    torch.manual_seed(0)
    direct = LCMD(9, 5, model=model_cfg, diffusion=diffusion_cfg)
    torch.manual_seed(0)
    keywords = LCMD(9, 5, width=16, depth=1, heads=2, embed_dim=4, shift=2.0, cm_weight=0.0)
    assert direct.hparams() == keywords.hparams()
    assert all(
        torch.equal(a, b)
        for a, b in zip(direct.state_dict().values(), keywords.state_dict().values(), strict=True)
    )
    over = LCMD(9, 5, model=model_cfg, diffusion=diffusion_cfg, width=32, shift=-1.0)
    assert (over.model_config.width, over.model_config.depth) == (32, 1)
    assert (over.diffusion_config.shift, over.diffusion_config.cm_weight) == (-1.0, 0.0)
    assert model_cfg.width == 16  # the caller's config is not changed
    with pytest.raises(ValueError, match="is the continuous process, not masked"):
        LCMD(9, 5, diffusion=DiffusionConfig(process="masked"))


def test_cm_target_from_the_ema_uses_the_network_it_is_given():
    import copy

    torch.manual_seed(0)
    model = LCMD(9, 6, width=16, depth=1, heads=2, embed_dim=4, cm_target_weights="ema")
    current = LCMD(9, 6, width=16, depth=1, heads=2, embed_dim=4)
    current.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 9, (4, 6), generator=torch.Generator().manual_seed(1))

    def consistency(m, target=None):
        return m.loss(tokens, generator=torch.Generator().manual_seed(2), target=target)[
            "consistency"
        ]

    with pytest.raises(ValueError, match="pass the EMA"):
        consistency(model)
    same = copy.deepcopy(model)  # a target with the same weights: the current-weights term
    assert torch.equal(consistency(model, same), consistency(current))
    with torch.no_grad():
        for p in same.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert not torch.allclose(consistency(model, same), consistency(current))


# ------------------------------------------------------------------ staggered schedules
def test_staggered_elbo_matches_the_unstaggered_one_for_a_position_wise_denoiser():
    """At initialisation the network adds nothing, so each position is denoised by the Bayes
    readout of its own latent alone: its expected loss depends on its own noise level only, and
    since every position runs its whole schedule inside its window the ELBO is the same for any
    stagger (a missing dτ/dt factor would move it by several tenths of a bit)."""

    def elbo(stagger: float) -> float:
        torch.manual_seed(0)
        model = LCMD(6, 8, stagger=stagger, logsnr_min=-3, logsnr_max=3, **TINY).eval()
        tokens = torch.randint(0, 6, (4096, 8), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            draws = [
                model.loss(tokens, generator=torch.Generator().manual_seed(seed))
                for seed in range(6)
            ]
        return float(torch.stack([d["bits_per_token"].mean() for d in draws]).mean())

    plain = elbo(0.0)
    for stagger in (1.0, 4.0):
        assert elbo(stagger) == pytest.approx(plain, abs=0.06)


def test_staggered_positions_see_their_own_noise_level():
    torch.manual_seed(0)
    model = LCMD(6, 8, stagger=2.0, **TINY)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    tokens = torch.randint(0, 6, (16, 8))
    terms = model.loss(tokens, generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v).all() for v in terms.values())
    terms["total"].backward()
    z = torch.randn(2, 8, TINY["embed_dim"])
    lam = torch.zeros(2, 8)
    moved, elsewhere = lam.clone(), lam.clone()
    moved[:, 5] = 4.0
    elsewhere[:, 2] = 4.0  # the same mean λ: only a per-position input tells the two apart
    with torch.no_grad():
        base, other = model.denoise(z, lam), model.denoise(z, moved)
        swapped = model.denoise(z, elsewhere)
        # the network itself, without the input scaling and readout that also read λ per position
        net_moved, net_elsewhere = model.denoiser(z, moved), model.denoiser(z, elsewhere)
    assert not torch.allclose(base[:, 5], other[:, 5])
    assert not torch.allclose(other, swapped)
    assert not torch.allclose(net_moved, net_elsewhere)
    assert model.sample(3, steps=5, seed=0).shape == (3, 8)


def test_stagger_needs_the_built_in_backbone():
    with pytest.raises(ValueError, match=r"stagger.*model\.backbone=dit"):
        LCMD(6, 8, stagger=1.0, backbone="graph_transformer", **TINY)
    with pytest.raises(ConfigError, match=r"diffusion\.stagger"):
        validate_config({"diffusion": {"stagger": -1}})
    with pytest.raises(ConfigError, match="only the built-in backbone"):
        validate_config({"model": {"backbone": "graph_transformer"}, "diffusion": {"stagger": 2}})
