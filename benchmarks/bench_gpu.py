"""GPU step time of LCMD under bf16 autocast, attention by torch SDPA vs xformers.

Needs CUDA (`python -m benchmarks --only gpu` skips it elsewhere). Prints ms per training step
(loss + backward + fused AdamW) and per CFG sampling step, per size and attention backend.
"""

from __future__ import annotations

import torch

from lcmd_core import LCMD
from lcmd_core.attention import xformers_available

from .common import Record, median_seconds, print_table, record

NAME = "gpu"
BATCH, SEQ_LEN, VOCAB, CLASSES = 64, 256, 1024, 10


def run(quick: bool, device: torch.device) -> list[Record]:
    """Training and CFG sampling ms/step per size and attention backend (bf16 autocast)."""
    sizes, iters = (["S"], 3) if quick else (["S", "B", "L"], 10)
    torch.backends.cuda.matmul.allow_tf32 = True
    backends = ["sdpa", *(["xformers"] if xformers_available() else [])]
    rows, records = [], []
    for size in sizes:
        for backend in backends:
            torch.manual_seed(0)
            model = LCMD(VOCAB, SEQ_LEN, num_classes=CLASSES, size=size, attention=backend)
            model = model.to(device)
            opt = torch.optim.AdamW(model.param_groups(3e-4, 3e-3, 0.01), fused=True)
            tokens = torch.randint(0, VOCAB, (BATCH, SEQ_LEN), device=device)
            labels = torch.randint(0, CLASSES, (BATCH,), device=device)

            def step(model=model, opt=opt, tokens=tokens, labels=labels) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model.loss(tokens, labels)["total"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            def sample(model=model, labels=labels) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    model.sample(BATCH, steps=10, labels=labels, guidance=2.0, seed=0)

            t_train = median_seconds(step, device, 3, iters)
            t_sample = median_seconds(sample, device, 1, 3) / 11  # 10 steps + the final readout
            params = sum(p.numel() for p in model.parameters()) / 1e6
            rows.append(
                [size, backend, f"{params:.1f} M", f"{t_train * 1e3:.1f}",
                 f"{BATCH * SEQ_LEN / t_train:,.0f}", f"{t_sample * 1e3:.2f}"]
            )  # fmt: skip
            records += [
                record(NAME, f"{size}/{backend}/train_tokens_per_s", BATCH * SEQ_LEN / t_train),
                record(NAME, f"{size}/{backend}/sample_ms_per_cfg_step", t_sample * 1e3),
            ]
    print_table(
        f"GPU, bf16 autocast (batch {BATCH}, L = {SEQ_LEN}, vocab {VOCAB})",
        ["size", "attention", "params", "train ms/step", "tokens/s", "sample ms/step (CFG)"],
        rows,
    )
    return records
