"""Milliseconds per training step, timed alternately in one process so that every model sees the
same machine: the `mnist` preset's network under the paper's objective and LCMD's defaults, or
(`--text`) the Shakespeare network at the widths and depths its preset was chosen from.

    python examples/step_cost.py [--rounds 6] [--steps 10]
    python examples/step_cost.py --text [--rounds 4] [--steps 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from lcmd_core import LCMD
from lcmd_core.config import PAPER_OBJECTIVE

PAPER = {k: v for opts in PAPER_OBJECTIVE.values() for k, v in opts.items()}
NETWORK = {"width": 128, "depth": 4, "heads": 4, "embed_dim": 32, "num_classes": 10, "shift": 2.0}
TEXT = {"embed_dim": 16, "pos_encoding": "rope", "self_condition": True}
TEXT_SHAPES = {"64 x 2": (64, 2, 2), "96 x 3": (96, 3, 3), "128 x 3": (128, 3, 4)}


def models(text: bool) -> tuple[dict[str, LCMD], torch.Tensor, torch.Tensor | None]:
    """The models to time, a batch of tokens and its labels (None: unconditional)."""
    torch.manual_seed(0)
    if text:  # the shakespeare preset: 256 characters, batch 16, about 70 symbols
        nets = {
            name: LCMD(70, 256, width=w, depth=d, heads=h, **TEXT)
            for name, (w, d, h) in TEXT_SHAPES.items()
        }
        return nets, torch.randint(0, 70, (16, 256)), None
    nets = {
        "paper's objective": LCMD(256, 49, **NETWORK, **PAPER),
        "defaults": LCMD(256, 49, **NETWORK),
    }
    return nets, torch.randint(0, 256, (64, 49)), torch.randint(0, 10, (64,))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", action="store_true", help="the Shakespeare network's shapes")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    nets, tokens, labels = models(args.text)
    optimizers = {k: torch.optim.AdamW(m.param_groups(2e-3, 2e-3, 0.0)) for k, m in nets.items()}
    times: dict[str, list[float]] = {k: [] for k in nets}
    for _ in range(args.rounds):
        for name, model in nets.items():
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
