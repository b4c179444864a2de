"""Evaluating a run: ELBO bits/token on a held-out split and the plugin's metrics → metrics.json."""

from __future__ import annotations

import contextlib
import functools
import json
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

TASKS = ("generate", "infill")


def evaluate(
    run: Run, split: str, settings: SampleSettings, max_sequences: int | None
) -> dict[str, Any]:
    """The ELBO of `run.weights(settings.ema)` on up to `max_sequences` sequences of `split`,
    and every metric of the plugin on `settings.n` samples drawn with `settings`.

    Writes `metrics.json` in the run directory: the numbers and, beside them, the protocol
    (the sampling settings, the split, the checkpoint step and each metric's own record).
    """
    data = _split(run, split)
    count = min(len(data), max_sequences or len(data))
    results = _elbo(run, data, count, settings)
    protocols: dict[str, dict[str, Any]] = {}
    if run.plugin.metrics:
        drawn = run.draw(settings, None, None, run.run_dir.samples_dir / f"eval-{run.step:07d}")
        refs = run.codec.decode(data.tokens(torch.arange(count)))
        scores, protocols = _plugin_metrics(run, split, drawn.items, refs, drawn.labels, results)
        results.update(scores)
    drawing = settings.to_json()
    protocol = {
        "task": "generate",
        "process": run.config.diffusion.process,
        "split": split,
        "sequences": count,
        "samples": drawing.pop("n"),
        **drawing,
        "checkpoint_step": run.step,
        "fingerprint": run.spec.fingerprint,
        "metrics": protocols,
    }
    _write(run, results, protocol)
    return results


def evaluate_infill(run: Run, split: str, settings: SampleSettings, hide: float) -> dict[str, Any]:
    """Infilling: the first `settings.n` items of `split` with `round(hide · L)` positions of
    each hidden (a fixed draw from `settings.seed`), regenerated with the rest kept.

    Reports `infill/accuracy` (regenerated tokens equal to the hidden ones) and the plugin's
    metrics on the completed items against the originals; writes them to `metrics.json`.
    """
    if not 0 < hide <= 1:
        raise RunError(f"--hide {hide}: the hidden share must lie in (0, 1]")
    data = _split(run, split)
    count = min(len(data), settings.n)
    tokens = data.tokens(torch.arange(count))
    labels = data.labels(torch.arange(count)) if run.spec.num_classes else None
    seq_len = run.spec.seq_len
    per_item = max(1, round(hide * seq_len))
    generator = torch.Generator().manual_seed(settings.seed)
    hidden = torch.zeros(count, seq_len, dtype=torch.bool)
    for row in hidden:
        row[torch.randperm(seq_len, generator=generator)[:per_item]] = True
    out = run.run_dir.samples_dir / f"infill-{run.step:07d}"
    drawn = run.draw(replace(settings, n=count), labels, tokens.masked_fill(hidden, -1), out)
    accuracy = float((drawn.tokens[hidden] == tokens[hidden]).float().mean())
    results: dict[str, Any] = {"infill/accuracy": accuracy}
    protocols: dict[str, dict[str, Any]] = {}
    if run.plugin.metrics:
        refs = run.codec.decode(tokens)
        scores, protocols = _plugin_metrics(run, split, drawn.items, refs, drawn.labels, {})
        results.update(scores)
    drawing = settings.to_json()
    drawing.pop("n")
    protocol = {
        "task": "infill",
        "process": run.config.diffusion.process,
        "split": split,
        "items": count,
        "hidden_share": hide,
        "hidden_per_item": per_item,
        "hidden_positions": "uniform without replacement per item, torch.randperm(seed)",
        **drawing,
        "checkpoint_step": run.step,
        "fingerprint": run.spec.fingerprint,
        "metrics": protocols,
    }
    _write(run, results, protocol)
    return results


def _split(run: Run, split: str) -> TokenDataset:
    shards_dir = run.prepared.shards_dir
    if not (shards_dir / "index.json").is_file():
        raise ShardError(f"no token shards in {shards_dir}; run `lcmd prepare` first")
    index = read_index(shards_dir)
    check_compatible(index, run.spec)
    if split not in index["splits"]:
        raise RunError(
            f"split {split!r} is not in {shards_dir} (splits: {', '.join(index['splits'])})"
        )
    return TokenDataset(shards_dir, split)


def _plugin_metrics(
    run: Run,
    split: str,
    items: list[Any],
    refs: list[Any],
    labels: torch.Tensor | None,
    results: dict[str, Any],
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Every metric of the plugin on `items` against `refs`, and the protocols they record."""
    root = run.config.data.data_root
    dataset = run.prepared.dataset
    context = MetricContext(
        dataset=dataset,
        split=split,
        sample_labels=None if labels is None else labels.tolist(),
        load=functools.partial(dataset.load, data_root=Path(root).expanduser() if root else None),
        cache_dir=run.run_dir.path / "metric_cache",
        elbo_bits_per_token=results.get("elbo_bits_per_token"),
    )
    scores: dict[str, float] = {}
    protocols: dict[str, dict[str, Any]] = {}
    for name, metric in run.plugin.metrics.items():
        metric_context = replace(context, protocol={})
        values = metric.compute(items, refs, run.codec, metric_context)
        scores.update({f"{name}/{key}": float(value) for key, value in values.items()})
        if values and metric_context.protocol:
            protocols[name] = metric_context.protocol
    return scores, protocols


def _write(run: Run, results: dict[str, Any], protocol: dict[str, Any]) -> None:
    """`metrics.json`: this evaluation at the top, and the latest of each task under `tasks`."""
    path = run.run_dir.path / "metrics.json"
    tasks: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, AttributeError):
        earlier = json.loads(path.read_text()).get("tasks", {})
        tasks = {task: earlier[task] for task in TASKS if isinstance(earlier.get(task), dict)}
    record = {"metrics": results, "protocol": protocol}
    tasks[protocol["task"]] = record
    write_json_atomic(path, {**record, "tasks": tasks})


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
