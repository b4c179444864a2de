"""`train.compile`: the LCMD training step with the denoiser under `torch.compile` vs eager.

Two copies of the same model (same initial weights) train on the same batch, the eager one and
one whose `denoiser.forward` is compiled exactly as the trainer does it; their steps are timed
in turns after the compiled copy has been warmed up (its first calls compile the graphs for the
gradient forward and the no-grad consistency forward). Reports the seconds the compilation took
and the step-time ratio eager ÷ compiled (above 1: compiling pays). Compilation starts from an
empty inductor cache (a fresh `TORCHINDUCTOR_CACHE_DIR`), as on a new machine. The quick mode
skips it: compiling takes about half a minute a size on 2 cores.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from unittest import mock

import torch

from lcmd_core import LCMD

from .bench_step import BATCH, VOCAB, lcmd_step
from .common import Record, median, median_ratio, paired_times, print_table, record, sync

NAME = "compile"


def run(quick: bool, device: torch.device) -> list[Record]:
    """Compile time and eager/compiled step-time ratio per size (fp32)."""
    if quick:
        print(f"\n## {NAME}: skipped in quick mode (compiling takes minutes)")
        return []
    with (
        tempfile.TemporaryDirectory() as cache,
        mock.patch.dict(os.environ, {"TORCHINDUCTOR_CACHE_DIR": cache}),
    ):
        return _measure(device)


def _measure(device: torch.device) -> list[Record]:
    seq_len, records, rows = 256, [], []
    for size in ("tiny", "S"):
        torch.manual_seed(0)
        batch = BATCH[size]
        tokens = torch.randint(0, VOCAB, (batch, seq_len), device=device)
        eager = LCMD(VOCAB, seq_len, size=size).to(device)
        compiled = copy.deepcopy(eager)
        compiled.denoiser.forward = torch.compile(compiled.denoiser.forward)
        eager_step, compiled_step = lcmd_step(eager, tokens)[0], lcmd_step(compiled, tokens)[0]
        sync(device)
        started = time.perf_counter()
        for _ in range(2):  # shapes of the first step, then the automatic dynamic-shape graphs
            compiled_step()
        sync(device)
        compile_s = time.perf_counter() - started
        times = paired_times([eager_step, compiled_step], device, warmup=1, iters=7)
        speedup = median_ratio(times[0], times[1])
        rows.append([size, batch, f"{compile_s:.0f}", f"{median(times[0]) * 1e3:.0f}",
                     f"{median(times[1]) * 1e3:.0f}", f"{speedup:.2f}×"])  # fmt: skip
        records += [
            record(NAME, f"{size}/compile_s", compile_s),
            record(NAME, f"{size}/eager_vs_compiled_step", speedup),
        ]
    print_table(
        f"torch.compile of the denoiser (training step, fp32, L = {seq_len}, vocab {VOCAB})",
        ["size", "batch", "compile s (first 2 steps)", "eager ms/step", "compiled ms/step",
         "eager ÷ compiled"],
        rows,
    )  # fmt: skip
    return records
