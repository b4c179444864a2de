"""Run the benchmarks, print their tables and write their records as a JSON list.

`python -m benchmarks` runs every benchmark in full (several minutes on 2 cores); `--quick`
shrinks sizes and repetitions and uses one thread, so the whole suite takes well under a minute
(CI runs it); `--only` picks benchmarks by name. Benchmarks that need CUDA are skipped without
it. The figures are measurements, not tests: an unmet goal is reported, never an error.
"""

from __future__ import annotations

import argparse
import json
import operator
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import (
    bench_compile,
    bench_data,
    bench_gpu,
    bench_graph,
    bench_masked,
    bench_memory,
    bench_sampling,
    bench_scaling,
    bench_step,
    toy_collapse,
)
from .common import Record, machine, print_table

BENCHMARKS: dict[str, Callable[[bool, torch.device], list[Record]]] = {
    "step": bench_step.run,
    "sampling": bench_sampling.run,
    "masked": bench_masked.run,
    "memory": bench_memory.run,
    "data": bench_data.run,
    "scaling": bench_scaling.run,
    "compile": bench_compile.run,
    "collapse": toy_collapse.run,
    "graph": bench_graph.run,
    "gpu": bench_gpu.run,
}
NEEDS_CUDA = {"gpu"}
COMPARISONS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}


def meets(value: float, goal: str) -> bool:
    """Whether `value` satisfies a goal such as ">= 0.9"."""
    op, bound = goal.split()
    return COMPARISONS[op](value, float(bound))


def main(argv: list[str] | None = None) -> list[Record]:
    """Parse the command line, run the chosen benchmarks and return all their records."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the records here")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")  # fmt: skip
    parser.add_argument("--device", default="cpu", help="device of the CPU benchmarks")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    mode = "quick" if args.quick else "full"
    if args.quick:
        # Quick figures only show that the suite runs; one thread keeps it fast on a busy CPU,
        # where OpenMP threads spinning for a core make 2-thread steps many times slower.
        torch.set_num_threads(1)
    print(f"# lcmd benchmarks ({mode}): {machine()}, fp32 unless noted", flush=True)
    records: list[Record] = []
    for name in args.only or list(BENCHMARKS):
        if name in NEEDS_CUDA and not torch.cuda.is_available():
            print(f"\n## {name}: skipped (no CUDA)")
            continue
        start = time.perf_counter()
        records += BENCHMARKS[name](
            args.quick, torch.device("cuda") if name in NEEDS_CUDA else device
        )
        print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    goals = [r for r in records if r["goal"]]
    print_table(
        "Goals",
        ["benchmark", "metric", "value", "goal", "met"],
        [[r["benchmark"], r["metric"], f"{r['value']:.3g}", r["goal"],
          "yes" if meets(r["value"], r["goal"]) else "**no**"] for r in goals],
    )  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    return records


if __name__ == "__main__":
    main()
