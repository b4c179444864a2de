"""Data-parallel scaling: tokens/s with 1 and 2 processes, replicated (ddp) and sharded (fsdp),
and the memory each process holds.

Throughput: `lcmd train` on the example plugin's tiny preset for the same steps and global
batch, then under torchrun (`--nproc 2`, gloo on a CPU) with each strategy. Tokens/s is the
trainer's own per-step figure from `metrics.jsonl`, median over the steps after the first few.
One process uses every core (torch's default threads); torchrun gives each of 2 processes one
thread, so on a 2-core CPU they share the same cores and about 1× is the ceiling.

Memory: a wider model (width 512, depth 8) trained for a few steps through `Trainer.fit` in
fresh processes (`python -m benchmarks.bench_scaling --worker STRATEGY` under torchrun). Each
process resets its peak-RSS mark after joining the group and reports how far it rose during
`fit`: weights, gradients, AdamW moments and EMA, activations, and on rank 0 the gathered
checkpoint it writes. Rank 1 never writes, so its figure is the training state alone. Linux only
(`/proc/self/clear_refs`, as in the memory benchmark). The workers run with glibc's mmap
threshold fixed at 128 KiB (`MALLOC_MMAP_THRESHOLD_`): by default glibc raises that threshold
after large frees and then keeps FSDP's freed all-gather buffers in the heap, and resident
memory shows the allocator's cache instead of what the process uses.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .bench_memory import PROC, peak_growth_mib
from .common import Record, print_table, record

NAME = "scaling"
GLOBAL_BATCH = 64
WIDE = ["model.width=512", "model.depth=8", "model.heads=8"]
ROOT = Path(__file__).resolve().parents[1]


def _lcmd_train(out: Path, steps: int, nproc: int, sets: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    command = [
        sys.executable, "-m", "lcmd_core.cli", "train", "--plugin", "example", "--preset", "tiny",
        "--out", str(out), "--max-steps", str(steps), "--nproc", str(nproc), "--no-progress",
        "--set", f"train.global_batch_size={GLOBAL_BATCH}", "--set", "train.log_every=1",
        "--set", "train.checkpoint_every=100000", "--set", "train.device=cpu",
        "--set", "sample.num_samples=2", "--set", "sample.steps=2",
        *[f for s in sets for f in ("--set", s)],
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def tokens_per_s(nproc: int, strategy: str, steps: int, out: Path) -> float:
    """Median tokens/s of rank 0 over steps 4…`steps` of an `lcmd train --nproc N` run."""
    _lcmd_train(out, steps, nproc, [f"train.strategy={strategy}"])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return statistics.median(json.loads(line)["tokens_per_s"] for line in lines[3:])


def worker(strategy: str, out: Path, steps: int) -> None:
    """Under torchrun: train the wide model and print this process's peak-RSS growth."""
    from lcmd_core import distributed
    from lcmd_core.config import resolve_config
    from lcmd_core.plugins import get_plugin
    from lcmd_core.trainer import Trainer

    world = distributed.world_from_env()
    distributed.init(world, torch.device("cpu"))
    overrides = [*WIDE, f"train.strategy={strategy}", f"train.max_steps={steps}",
                 "train.global_batch_size=8", "train.device=cpu", f"data.shards={out / 'shards'}",
                 "sample.num_samples=2", "sample.steps=2"]  # fmt: skip
    config = resolve_config(preset=get_plugin("example").preset("tiny"), overrides=overrides)
    trainer = Trainer(config, plugin="example", run_dir=out / strategy, progress=False)
    grown = peak_growth_mib(trainer.fit, torch.device("cpu"))
    params = sum(p.numel() for p in trainer.model.parameters())
    print(json.dumps({"rank": world.rank, "peak_mib": grown, "params": params}), flush=True)
    distributed.barrier(world)


def peak_memory(strategy: str, steps: int, out: Path) -> dict[int, dict]:
    """Each rank's `worker` report for 2 processes under `strategy`."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", "-m", "benchmarks.bench_scaling", "--worker", strategy,
               "--out", str(out), "--steps", str(steps)]  # fmt: skip
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    reports = [json.loads(x) for x in done.stdout.splitlines() if x.startswith('{"rank"')]
    return {r["rank"]: r for r in reports}


def run(quick: bool, device: torch.device) -> list[Record]:
    """Tokens/s with 1 and 2 processes (ddp, fsdp), their ratios, and per-process memory."""
    steps = 15 if quick else 60
    cores = os.cpu_count()
    records: list[Record] = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"1": (1, "ddp"), "2 ddp": (2, "ddp"), "2 fsdp": (2, "fsdp")}
        speed = {
            k: tokens_per_s(n, s, steps, Path(tmp) / k.replace(" ", "-"))
            for k, (n, s) in runs.items()
        }
        print_table(
            f"Data-parallel scaling (example plugin, tiny preset, global batch {GLOBAL_BATCH}, "
            f"{steps} steps, gloo on {cores} cores)",
            ["processes", "tokens/s", "vs 1 process"],
            [[k, f"{v:,.0f}", f"{v / speed['1']:.2f}×"] for k, v in speed.items()],
        )
        records += [
            record(NAME, "nproc1/tokens_per_s", speed["1"]),
            record(NAME, "nproc2/tokens_per_s", speed["2 ddp"]),
            record(NAME, "nproc2_vs_nproc1", speed["2 ddp"] / speed["1"]),
            record(NAME, "fsdp2/tokens_per_s", speed["2 fsdp"]),
            record(NAME, "fsdp2_vs_ddp2", speed["2 fsdp"] / speed["2 ddp"]),
        ]
        if not (PROC / "clear_refs").exists():
            print(f"\n## {NAME} memory: skipped (needs Linux /proc to read peak memory)")
            return records
        shards = Path(tmp) / "wide"
        _lcmd_train(shards, 1, 1, WIDE)  # prepares the shards the workers share
        memory_steps = 2 if quick else 4
        found = {s: peak_memory(s, memory_steps, shards) for s in ("ddp", "fsdp")}
    params = found["ddp"][0]["params"]
    rows, ratio = [], found["fsdp"][1]["peak_mib"] / found["ddp"][1]["peak_mib"]
    for strategy, ranks in found.items():
        for rank, report in sorted(ranks.items()):
            rows.append([strategy, rank, f"{report['peak_mib']:.0f}"])
            records.append(record(NAME, f"{strategy}/rank{rank}/peak_mib", report["peak_mib"]))
    records.append(record(NAME, "fsdp_vs_ddp/rank1_peak", ratio, "< 0.75"))
    print_table(
        f"Memory per process, 2 processes (width 512 × 8 layers, {params / 1e6:.1f} M "
        f"parameters, {memory_steps} steps; peak RSS growth during fit, MiB; rank 1 vs ddp: "
        f"{ratio:.2f})",
        ["strategy", "rank", "peak growth MiB"],
        rows,
    )
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one memory measurement, under torchrun")
    parser.add_argument("--worker", choices=["ddp", "fsdp"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    worker(args.worker, args.out, args.steps)
