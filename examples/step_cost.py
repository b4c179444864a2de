"""Milliseconds per training step of the `mnist` preset's network, the paper's objective against
LCMD's defaults, timed alternately in one process so that both see the same machine.

    python examples/step_cost.py [--rounds 6] [--steps 10]
"""

from __future__ import annotations

import argparse
import time

import torch

from lcmd_core import LCMD
from lcmd_core.config import PAPER_OBJECTIVE

PAPER = {k: v for opts in PAPER_OBJECTIVE.values() for k, v in opts.items()}
NETWORK = {"width": 128, "depth": 4, "heads": 4, "embed_dim": 32, "num_classes": 10, "shift": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {
        "paper's objective": LCMD(256, 49, **NETWORK, **PAPER),
        "defaults": LCMD(256, 49, **NETWORK),
    }
    optimizers = {k: torch.optim.AdamW(m.param_groups(2e-3, 2e-3, 0.0)) for k, m in models.items()}
    tokens, labels = torch.randint(0, 256, (64, 49)), torch.randint(0, 10, (64,))
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                with model.one_step():
                    loss = model.loss(tokens, labels)["total"]
                optimizers[name].zero_grad()
                loss.backward()
                optimizers[name].step()
            times[name].append((time.perf_counter() - start) / args.steps)
    for name, values in times.items():
        kept = sorted(values)[1:-1] or values  # drop the fastest and slowest round
        print(f"{name}: {1000 * sum(kept) / len(kept):.1f} ms/step")


if __name__ == "__main__":
    main()
