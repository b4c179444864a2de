"""What a trained continuous (LCMD) run has learned, noise level by noise level.

    python examples/probe.py RUN [RUN ...] [--split valid] [--sequences 256] [--json OUT]

For each log-SNR λ on a grid, the held-out cross-entropy (bits/token) of the run's EMA model
given z_λ, next to two context-free references computed with the same table: the unigram alone
(what a model that ignores z knows) and "Bayes readout + unigram", log q(x | z_i) + log p(x),
the best prediction from a token's own noisy latent without its neighbours. Where the model is
below the second line it uses context; where it is above, it has not even learned what its own
latent says. The last column is the readout alone at the model's own gate (what the Bayes
readout contributes). Also printed: the log-SNR at which a token and its nearest neighbour in
the table are two noise standard deviations apart (d′ = 2), and the share of training times t
that lie at lower noise than that.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from lcmd_core import load_run
from lcmd_core.model import LCMD
from lcmd_core.objective import bayes_readout
from lcmd_core.schedule import alpha_sigma_from_log_snr
from lcmd_core.shards import TokenDataset

LOG_SNRS = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0, 10.0)


def distinguishable_log_snr(table: torch.Tensor) -> float:
    """λ at which the rows' mean nearest-neighbour distance d is two noise std: e^{λ/2} d = 2."""
    dist = torch.cdist(table.double(), table.double())
    dist.fill_diagonal_(float("inf"))
    return 2.0 * math.log(2.0 / float(dist.min(dim=1).values.mean()))


@torch.no_grad()
def probe(run_dir: Path, split: str, sequences: int, seed: int) -> dict:
    run = load_run(run_dir)
    model = run.model
    if not isinstance(model, LCMD):
        raise SystemExit(f"probe.py: {run_dir} is a {model.process} run; the probe reads LCMD runs")
    shards = Path(run.config.data.shards) if run.config.data.shards else run.run_dir.shards_dir
    train, held = TokenDataset(shards, "train"), TokenDataset(shards, split)
    counts = torch.bincount(
        train.tokens(torch.arange(len(train))).flatten(), minlength=model.vocab_size
    )
    log_prior = torch.log((counts.double() + 1) / (counts.sum() + model.vocab_size)).float()
    idx = torch.arange(min(sequences, len(held)))
    tokens = held.tokens(idx)
    labels = held.labels(idx) if model.num_classes else None
    table = model.embedding.weight
    gen = torch.Generator().manual_seed(seed)
    rows = []
    to_bits = 1.0 / math.log(2.0)
    for lam in LOG_SNRS:
        log_snr = torch.full((len(idx),), lam)
        alpha, sigma = alpha_sigma_from_log_snr(log_snr)
        e = table[tokens]
        z = alpha[:, None, None] * e + sigma[:, None, None] * torch.randn(e.shape, generator=gen)
        logits = model.denoise(z, log_snr, labels)
        readout = bayes_readout(z, table, alpha, sigma)

        def bits(scores: torch.Tensor) -> float:
            flat = scores.flatten(0, 1).float()
            return float(F.cross_entropy(flat, tokens.flatten())) * to_bits

        rows.append(
            {
                "log_snr": lam,
                "model": bits(logits),
                "unigram": bits(log_prior.expand_as(logits)),
                "readout_unigram": bits(readout + log_prior),
            }
        )
    lam_d2 = distinguishable_log_snr(table)
    share = float(model.schedule.t_from_log_snr(torch.tensor(lam_d2, dtype=torch.float64)))
    return {
        "run": str(run_dir),
        "step": run.step,
        "split": split,
        "sequences": len(idx),
        "log_snr_d2": lam_d2,
        "share_of_t_with_d2": share,
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"{result['run']} (step {result['step']}, {result['sequences']} {result['split']} "
        f"sequences): d′ = 2 at λ = {result['log_snr_d2']:.2f}, "
        f"{result['share_of_t_with_d2']:.0%} of training t at lower noise",
        "| λ | model | readout + unigram | unigram |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = (f"{r[k]:.3f}" for k in ("model", "readout_unigram", "unigram"))
        lines.append(f"| {r['log_snr']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = [probe(run, args.split, args.sequences, args.seed) for run in args.runs]
    for result in results:
        print(table(result), end="\n\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
