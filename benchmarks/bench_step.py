"""One LCMD training step against a plain transformer of the same size and the matmul peak.

For each size the LCMD step is `model.loss(tokens)["total"].backward()` + AdamW: a forward and
backward over B·(1 + rec_fraction) rows (the t_min slice for L_rec rides along) and one
no-grad forward over B rows for the consistency target. The plain step is the same `Denoiser`
forward + backward with a cross-entropy loss on the clean-token logits, nothing else.
Model FLOPs are estimated as 6·P·tokens per forward+backward plus 2·P·tokens per extra no-grad
forward, where P counts the parameters applied at every position (input projection, attention
and MLP matrices, output layer): the adaLN, time and class layers run once per sequence and are
a third of the parameters of size S, so counting them would overstate the FLOPs. Attention's
L² term is not counted. LCMD also multiplies by the embedding table at every position, as a
tied output layer would: the Bayes readout [(α/σ²)z, −α²/2σ²]·[E, ‖E‖²]ᵀ on every forward and
x̂ = softmax(ℓ)E on the rows that feed L_diff (and the self-conditioning pass), 2·(D+1)·K and
2·D·K FLOPs a position forward, 3× that with the backward; the main ratio counts them, a second
one ("network only") leaves them out. The two steps are timed in turns, so their ratio (the
median over rounds) holds on a loaded machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lcmd_core import LCMD, DiffusionModel
from lcmd_core.denoiser import Denoiser

from .common import Record, matmul_peak, median, median_ratio, paired_times, print_table, record

NAME = "step"
BATCH = {"tiny": 8, "S": 4}  # size -> batch
VOCAB = 1024
PER_SEQUENCE = ("ada", "time_mlp", "class_embed")  # parameter names not applied per position


def per_token_params(net: Denoiser) -> int:
    """Parameters of the layers that run at every position (see the module docstring)."""
    return sum(
        p.numel()
        for name, p in net.named_parameters()
        if name != "pos" and not any(part in name for part in PER_SEQUENCE)
    )


def vocab_flops(model: LCMD, grad_tok: int, nograd_tok: int, batch: int, seq_len: int) -> int:
    """FLOPs of the products with the embedding table: readout on every row, x̂ on the
    L_diff rows (and on every row of the self-conditioning pass), backward included."""
    k, d = model.vocab_size, model.model_config.embed_dim
    readout, x_hat = 2 * (d + 1) * k, 2 * d * k
    flops = 3 * readout * grad_tok + readout * nograd_tok + 3 * x_hat * batch * seq_len
    if model.model_config.self_condition:
        flops += x_hat * grad_tok
    return flops


def loss_step(model: DiffusionModel, tokens: torch.Tensor) -> Callable[[], None]:
    """One training step of either process: `model.loss(tokens)["total"].backward()` + AdamW."""
    model.train()
    opt = torch.optim.AdamW(model.param_groups(3e-4, 3e-3, 0.01))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(tokens)["total"].backward()
        opt.step()

    return step


def lcmd_step(model: LCMD, tokens: torch.Tensor) -> tuple[Callable[[], None], int, int]:
    """(step function, tokens through fwd+bwd, tokens through no-grad fwd) of LCMD training."""
    step = loss_step(model, tokens)
    batch, seq_len = tokens.shape
    dc = model.diffusion_config
    grad_rows = batch + math.ceil(batch * dc.rec_fraction)
    nograd_rows = (batch if dc.cm_weight > 0 else 0) + (
        grad_rows if model.model_config.self_condition else 0
    )
    return step, grad_rows * seq_len, nograd_rows * seq_len


def plain_step(net: Denoiser, tokens: torch.Tensor, embed_dim: int) -> Callable[[], None]:
    """A bare forward/backward of `net` with a cross-entropy loss, plus AdamW."""
    net.train()
    # The adaLN-Zero/out layers start at zero; perturb so the backward does real work.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    z = torch.randn(*tokens.shape, embed_dim, device=tokens.device)
    log_snr = torch.zeros(tokens.shape[0], device=tokens.device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = net(z, log_snr)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
        opt.step()

    return step


def run(quick: bool, device: torch.device) -> list[Record]:
    """Tokens/s and model FLOP/s of LCMD and plain steps per size, vs the matmul peak."""
    sizes = ["tiny"] if quick else ["tiny", "S"]
    seq_len, warmup, iters = (64, 1, 3) if quick else (256, 2, 7)
    torch.manual_seed(0)
    peak = matmul_peak(device, seconds=0.5 if quick else 2.0)
    records = [record(NAME, "matmul_peak_gflops", peak)]
    rows = []
    for size in sizes:
        batch = BATCH[size]
        tokens = torch.randint(0, VOCAB, (batch, seq_len), device=device)
        model = LCMD(VOCAB, seq_len, size=size).to(device)
        embed_dim = model.model_config.embed_dim
        net = Denoiser(VOCAB, embed_dim, (seq_len,), size=size).to(device)
        step, grad_tok, nograd_tok = lcmd_step(model, tokens)
        times = paired_times([step, plain_step(net, tokens, embed_dim)], device, warmup, iters)
        t_lcmd, t_plain = median(times[0]), median(times[1])
        time_ratio = median_ratio(*times)
        p = per_token_params(model.denoiser)
        flops_net, flops_plain = 6 * p * grad_tok + 2 * p * nograd_tok, 6 * p * batch * seq_len
        flops_lcmd = flops_net + vocab_flops(model, grad_tok, nograd_tok, batch, seq_len)
        gflops_lcmd, gflops_plain = flops_lcmd / t_lcmd / 1e9, flops_plain / t_plain / 1e9
        flops_ratio = flops_lcmd / flops_plain / time_ratio
        net_ratio = flops_net / flops_plain / time_ratio
        params = sum(q.numel() for q in net.parameters()) / 1e6
        for name, secs, gflops in (("LCMD", t_lcmd, gflops_lcmd), ("plain", t_plain, gflops_plain)):
            rows.append(
                [size, name, batch, f"{params:.2f} M ({p / 1e6:.2f} M)", f"{secs * 1e3:.0f}",
                 f"{batch * seq_len / secs:,.0f}", f"{gflops:.1f}",
                 f"{time_ratio if name == 'LCMD' else 1:.2f}×",
                 f"{100 * gflops / peak:.0f} %",
                 f"{flops_ratio if name == 'LCMD' else 1:.2f}",
                 f"{net_ratio if name == 'LCMD' else 1:.2f}"]
            )  # fmt: skip
        records += [
            record(NAME, f"{size}/lcmd_tokens_per_s", batch * seq_len / t_lcmd),
            record(NAME, f"{size}/plain_tokens_per_s", batch * seq_len / t_plain),
            record(NAME, f"{size}/lcmd_gflops", gflops_lcmd),
            record(NAME, f"{size}/plain_gflops", gflops_plain),
            record(NAME, f"{size}/lcmd_fraction_of_peak", gflops_lcmd / peak),
            record(NAME, f"{size}/plain_fraction_of_peak", gflops_plain / peak),
            record(NAME, f"{size}/lcmd_time_vs_plain", time_ratio),
            record(NAME, f"{size}/lcmd_flops_vs_plain", flops_ratio, ">= 0.9"),
            record(NAME, f"{size}/lcmd_network_flops_vs_plain", net_ratio),
        ]
    print_table(
        f"Training step (fp32, L = {seq_len}, vocab {VOCAB}; matmul peak {peak:.1f} GFLOP/s)",
        ["size", "step", "batch", "params (per-token)", "ms/step", "tokens/s", "model GFLOP/s",
         "time vs plain", "% of matmul peak", "FLOP/s vs plain (goal ≥ 0.9)",
         "network only"],
        rows,
    )  # fmt: skip
    return records
