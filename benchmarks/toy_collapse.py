"""Embedding-collapse diagnostics on the toy problem, with and without the CM loss and dropping.

Trains the same tiny LCMD on 4 fixed random sequences (K=16, L=16) for a fixed number of steps
and prints a markdown table: accuracy at t_min, sample match rate, ELBO bits/token and the collapse
diagnostics of the EMA embedding table (quick mode: 40 steps, one seed).
"""

from __future__ import annotations

import time

import torch

from lcmd_core import EMA, LCMD

from .common import Record, print_table, record

NAME = "collapse"

K, L, N_SEQ = 16, 16, 4
VARIANTS = {
    "LCMD (CM 1.0, drop 0.1)": {},
    "no CM": {"cm_weight": 0.0},
    "no CM, no dropping": {"cm_weight": 0.0, "drop_prob": 0.0},
    "CM, no dropping": {"drop_prob": 0.0},
}
REPORTED = ("acc_t0", "match", "bits", "mean_pairwise_dist", "effective_rank")


def train_toy(steps: int, seed: int, **overrides: float) -> dict[str, float]:
    """Train one variant; its final EMA model's figures."""
    torch.manual_seed(seed)
    data = torch.randint(0, K, (N_SEQ, L), generator=torch.Generator().manual_seed(1))
    model = LCMD(K, L, width=64, depth=2, heads=2, embed_dim=16, **overrides)
    opt = torch.optim.AdamW(model.param_groups(1e-3, 1e-2, 0.0))
    ema = EMA(model, 0.99)
    gen = torch.Generator().manual_seed(seed + 2)
    for _ in range(steps):
        loss = model.loss(data[torch.randint(0, N_SEQ, (32,), generator=gen)])["total"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
    trained = ema.module.eval()
    samples = trained.sample(64, steps=50, seed=seed)
    match = (samples[:, None, :] == data[None]).all(-1).any(-1).float().mean()
    eval_out = trained.loss(data.repeat(16, 1))
    return {
        "acc_t0": float(eval_out["acc_t0"]),
        "match": float(match),
        "bits": float(eval_out["bits_per_token"]),
        **trained.diagnostics(),
    }


def run(quick: bool, device: torch.device) -> list[Record]:
    """Accuracy, sample match, ELBO and collapse diagnostics per variant (on the CPU)."""
    steps, seeds = (40, 1) if quick else (1000, 2)
    rows, records = [], []
    for name, overrides in VARIANTS.items():
        start = time.perf_counter()
        runs = [train_toy(steps, seed, **overrides) for seed in range(seeds)]
        m = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        rows.append(
            [name, f"{m['acc_t0']:.3f}", f"{m['match']:.2f}", f"{m['bits']:.3f}",
             f"{m['mean_pairwise_dist']:.2f}", f"{m['cov_trace']:.2f}",
             f"{m['effective_rank']:.1f}", f"{m['mean_nn_dist']:.2f}",
             f"{time.perf_counter() - start:.0f}"]
        )  # fmt: skip
        records += [record(NAME, f"{name}/{key}", m[key]) for key in REPORTED]
    print_table(
        f"Toy collapse (K={K}, L={L}, {N_SEQ} sequences, {steps} steps, mean over "
        f"{seeds} seed{'s' if seeds > 1 else ''}, EMA weights)",
        ["variant", "acc@t0", "sample match", "ELBO bits/tok", "pairwise dist", "cov trace",
         "eff. rank", "NN dist", "seconds"],
        rows,
    )  # fmt: skip
    return records
