"""Training throughput reading token shards from disk, against the same batch held in memory.

The shards are written by `write_shards` into a temporary directory and read as the trainer
reads them: a memory-mapped `TokenDataset` indexed by an `BatchOrder`. The in-memory step
trains on one fixed batch, so the ratio is the share of a step the loader costs. The two steps
run in turns on the same model; the ratio is the median over rounds.
"""

from __future__ import annotations

import tempfile

import torch

from lcmd_core import LCMD
from lcmd_core.codec import TokenSpec
from lcmd_core.shards import BatchOrder, TokenDataset, write_shards

from .bench_step import lcmd_step
from .common import Record, median, median_ratio, median_seconds, paired_times, print_table, record

NAME = "data"
VOCAB, BATCH, ITEMS, SHARD_SIZE = 1024, 8, 4096, 1024


def run(quick: bool, device: torch.device) -> list[Record]:
    """Tokens/s from shards and from memory, their ratio, and the loader's own time per batch."""
    seq_len, warmup, iters = (64, 1, 5) if quick else (256, 2, 10)
    torch.manual_seed(0)
    spec = TokenSpec(vocab_size=VOCAB, token_shape=(seq_len,), fingerprint="bench")
    model = LCMD(VOCAB, seq_len, size="tiny").to(device)
    with tempfile.TemporaryDirectory() as tmp:
        tokens = torch.randint(0, VOCAB, (ITEMS, seq_len))
        write_shards(tmp, {"train": (tokens, None)}, spec, "bench", shard_size=SHARD_SIZE)
        dataset = TokenDataset(tmp, "train")
        order = BatchOrder(len(dataset), seed=0)

        def load() -> torch.Tensor:
            return dataset.tokens(order.next_batch(BATCH)).to(device, non_blocking=True)

        batch = load()
        step, _, _ = lcmd_step(model, batch)

        def from_shards() -> None:
            batch.copy_(load())
            step()

        shards, memory = paired_times([from_shards, step], device, warmup, iters)
        t_load = median_seconds(load, device, warmup, 10 * iters)
    t_shards, t_memory, ratio = median(shards), median(memory), median_ratio(memory, shards)
    print_table(
        f"Data: shards vs memory (size tiny, L = {seq_len}, batch {BATCH}, "
        f"{ITEMS} items in {ITEMS // SHARD_SIZE} shards)",
        ["source", "ms/step", "tokens/s", "throughput vs memory (goal ≥ 0.95)", "loader ms/batch"],
        [
            ["shards", f"{t_shards * 1e3:.1f}", f"{BATCH * seq_len / t_shards:,.0f}",
             f"{ratio:.3f}", f"{t_load * 1e3:.2f}"],
            ["memory", f"{t_memory * 1e3:.1f}", f"{BATCH * seq_len / t_memory:,.0f}", "1", ""],
        ],
    )  # fmt: skip
    return [
        record(NAME, "shards_tokens_per_s", BATCH * seq_len / t_shards),
        record(NAME, "memory_tokens_per_s", BATCH * seq_len / t_memory),
        record(NAME, "shards_vs_memory", ratio, ">= 0.95"),
        record(NAME, "loader_fraction_of_step", t_load / t_memory),
    ]
