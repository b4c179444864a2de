"""Data-parallel scaling: tokens/s of `lcmd train` with 1 and 2 processes at one global batch.

Both runs train the example plugin's tiny preset for the same steps and global batch, the
second under torchrun (`--nproc 2`, gloo on a CPU). Tokens/s is the trainer's own per-step
figure from `metrics.jsonl`, median over the steps after the first few. One process uses every
core (torch's default threads); torchrun gives each of 2 processes one thread, so on a 2-core
CPU they share the same cores and about 1× is the ceiling.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .common import Record, print_table, record

NAME = "scaling"
GLOBAL_BATCH = 64


def tokens_per_s(nproc: int, steps: int, out: Path) -> float:
    """Median tokens/s of rank 0 over steps 4…`steps` of an `lcmd train --nproc N` run."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    command = [
        sys.executable, "-m", "lcmd_core.cli", "train", "--plugin", "example", "--preset", "tiny",
        "--out", str(out), "--max-steps", str(steps), "--nproc", str(nproc), "--no-progress",
        "--set", f"train.global_batch_size={GLOBAL_BATCH}", "--set", "train.log_every=1",
        "--set", "train.checkpoint_every=100000", "--set", "train.device=cpu",
        "--set", "sample.num_samples=2", "--set", "sample.steps=2",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return statistics.median(json.loads(line)["tokens_per_s"] for line in lines[3:])


def run(quick: bool, device: torch.device) -> list[Record]:
    """Tokens/s with 1 and 2 processes on the CPU and their ratio."""
    steps = 15 if quick else 60
    with tempfile.TemporaryDirectory() as tmp:
        one, two = (tokens_per_s(n, steps, Path(tmp) / f"nproc{n}") for n in (1, 2))
    cores = os.cpu_count()
    print_table(
        f"Data-parallel scaling (example plugin, tiny preset, global batch {GLOBAL_BATCH}, "
        f"{steps} steps, gloo on {cores} cores)",
        ["processes", "tokens/s", "vs 1 process"],
        [[1, f"{one:,.0f}", "1.00×"], [2, f"{two:,.0f}", f"{two / one:.2f}×"]],
    )
    return [
        record(NAME, "nproc1/tokens_per_s", one),
        record(NAME, "nproc2/tokens_per_s", two),
        record(NAME, "nproc2_vs_nproc1", two / one),
    ]
