"""The graph plugin's `graph_transformer` backbone against the default DiT on adjacency tokens.

One training step (loss, backward, AdamW) of LCMD, and of masked diffusion, with the model of
the CPU presets from before this backbone (width 64, 2 layers, 2 heads, D = 16, batch 8) on the
adjacency codec's tokens: planar-64 (L = 2,080 tokens) and the scaled-down SBM (N = 48,
L = 1,176). The two backbones take turns in one run
(`paired_times`), so the ratio holds on a shared machine. Peak memory is the step's peak RSS
growth (CUDA: peak allocated), each backbone in a fresh process as in `bench_memory`. Needs
the graph plugin (`lcmd-graph`); skipped without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from lcmd_core import DiffusionModel
from lcmd_core.processes import PROCESSES

from .bench_memory import PROC, peak_growth_mib
from .bench_step import loss_step
from .common import Record, median, median_ratio, paired_times, print_table, record

NAME = "graph"
MODEL = {"size": "tiny", "width": 64, "depth": 2, "heads": 2, "embed_dim": 16}
BATCH = 8
SETS = {"planar": 64, "sbm": 48}  # data set → max_nodes of its preset
BACKBONES = ("dit", "graph_transformer")


def build(
    nodes: int, backbone: str, device: torch.device, process: str = "continuous"
) -> tuple[DiffusionModel, torch.Tensor]:
    """The model of `process` (LCMD by default) on the adjacency tokens of graphs of `nodes`
    nodes, and a batch."""
    from lcmd_graph.codec import AdjacencyCodec

    spec = AdjacencyCodec(max_nodes=nodes).token_spec
    torch.manual_seed(0)
    model = PROCESSES[process](
        spec.vocab_size, spec.seq_len, positions=spec.positions, backbone=backbone, **MODEL
    ).to(device)
    tokens = torch.randint(0, spec.vocab_size, (BATCH, spec.seq_len), device=device)
    return model, tokens


def peak_mib(nodes: int, backbone: str, device: torch.device) -> float:
    """MiB the peak memory grows by during one training step (call in a fresh process)."""
    return peak_growth_mib(loss_step(*build(nodes, backbone, device)), device)


def measure_peak(nodes: int, backbone: str, device: torch.device) -> float:
    """`peak_mib` in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_graph", "--child", str(nodes), backbone,
         "--device", device.type],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])["peak_mib"]


def run(quick: bool, device: torch.device) -> list[Record]:
    """Step time and peak memory of both backbones on planar-64 and SBM, and their ratios."""
    if importlib.util.find_spec("lcmd_graph") is None:
        print(f"\n## {NAME}: skipped (needs the graph plugin, lcmd-graph)")
        return []
    sets = {"sbm": 16} if quick else SETS  # quick: a small graph, the same code path
    warmup, iters = (1, 2) if quick else (1, 5)
    memory = not quick and (device.type == "cuda" or (PROC / "clear_refs").exists())
    processes = ("continuous",) if quick else ("continuous", "masked")
    records, rows = [], []
    for name, nodes in sets.items():
        for process in processes:
            prefix = f"{name}/N{nodes}" + ("" if process == "continuous" else f"/{process}")
            steps = [loss_step(*build(nodes, b, device, process)) for b in BACKBONES]
            times = paired_times(steps, device, warmup, iters)
            speedup = median_ratio(times[0], times[1])
            peaks = [None, None]
            if memory and process == "continuous":
                peaks = [measure_peak(nodes, b, device) for b in BACKBONES]
            rows.append([name, nodes * (nodes + 1) // 2, process,
                         *(f"{median(t) * 1e3:.0f}" for t in times), f"{speedup:.1f}×",
                         *("–" if p is None else f"{p:.0f}" for p in peaks)])  # fmt: skip
            goal = ">= 10" if (name, process) == ("planar", "continuous") else None
            records.append(record(NAME, f"{prefix}/step_speedup_vs_dit", speedup, goal))
            for backbone, t, p in zip(BACKBONES, times, peaks, strict=True):
                records.append(record(NAME, f"{prefix}/{backbone}/step_ms", median(t) * 1e3))
                if p is not None:
                    records.append(record(NAME, f"{prefix}/{backbone}/step_peak_mib", p))
    print_table(
        f"Graph backbones: training step, width 64, 2 layers, batch {BATCH} "
        "(goal: graph_transformer ≥ 10× faster on planar-64)",
        ["set", "L", "process", "dit ms/step", "graph_transformer ms/step", "speed-up",
         "dit peak MiB", "graph_transformer peak MiB"],
        rows,
    )  # fmt: skip
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="one peak-memory measurement, in this process")
    parser.add_argument("--child", type=int, required=True, metavar="NODES")
    parser.add_argument("backbone", choices=BACKBONES)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps({"peak_mib": peak_mib(args.child, args.backbone, torch.device(args.device))}))
