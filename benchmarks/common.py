"""What every benchmark shares: the record format, median timing, the matmul peak, tables."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from typing import TypedDict

import torch


class Record(TypedDict):
    """One measured figure: `goal` is null or a bound such as ">= 0.9"."""

    benchmark: str
    metric: str
    value: float
    goal: str | None


def record(benchmark: str, metric: str, value: float, goal: str | None = None) -> Record:
    """A `Record` with the value as a plain float."""
    return {"benchmark": benchmark, "metric": metric, "value": float(value), "goal": goal}


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so wall-clock times mean something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median(values: Sequence[float]) -> float:
    """The middle value (the upper one of an even count)."""
    return sorted(values)[len(values) // 2]


def median_seconds(
    fn: Callable[[], object], device: torch.device, warmup: int, iters: int
) -> float:
    """Median seconds of `fn()` over `iters` calls after `warmup` untimed ones."""
    return median(paired_times([fn], device, warmup, iters)[0])


def paired_times(
    fns: Sequence[Callable[[], object]], device: torch.device, warmup: int, iters: int
) -> list[list[float]]:
    """Seconds of each of `fns` per round, the functions taking turns within every round.

    Taking turns (in alternating order) exposes the functions to the same background load, so
    per-round ratios stay meaningful on a shared machine even when absolute times drift.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[0.0] * iters for _ in fns]
    for i in range(iters):
        order = range(len(fns)) if i % 2 == 0 else reversed(range(len(fns)))
        for j in order:
            sync(device)
            start = time.perf_counter()
            fns[j]()
            sync(device)
            times[j][i] = time.perf_counter() - start
    return times


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator / denominator (from `paired_times`)."""
    return median([a / b for a, b in zip(numerator, denominator, strict=True)])


def matmul_peak(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """Measured fp32 GFLOP/s of an n×n @ n×n matmul."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def machine() -> str:
    """One line naming the processor, threads and torch build."""
    if torch.cuda.is_available():
        where = torch.cuda.get_device_name()
    else:
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return f"{where}, torch {torch.__version__}"


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a markdown table under a `## title` line."""
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    print(flush=True)
