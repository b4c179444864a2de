"""Sampling speed: sequences per second, and one sampler step against one bare denoiser forward.

A sampler step is one `LCMD.denoise` call (the network plus the Bayes readout) and the
ancestral update; the reference is `model.denoiser(z, λ, labels)` alone on the same batch, or
on the doubled batch with classifier-free guidance (whose two halves share one call). The
ratio times `model.sample(steps=n)` (n steps and the final readout) against n + 1 bare
forwards, in turns, and takes the median ratio over rounds.
"""

from __future__ import annotations

import time

import torch

from lcmd_core import LCMD

from .common import Record, median_ratio, paired_times, print_table, record

NAME = "sampling"
VOCAB, CLASSES, GUIDANCE = 1024, 10, 2.0


def step_cost_ratio(
    model: LCMD, batch: int, cfg: bool, steps: int, iters: int, device: torch.device
) -> float:
    """Seconds per sampler step over seconds per bare denoiser forward of the same batch."""
    labels = torch.arange(batch, device=device) % CLASSES
    rows = 2 * batch if cfg else batch
    z = torch.randn(rows, model.seq_len, model.model_config.embed_dim, device=device)
    log_snr = torch.zeros(rows, device=device)
    net_labels = torch.cat([labels, torch.full_like(labels, CLASSES)]) if cfg else labels
    guidance = GUIDANCE if cfg else 1.0

    def sample() -> None:
        model.sample(batch, steps=steps, labels=labels, guidance=guidance, seed=0)

    @torch.no_grad()
    def forwards() -> None:
        for _ in range(steps + 1):
            model.denoiser(z, log_snr, net_labels)

    return median_ratio(*paired_times([sample, forwards], device, 1, iters))


def run(quick: bool, device: torch.device) -> list[Record]:
    """Sequences/s at several step counts with and without CFG, and the per-step cost ratio."""
    seq_len, batch = (32, 4) if quick else (256, 8)
    step_counts = (10, 50) if quick else (10, 50, 200)
    torch.manual_seed(0)
    model = LCMD(VOCAB, seq_len, num_classes=CLASSES, size="tiny").to(device).eval()
    labels = torch.arange(batch, device=device) % CLASSES
    model.sample(batch, steps=2, labels=labels, seed=0)  # warm-up
    records, rows = [], []
    for steps in step_counts:
        row: list[object] = [steps]
        for cfg in (False, True):
            start = time.perf_counter()
            model.sample(
                batch, steps=steps, labels=labels, guidance=GUIDANCE if cfg else 1.0, seed=0
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            per_s = batch / (time.perf_counter() - start)
            row.append(f"{per_s:.2f}")
            records.append(
                record(NAME, f"tiny/{'cfg' if cfg else 'plain'}/{steps}_steps/seqs_per_s", per_s)
            )
        rows.append(row)
    print_table(
        f"Sampling, size tiny (L = {seq_len}, vocab {VOCAB}, batch {batch}, ancestral)",
        ["steps", "sequences/s", f"sequences/s with CFG (w = {GUIDANCE})"],
        rows,
    )

    # (size, batch, sampler steps timed, repetitions): S is slow on a CPU, so fewer of each.
    cases = [("tiny", batch, 5, 3)] if quick else [("tiny", batch, 10, 5), ("S", 4, 4, 5)]
    rows = []
    for size, b, steps, iters in cases:
        model = LCMD(VOCAB, seq_len, num_classes=CLASSES, size=size).to(device).eval()
        row = [size, b]
        for cfg in (False, True):
            ratio = step_cost_ratio(model, b, cfg, steps, iters, device)
            row.append(f"{ratio:.2f}×")
            kind = "cfg" if cfg else "plain"
            records.append(record(NAME, f"{size}/{kind}/step_vs_forward", ratio, "<= 1.1"))
        rows.append(row)
    print_table(
        "Sampler step ÷ bare denoiser forward (goal ≤ 1.1×)",
        ["size", "batch", "step ÷ forward", "CFG step ÷ forward of 2·batch"],
        rows,
    )
    return records
