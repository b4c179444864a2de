"""GPU step time of LCMD under bf16 autocast, attention by torch SDPA vs xformers.

Run on a CUDA machine: `python benchmarks/bench_gpu.py`. Prints a markdown table of ms per
training step (loss + backward + fused AdamW) and sampling time per step, per size and backend.
"""

from __future__ import annotations

import argparse
import time

import torch

from lcmd_core import LCMD
from lcmd_core.attention import xformers_available


def timed(fn, iters: int, warmup: int = 3) -> float:
    """Median seconds of fn() on CUDA."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["S", "B"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing to measure")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    backends = ["sdpa", *(["xformers"] if xformers_available() else [])]
    print(
        f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, bf16 autocast, "
        f"batch {args.batch}, seq_len {args.seq_len}, vocab {args.vocab}"
    )
    print("| size | attention | params | train ms/step | tokens/s | sample ms/step (CFG) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for backend in backends:
            torch.manual_seed(0)
            model = LCMD(
                args.vocab, args.seq_len, num_classes=10, size=size, attention=backend
            ).cuda()
            opt = torch.optim.AdamW(model.param_groups(3e-4, 3e-3, 0.01), fused=True)
            tokens = torch.randint(0, args.vocab, (args.batch, args.seq_len), device="cuda")
            labels = torch.randint(0, 10, (args.batch,), device="cuda")

            def step(model=model, opt=opt, tokens=tokens, labels=labels) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model.loss(tokens, labels)["total"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            def sample(model=model, labels=labels) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    model.sample(args.batch, steps=10, labels=labels, guidance=2.0, seed=0)

            t_train = timed(step, args.iters)
            t_sample = timed(sample, 3, warmup=1) / 11  # 10 steps + the final readout
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(
                f"| {size} | {backend} | {params:.1f} M | {t_train * 1e3:.1f} "
                f"| {args.batch * args.seq_len / t_train:,.0f} | {t_sample * 1e3:.2f} |"
            )


if __name__ == "__main__":
    main()
