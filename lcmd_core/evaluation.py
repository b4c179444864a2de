"""Evaluating a run: ELBO bits/token on a held-out split and the plugin's metrics → metrics.json."""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .checkpoint import write_json_atomic
from .device import autocast
from .plugins import MetricContext
from .run_dir import RunError
from .sampling import Run, SampleSettings
from .shards import ShardError, TokenDataset, check_compatible, read_index


def evaluate(
    run: Run, split: str, settings: SampleSettings, max_sequences: int | None
) -> dict[str, Any]:
    """The ELBO of `run.weights(settings.ema)` on up to `max_sequences` sequences of `split`,
    and every metric of the plugin on `settings.n` samples drawn with `settings`.

    Writes `metrics.json` in the run directory: the numbers and, beside them, the protocol
    (the sampling settings, the split, the checkpoint step and each metric's own record).
    """
    shards_dir = run.prepared.shards_dir
    if not (shards_dir / "index.json").is_file():
        raise ShardError(f"no token shards in {shards_dir}; run `lcmd prepare` first")
    index = read_index(shards_dir)
    check_compatible(index, run.spec)
    if split not in index["splits"]:
        raise RunError(
            f"split {split!r} is not in {shards_dir} (splits: {', '.join(index['splits'])})"
        )
    data = TokenDataset(shards_dir, split)
    count = min(len(data), max_sequences or len(data))
    results = _elbo(run, data, count, settings)
    metric_protocols: dict[str, dict[str, Any]] = {}
    if run.plugin.metrics:
        out = run.run_dir.samples_dir / f"eval-{run.step:07d}"
        drawn = run.draw(settings, None, None, out)
        refs = run.codec.decode(data.tokens(torch.arange(count)))
        root = run.config.data.data_root
        dataset = run.prepared.dataset
        context = MetricContext(
            dataset=dataset,
            split=split,
            sample_labels=None if drawn.labels is None else drawn.labels.tolist(),
            load=functools.partial(
                dataset.load, data_root=Path(root).expanduser() if root else None
            ),
            cache_dir=run.run_dir.path / "metric_cache",
            elbo_bits_per_token=results["elbo_bits_per_token"],
        )
        for name, metric in run.plugin.metrics.items():
            metric_context = replace(context, protocol={})
            scores = metric.compute(drawn.items, refs, run.codec, metric_context)
            for key, value in scores.items():
                results[f"{name}/{key}"] = float(value)
            if scores and metric_context.protocol:
                metric_protocols[name] = metric_context.protocol
    drawing = settings.to_json()
    protocol = {
        "process": run.config.diffusion.process,
        "split": split,
        "sequences": count,
        "samples": drawing.pop("n"),
        **drawing,
        "checkpoint_step": run.step,
        "fingerprint": run.spec.fingerprint,
        "metrics": metric_protocols,
    }
    write_json_atomic(run.run_dir.path / "metrics.json", {"metrics": results, "protocol": protocol})
    return results


def _elbo(run: Run, data: TokenDataset, count: int, settings: SampleSettings) -> dict[str, float]:
    """Mean ELBO bits/token over the first `count` sequences, with its standard error."""
    model = run.weights(settings.ema)
    train = run.config.train
    batch = train.micro_batch_size or train.global_batch_size
    generator = torch.Generator(device=run.device).manual_seed(settings.seed)
    bits = []
    for start in range(0, count, batch):
        idx = torch.arange(start, min(count, start + batch))
        tokens = data.tokens(idx).to(run.device)
        labels = data.labels(idx) if run.spec.num_classes else None
        with autocast(run.device, run.autocast_dtype):
            bits.append(model.elbo(tokens, labels, generator=generator).float().cpu())
    per_seq = torch.cat(bits)
    stderr = float(per_seq.std() / math.sqrt(len(per_seq))) if len(per_seq) > 1 else 0.0
    return {"elbo_bits_per_token": float(per_seq.mean()), "elbo_bits_per_token_stderr": stderr}
