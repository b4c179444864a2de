"""How fast LCMD memorises four sequences, as a new user would train it, per set of options.

    python examples/toy_memorise.py [--steps 400] [--seeds 0 1] [--json OUT] [--probe]
        [--x0-temperature T ...] [--readout-gate C|off ...]

The toy: 4 fixed random sequences of 16 tokens over 16 symbols, the `tiny` network at width 64
× 2 layers (D = 16), batch 32, AdamW lr 2e-3 on every parameter, no EMA. The score is the share
of 64 samples (50 ancestral steps) that reproduce a training sequence exactly, after every 200
steps. Prints a markdown table (mean ± half-range over seeds) and writes the raw records.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import mean

import torch
from torch import Tensor

from lcmd_core import LCMD
from lcmd_core.config import PAPER_OBJECTIVE
from lcmd_core.schedule import alpha_sigma_from_log_snr

K, L, N_SEQ = 16, 16, 4
# The paper's objective, lcmd's defaults before the CE-at-t defaults; the earlier rows of the
# tables in docs/experiments.md were measured on top of it.
PAPER = {k: v for opts in PAPER_OBJECTIVE.values() for k, v in opts.items()}
CE_CM = {"w_diff": 0.0, "w_prior": 0.0, "ce_weight": 1.0}  # CE at t and CM, no diffusion MSE
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "paper's objective": PAPER,
    "defaults, readout gate c = 5": {"output_prior_logsnr": 5.0},
    "defaults, readout gate c = 3": {"output_prior_logsnr": 3.0},
    "defaults, readout gate c = 2": {"output_prior_logsnr": 2.0},
    "defaults, readout gate c = 1": {"output_prior_logsnr": 1.0},
    "defaults, self-conditioning": {"self_condition": True},
    "stagger 1": {"stagger": 1.0},
    "stagger 4": {"stagger": 4.0},
    "stagger 16": {"stagger": 16.0},
    "shift +2": {**PAPER, "shift": 2.0},
    "shift +4": {**PAPER, "shift": 4.0},
    "shift −2": {**PAPER, "shift": -2.0},
    "embed_scale 4 (√D)": {**PAPER, "embed_scale": 4.0},
    "ce_weight 1": {**PAPER, "ce_weight": 1.0},
    "ce_weight 4": {**PAPER, "ce_weight": 4.0},
    "importance-sampled t": {**PAPER, "time_sampling": "importance"},
    "shift +2, ce_weight 4": {**PAPER, "shift": 2.0, "ce_weight": 4.0},
    "readout gate c = 2": {**PAPER, "output_prior_logsnr": 2.0},
    "readout gate c = 5": {**PAPER, "output_prior_logsnr": 5.0},
    "readout gate c = 5, shift +2": {**PAPER, "output_prior_logsnr": 5.0, "shift": 2.0},
    "no readout": {**PAPER, "output_prior": False},
    "no readout, CE only": {**PAPER, "output_prior": False, "loss": "ce_only"},
    "CE only": {**PAPER, "loss": "ce_only"},
    "CE only, warp": {**PAPER, "loss": "ce_only", "time_sampling": "warp"},
    "CE only, l2, warp": {"loss": "ce_only", "embed_norm": "l2", "time_sampling": "warp"},
    "no readout, CE only, l2, warp": {
        "output_prior": False,
        "loss": "ce_only",
        "embed_norm": "l2",
        "time_sampling": "warp",
    },
    "CE only, l2, warp, gate c = 5": {
        "loss": "ce_only",
        "embed_norm": "l2",
        "time_sampling": "warp",
        "output_prior_logsnr": 5.0,
    },
    "CE + CM, l2, warp": {**CE_CM, "embed_norm": "l2", "time_sampling": "warp"},
    "CE + CM, l2": {**CE_CM, "embed_norm": "l2", "time_sampling": "uniform"},
    "CE + CM, warp": {**CE_CM, "embed_norm": "none", "time_sampling": "warp"},
    "CE + CM, l2, warp, gate c = 5": {
        **CE_CM,
        "embed_norm": "l2",
        "time_sampling": "warp",
        "output_prior_logsnr": 5.0,
    },
}
PROBE_LOG_SNRS = (-6.0, -4.0, -2.0, 0.0, 2.0)


def fit(options: dict, steps: int, seed: int, every: int = 200) -> tuple[LCMD, Tensor, dict]:
    """One run: the model, the four sequences, and the sample match after every `every` steps."""
    torch.manual_seed(seed)
    data = torch.randint(0, K, (N_SEQ, L), generator=torch.Generator().manual_seed(1))
    model = LCMD(K, L, width=64, depth=2, heads=2, embed_dim=16, **options)
    opt = torch.optim.AdamW(model.param_groups(2e-3, 2e-3, 0.0))
    gen = torch.Generator().manual_seed(seed + 2)
    found = {}
    for step in range(1, steps + 1):
        loss = model.loss(data[torch.randint(0, N_SEQ, (32,), generator=gen)])["total"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % every == 0 or step == steps:
            found[step] = match(model.eval(), data, seed)
            model.train()
    return model, data, found


def train(options: dict, steps: int, seed: int, every: int = 200) -> dict[int, float]:
    """Sample match after every `every` steps of one run."""
    return fit(options, steps, seed, every)[2]


def match(
    model: LCMD,
    data: Tensor,
    seed: int,
    sampler: str = "ancestral",
    x0_temperature: float | None = None,
    readout_gate: float | str | None = None,
) -> float:
    """Share of 64 samples (50 steps) that reproduce a training sequence exactly (x0
    temperature and sampling gate: the model's defaults when None)."""
    samples = model.sample(
        64,
        steps=50,
        seed=seed,
        sampler=sampler,
        x0_temperature=x0_temperature,
        readout_gate=readout_gate,
    )
    return float((samples[:, None, :] == data[None]).all(-1).any(-1).float().mean())


@torch.no_grad()
def probe(model: LCMD, data: Tensor, seed: int) -> dict[str, float]:
    """Per-position accuracy of the denoiser on noisy training sequences at fixed log-SNRs, and
    the sample match with each sampler: which of the two a variant changes."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    tokens = data.repeat(64, 1)
    embeds = model.embedding(tokens)
    out = {}
    for lam in PROBE_LOG_SNRS:
        log_snr = torch.full((tokens.shape[0],), lam)
        alpha, sigma = alpha_sigma_from_log_snr(log_snr)
        noise = torch.randn(embeds.shape, generator=gen)
        z = alpha[:, None, None] * embeds + sigma[:, None, None] * noise
        out[f"acc λ={lam:g}"] = float(
            (model.denoise(z, log_snr).argmax(-1) == tokens).float().mean()
        )
    for sampler in ("ancestral", "ddim"):
        out[f"match {sampler}"] = match(model, data, seed, sampler)
    return out


def table_row(label: str, scores: list[float], seconds: str = "") -> str:
    """A markdown row: the mean ± half-range of the per-seed match, the seeds', and the time."""
    half = (max(scores) - min(scores)) / 2
    per_seed = " / ".join(f"{v:.2f}" for v in scores)
    return f"| {label} | {mean(scores):.2f} ± {half:.2f} | {per_seed} | {seconds} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--probe", action="store_true", help="also print `probe` of each run")
    parser.add_argument(
        "--x0-temperature",
        type=float,
        nargs="+",
        default=[],
        help="also score each trained model's samples at these x0 temperatures",
    )
    parser.add_argument(
        "--readout-gate",
        type=lambda text: text if text == "off" else float(text),
        nargs="+",
        default=[],
        help="also score each trained model's samples with these sampling gates (or off)",
    )
    args = parser.parse_args()
    records = []
    print(f"| options | match after {args.steps} steps | per seed | seconds |\n|---|---|---|---|")
    for name in args.variants:
        start = time.perf_counter()
        fitted = [fit(VARIANTS[name], args.steps, seed) for seed in args.seeds]
        runs = [found for _, _, found in fitted]
        if args.probe:
            for seed, (model, data, _) in zip(args.seeds, fitted, strict=True):
                print(f"probe {name}, seed {seed}: {probe(model, data, seed)}", flush=True)
        final = [run[args.steps] for run in runs]
        print(table_row(name, final, f"{time.perf_counter() - start:.0f}"), flush=True)
        record = {"variant": name, "options": VARIANTS[name], "match": runs}
        # Each trained model sampled again at every asked x0 temperature and sampling gate.
        rescored = [("x0_temperature", t, f"x0 T {t:g}") for t in args.x0_temperature]
        rescored += [("readout_gate", g, f"sampling gate {g}") for g in args.readout_gate]
        for option, value, label in rescored:
            scores = [
                match(m.eval(), d, seed, **{option: value})
                for seed, (m, d, _) in zip(args.seeds, fitted, strict=True)
            ]
            print(table_row(f"{name}, {label}", scores), flush=True)
            record.setdefault(f"match_by_{option}", {})[value] = scores
        records.append(record)
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")


if __name__ == "__main__":
    main()
