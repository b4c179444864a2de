"""Time one LCMD training step against a plain transformer of the same size and the matmul peak.

Run: `python benchmarks/bench_step.py` (or `make bench`). Prints a markdown table; fp32 on the
CPU unless `--device cuda`. Not a test: numbers depend on the machine.

For each size the LCMD step is `model.loss(tokens)["total"].backward()` + AdamW: a forward and
backward over B·(1 + rec_fraction) rows (the t_min slice for L_rec rides along) and one
no-grad forward over B rows for the consistency target. The plain step is the same `Denoiser`
forward + backward with a cross-entropy loss on the clean-token logits, nothing else.
Model FLOPs are estimated as 6·P·tokens per forward+backward plus 2·P·tokens per extra no-grad
forward, where P counts the parameters applied at every position (input projection, attention
and MLP matrices, output layer): the adaLN, time and class layers run once per sequence and are
a third of the parameters of size S, so counting them would overstate the FLOPs. Attention's
L² term and the Bayes readout are not counted either.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lcmd_core import LCMD
from lcmd_core.denoiser import Denoiser

CASES = {"tiny": 8, "S": 4}  # size -> batch


PER_SEQUENCE = ("ada", "time_mlp", "class_embed")  # parameter names not applied per position


def per_token_params(net: Denoiser) -> int:
    """Parameters of the layers that run at every position (see the module docstring)."""
    return sum(
        p.numel()
        for name, p in net.named_parameters()
        if name != "pos" and not any(part in name for part in PER_SEQUENCE)
    )


def matmul_peak(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """Measured fp32 GFLOP/s of an n×n @ n×n matmul."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(step: Callable[[], None], device: torch.device, warmup: int, iters: int) -> float:
    """Median seconds of `step()` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def lcmd_step(size: str, batch: int, seq_len: int, vocab: int, device: torch.device):
    """(step function, denoiser, tokens through fwd+bwd, tokens through no-grad fwd)."""
    model = LCMD(vocab, seq_len, size=size).to(device).train()
    opt = torch.optim.AdamW(model.param_groups(3e-4, 3e-3, 0.01))
    tokens = torch.randint(0, vocab, (batch, seq_len), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(tokens)["total"].backward()
        opt.step()

    dc = model.diffusion_config
    grad_rows = batch + math.ceil(batch * dc.rec_fraction)
    nograd_rows = (batch if dc.cm_weight > 0 else 0) + (
        grad_rows if model.model_config.self_condition else 0
    )
    return step, model.denoiser, grad_rows * seq_len, nograd_rows * seq_len


def plain_step(size: str, batch: int, seq_len: int, vocab: int, embed_dim: int, device):
    """The bare Denoiser with a CE loss: (step function, denoiser, tokens through fwd+bwd)."""
    net = Denoiser(vocab, embed_dim, (seq_len,), size=size).to(device).train()
    # The adaLN-Zero/out layers start at zero; perturb so the backward does real work.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-4)
    tokens = torch.randint(0, vocab, (batch, seq_len), device=device)
    z = torch.randn(batch, seq_len, embed_dim, device=device)
    log_snr = torch.zeros(batch, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = net(z, log_snr)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
        opt.step()

    return step, net, batch * seq_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--sizes", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    peak = matmul_peak(device)
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {device.type}, fp32; seq_len {args.seq_len}, "
        f"vocab {args.vocab}; matmul peak {peak:.1f} GFLOP/s"
    )
    print()
    print(
        "| size | step | batch | params (per-token) | ms/step | tokens/s | model GFLOP/s "
        "| time vs plain | % of matmul peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        batch = CASES[size]
        step, net, grad_tok, nograd_tok = lcmd_step(size, batch, args.seq_len, args.vocab, device)
        t_lcmd = time_step(step, device, args.warmup, args.iters)
        embed_dim = 64
        pstep, pnet, ptok = plain_step(size, batch, args.seq_len, args.vocab, embed_dim, device)
        t_plain = time_step(pstep, device, args.warmup, args.iters)
        p, pp = per_token_params(net), per_token_params(pnet)
        rows = [
            ("LCMD", t_lcmd, net, 6 * p * grad_tok + 2 * p * nograd_tok),
            ("plain", t_plain, pnet, 6 * pp * ptok),
        ]
        for name, secs, model, flops in rows:
            total = sum(q.numel() for q in model.parameters()) / 1e6
            per_tok = per_token_params(model) / 1e6
            gflops = flops / secs / 1e9
            ratio = f"{t_lcmd / t_plain:.2f}×" if name == "LCMD" else "1.00×"
            print(
                f"| {size} | {name} | {batch} | {total:.2f} M ({per_tok:.2f} M) | {secs * 1e3:.0f} "
                f"| {batch * args.seq_len / secs:,.0f} | {gflops:.1f} | {ratio} "
                f"| {100 * gflops / peak:.0f} % |"
            )


if __name__ == "__main__":
    main()
