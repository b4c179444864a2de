"""What a trained continuous (LCMD) run has learned, noise level by noise level.

    python examples/probe.py RUN [RUN ...] [--split valid] [--sequences 256] [--json OUT]
    python examples/probe.py RUN [RUN ...] --loss-variance 60 [--json OUT]

For each log-SNR λ on a grid, the held-out cross-entropy (bits/token) of the run's EMA model
given z_λ, next to two context-free references computed with the same table: the unigram alone
(what a model that ignores z knows) and "Bayes readout + unigram", log q(x | z_i) + log p(x),
the best prediction from a token's own noisy latent without its neighbours. Where the model is
below the second line it uses context; where it is above, it has not even learned what its own
latent says. The last column is the readout alone at the model's own gate (what the Bayes
readout contributes). Also printed: the log-SNR at which a token and its nearest neighbour in
the table are two noise standard deviations apart (d′ = 2), and the share of training times t
that lie at lower noise than that.

`--loss-variance N` instead compares, for runs trained with `diffusion.time_sampling=importance`,
the training-mode loss estimate over N held-out batches (the run's micro-batch size) with t drawn
uniformly and from the run's fitted proposal, at fixed weights: mean and standard deviation of
the ELBO estimate (`bits_per_token`) and of the total loss. Both draws use the same batches and
seeds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from lcmd_core import load_run
from lcmd_core.embedding import collapse_diagnostics, distinguishable_log_snr
from lcmd_core.model import LCMD
from lcmd_core.objective import bayes_readout
from lcmd_core.schedule import alpha_sigma_from_log_snr
from lcmd_core.shards import TokenDataset

LOG_SNRS = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0, 10.0)


@torch.no_grad()
def probe(run_dir: Path, split: str, sequences: int, seed: int) -> dict:
    run = load_run(run_dir)
    model = run.model
    if not isinstance(model, LCMD):
        raise SystemExit(f"probe.py: {run_dir} is a {model.process} run; the probe reads LCMD runs")
    train, held = (
        TokenDataset(run.prepared.shards_dir, "train"),
        TokenDataset(run.prepared.shards_dir, split),
    )
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
    lam_d2 = distinguishable_log_snr(collapse_diagnostics(table)["mean_nn_dist"])
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


@torch.no_grad()
def loss_variance(run_dir: Path, split: str, batches: int) -> dict:
    run = load_run(run_dir)
    model = run.model.train()
    warp = getattr(model, "time_warp", None)
    if warp is None:
        raise SystemExit(f"probe.py: {run_dir} was not trained with time_sampling=importance")
    warp.decay = 1.0 - 1e-12  # keep the fitted proposal fixed while measuring
    held = TokenDataset(run.prepared.shards_dir, split)
    size = run.config.train.micro_batch_size or run.config.train.global_batch_size
    result: dict = {"run": str(run_dir), "split": split, "batches": batches, "batch": size}
    for name, proposal in (("uniform", None), ("importance", warp)):
        model.time_warp = proposal
        found: dict[str, list[float]] = {"bits_per_token": [], "total": []}
        for i in range(batches):
            idx = torch.arange(size * i, size * (i + 1)) % len(held)
            labels = held.labels(idx) if model.num_classes else None
            out = model.loss(held.tokens(idx), labels, generator=torch.Generator().manual_seed(i))
            for key, values in found.items():
                values.append(float(out[key].mean()))
        result[name] = {
            key: {"mean": float(torch.tensor(v).mean()), "std": float(torch.tensor(v).std())}
            for key, v in found.items()
        }
    return result


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
    parser.add_argument("--loss-variance", type=int, metavar="N", help="see above")
    args = parser.parse_args()
    if args.loss_variance:
        results = [loss_variance(run, args.split, args.loss_variance) for run in args.runs]
        print(json.dumps(results, indent=1))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        return
    results = [probe(run, args.split, args.sequences, args.seed) for run in args.runs]
    for result in results:
        print(table(result), end="\n\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
