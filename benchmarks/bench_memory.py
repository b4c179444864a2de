"""Peak memory of one training step as the sequence grows: attention must stay linear in L.

Each length runs in a fresh process (`python -m benchmarks.bench_memory --child L`) that builds
the tiny model, resets the kernel's peak-RSS mark (`/proc/self/clear_refs`; so Linux only, and
not `ru_maxrss`, which a child inherits from its parent), runs one training step at batch 1 and
reports its peak resident memory above the resident memory before the step (on CUDA: peak
allocated memory). Between lengths 4× apart the growth is ≈ 4× when
memory is linear in L and approaches 16× when every head materialises an L×L matrix; the
explicit `math` attention (LCMD_ATTENTION=math) is measured beside the default as that contrast
(full mode, up to L = 1024).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from lcmd_core import LCMD

from .common import Record, print_table, record

NAME = "memory"
VOCAB = 1024
PROC = Path("/proc/self")


def _proc_kib(field: str) -> int:
    """A `kB` field of /proc/self/status, e.g. VmRSS or VmHWM (peak RSS)."""
    line = next(x for x in (PROC / "status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])


def step_growth_mb(seq_len: int, device: torch.device) -> float:
    """MiB the peak memory grows by during one batch-1 training step at length `seq_len`."""
    torch.manual_seed(0)
    model = LCMD(VOCAB, seq_len, size="tiny").to(device).train()
    opt = torch.optim.AdamW(model.parameters())
    tokens = torch.randint(0, VOCAB, (1, seq_len), device=device)

    def step() -> None:
        model.loss(tokens)["total"].backward()
        opt.step()

    return peak_growth_mib(step, device)


def peak_growth_mib(fn: Callable[[], object], device: torch.device) -> float:
    """MiB the peak memory grows by while `fn()` runs: peak RSS above the RSS before (Linux
    /proc; so call it in a fresh process), on CUDA peak allocated memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.max_memory_allocated(device)
    else:
        (PROC / "clear_refs").write_text("5")  # peak RSS := current RSS
        base = _proc_kib("VmRSS") * 1024
    fn()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = _proc_kib("VmHWM") * 1024
    return (peak - base) / 2**20


def measure(seq_len: int, attention: str, device: torch.device) -> float:
    """`step_growth_mb` in a fresh process with the given attention backend."""
    env = {**os.environ, "LCMD_ATTENTION": attention}
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_memory", "--child", str(seq_len),
         "--device", device.type],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])["growth_mb"]


def run(quick: bool, device: torch.device) -> list[Record]:
    """Peak-memory growth per length and between lengths, default attention vs `math`."""
    if device.type == "cpu" and not (PROC / "clear_refs").exists():
        print(f"\n## {NAME}: skipped (needs Linux /proc to read peak memory)")
        return []
    lengths = (256, 1024) if quick else (256, 1024, 4096)
    backends = {"auto": lengths} if quick else {"auto": lengths, "math": lengths[:2]}
    records, rows = [], []
    for attention, lens in backends.items():
        growth = [measure(n, attention, device) for n in lens]
        for i, (n, mb) in enumerate(zip(lens, growth, strict=True)):
            ratio = growth[i] / growth[i - 1] if i else None
            rows.append([attention, n, f"{mb:.1f}", "" if ratio is None else f"{ratio:.1f}×"])
            records.append(record(NAME, f"{attention}/L{n}/step_peak_mib", mb))
            if ratio is not None:
                goal = "< 8" if attention == "auto" else None
                records.append(
                    record(NAME, f"{attention}/L{n}_vs_L{lens[i - 1]}/growth", ratio, goal)
                )
    print_table(
        "Peak memory of a training step (size tiny, batch 1; ≈4× per 4× L is linear)",
        ["attention", "L", "peak growth MiB", "vs previous L"],
        rows,
    )
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one measurement, in this fresh process")
    parser.add_argument("--child", type=int, required=True, metavar="L")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps({"growth_mb": step_growth_mb(args.child, torch.device(args.device))}))
