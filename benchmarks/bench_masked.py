"""Masked diffusion's costs: its training step against a plain transformer step, and its sampler
step against a bare forward of the same network.

The masked step is `MaskedDiffusion.loss(tokens)["total"].backward()` + AdamW: an embedding
lookup, one forward and backward of the `Denoiser` over the batch and a weighted cross-entropy,
so its model FLOPs equal the plain step's (`bench_step.plain_step`, the same network): the
FLOP/s ratio is the inverse of the time ratio. A sampler step is one network call plus the
reveal draws; it is timed as `model.sample(steps=n)` with n so small that every step reveals
tokens (so none is skipped) against n bare forwards, in turns, with and without classifier-free
guidance (whose two halves share one call of twice the batch).
"""

from __future__ import annotations

import torch

from lcmd_core import MaskedDiffusion

from .bench_step import BATCH, loss_step, plain_step
from .common import Record, median, median_ratio, paired_times, print_table, record

NAME = "masked"
VOCAB, CLASSES, GUIDANCE = 1024, 10, 2.0


def sampler_vs_forward(
    model: MaskedDiffusion, batch: int, cfg: bool, steps: int, iters: int, device: torch.device
) -> float:
    """Seconds per sampler step over seconds per bare network forward of the same rows."""
    labels = torch.arange(batch, device=device) % CLASSES
    rows = 2 * batch if cfg else batch
    noisy = torch.full((rows, model.seq_len), model.mask_id, device=device)
    net_labels = torch.cat([labels, torch.full_like(labels, CLASSES)]) if cfg else labels
    guidance = GUIDANCE if cfg else 1.0

    def sample() -> None:
        model.sample(batch, steps=steps, labels=labels, guidance=guidance, seed=0)

    @torch.no_grad()
    def forwards() -> None:
        for _ in range(steps):
            model.denoise(noisy, net_labels)

    return median_ratio(*paired_times([sample, forwards], device, 1, iters))


def run(quick: bool, device: torch.device) -> list[Record]:
    """Step time and FLOP/s against the plain step, and the sampler step against a forward."""
    sizes = ["tiny"] if quick else ["tiny", "S"]
    seq_len, warmup, iters = (64, 1, 3) if quick else (256, 2, 7)
    torch.manual_seed(0)
    records, rows = [], []
    for size in sizes:
        batch = BATCH[size]
        tokens = torch.randint(0, VOCAB, (batch, seq_len), device=device)
        model = MaskedDiffusion(VOCAB, seq_len, size=size).to(device)
        net = type(model.denoiser)(VOCAB, model.model_config.embed_dim, (seq_len,), size=size)
        net = net.to(device)
        steps = [loss_step(model, tokens), plain_step(net, tokens, model.model_config.embed_dim)]
        times = paired_times(steps, device, warmup, iters)
        time_ratio = median_ratio(*times)
        t_masked = median(times[0])
        rows.append([size, batch, f"{t_masked * 1e3:.0f}", f"{median(times[1]) * 1e3:.0f}",
                     f"{time_ratio:.2f}×", f"{1 / time_ratio:.2f}"])  # fmt: skip
        records += [
            record(NAME, f"{size}/masked_tokens_per_s", batch * seq_len / t_masked),
            record(NAME, f"{size}/masked_time_vs_plain", time_ratio),
            record(NAME, f"{size}/masked_flops_vs_plain", 1 / time_ratio, ">= 0.95"),
        ]
    print_table(
        f"Masked training step (fp32, L = {seq_len}, vocab {VOCAB}; the plain step's network)",
        ["size", "batch", "masked ms/step", "plain ms/step", "time vs plain",
         "FLOP/s vs plain (goal ≥ 0.95)"],
        rows,
    )  # fmt: skip

    # (size, batch, sampler steps timed, repetitions), as in the sampling benchmark
    cases = [("tiny", 4, 5, 3)] if quick else [("tiny", 8, 10, 5), ("S", 4, 4, 5)]
    rows = []
    for size, b, steps, reps in cases:
        model = MaskedDiffusion(VOCAB, seq_len, num_classes=CLASSES, size=size).to(device).eval()
        row: list[object] = [size, b]
        for cfg in (False, True):
            ratio = sampler_vs_forward(model, b, cfg, steps, reps, device)
            row.append(f"{ratio:.2f}×")
            kind = "cfg" if cfg else "plain"
            records.append(record(NAME, f"{size}/{kind}/sampler_step_vs_forward", ratio, "<= 1.05"))
        rows.append(row)
    print_table(
        "Masked sampler step ÷ bare network forward (goal ≤ 1.05×)",
        ["size", "batch", "step ÷ forward", "CFG step ÷ forward of 2·batch"],
        rows,
    )
    return records
