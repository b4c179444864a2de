"""`lcmd report RUN`: PNG plots of a run's training records and a one-page HTML report.

The plots (against the step): the loss terms, the training ELBO estimate with the held-out one
of `metrics.json`, the embedding-collapse diagnostics, the learning rate with the gradient
norm, and the throughput. `index.html` shows them with the latest sample draw and the
evaluation's metrics. Needs matplotlib (`pip install 'lcmd-core[report]'`).
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .run_dir import RunDir, RunError
from .tracking import read_records

NOT_LOSS = {"step", "lr", "grad_norm", "tokens_per_s", "bits_per_token"}
SAMPLE_LINES = 40


def write_report(run_path: str | Path, out: str | Path | None = None) -> Path:
    """Write the plots and `index.html` of the run at `run_path` into `out` (default RUN/report);
    returns the HTML file."""
    run = RunDir(run_path)
    if not run.metrics_path.is_file():
        raise RunError(f"{run.path} has no metrics.jsonl; train it first (lcmd train)")
    records, _ = read_records(run.metrics_path)
    if not records:
        raise RunError(f"{run.metrics_path} holds no training records yet")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise RunError("lcmd report needs matplotlib: pip install 'lcmd-core[report]'") from None
    out_dir = Path(out) if out is not None else run.path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    evaluation = _read_json(run.path / "metrics.json")
    keys = sorted({k for r in records for k, v in r.items() if isinstance(v, int | float)})
    losses = [k for k in keys if k not in NOT_LOSS and not k.startswith(("embed/", "acc"))]
    collapse = [k for k in keys if k.startswith("embed/")]
    plots = {
        "loss_terms.png": ("loss terms", losses, True),
        "accuracy.png": ("accuracy", [k for k in keys if k.startswith("acc")], False),
        "elbo.png": ("ELBO estimate (bits/token)", ["bits_per_token"], False),
        "collapse.png": ("embedding diagnostics", collapse, True),
        "learning_rate.png": ("learning rate and gradient norm", ["lr", "grad_norm"], True),
        "throughput.png": ("throughput (tokens/s)", ["tokens_per_s"], False),
    }
    written = []
    for name, (title, series, log_scale) in plots.items():
        curves = {
            key: [(r["step"], r[key]) for r in records if isinstance(r.get(key), int | float)]
            for key in series
        }
        curves = {key: points for key, points in curves.items() if points}
        if not curves:
            continue
        figure, axes = pyplot.subplots(figsize=(7, 3.6), dpi=100)
        values = []
        for key, points in curves.items():
            axes.plot(*zip(*points, strict=True), label=key, linewidth=1.2)
            values += [value for _, value in points]
        if name == "elbo.png" and evaluation:
            _mark_held_out(axes, evaluation)
        if log_scale and min(values) > 0:
            axes.set_yscale("log")
        axes.set(title=title, xlabel="step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
        figure.tight_layout()
        figure.savefig(out_dir / name)
        pyplot.close(figure)
        written.append(name)
    page = out_dir / "index.html"
    page.write_text(_page(run, records, written, evaluation, out_dir), encoding="utf-8")
    return page


def _mark_held_out(axes: Any, evaluation: dict[str, Any]) -> None:
    """The held-out ELBO of the latest generation evaluation, at its checkpoint step."""
    record = evaluation.get("tasks", {}).get("generate", evaluation)
    value = record.get("metrics", {}).get("elbo_bits_per_token")
    step = record.get("protocol", {}).get("checkpoint_step")
    if isinstance(value, int | float) and isinstance(step, int):
        split = record["protocol"].get("split", "held-out")
        axes.scatter([step], [value], color="black", zorder=3, label=f"{split} ELBO")


def _page(
    run: RunDir,
    records: list[dict[str, Any]],
    plots: Sequence[str],
    evaluation: dict[str, Any] | None,
    out_dir: Path,
) -> str:
    config = _read_json(run.config_path) or {}
    data, diffusion = config.get("data", {}), config.get("diffusion", {})
    last = records[-1]
    summary = (
        f"{data.get('plugin', '?')}/{data.get('dataset', '?')}, "
        f"{diffusion.get('process', 'continuous')} process, step {last['step']}, "
        f"loss {last.get('total', float('nan')):.4g}"
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>lcmd report: {html.escape(run.path.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "img{max-width:100%}td,th{padding:2px 10px;text-align:left}"
        "pre{background:#f4f4f4;padding:8px;overflow:auto}</style></head><body>",
        f"<h1>{html.escape(str(run.path))}</h1><p id='summary'>{html.escape(summary)}</p>",
        "<h2>Training</h2>",
        *(f"<img src='{name}' alt='{name}'>" for name in plots),
        "<h2>Latest samples</h2>",
        _latest_samples(run, out_dir),
        "<h2>Evaluation</h2>",
        _metrics_table(evaluation),
        "</body></html>",
    ]
    return "\n".join(parts)


def _latest_samples(run: RunDir, out_dir: Path) -> str:
    """The newest draw in RUN/samples: its images (copied beside the page), else its text."""
    draws = [d for d in run.samples_dir.glob("*") if (d / "sample.json").is_file()]
    if not draws:
        return "<p>no samples yet</p>"
    newest = max(draws, key=lambda d: (d / "sample.json").stat().st_mtime)
    shown = [f"<p>{html.escape(newest.name)}</p>"]
    pictures = sorted(newest.glob("*.png"))
    images = [p for p in pictures if "grid" in p.stem] or pictures[:4]  # a grid says it all
    for image in images:
        copy = out_dir / f"samples-{image.name}"
        shutil.copyfile(image, copy)
        shown.append(f"<img src='{copy.name}' alt='{html.escape(image.name)}'>")
    if not images:
        texts = sorted(newest.glob("*.txt")) + sorted(newest.glob("*.smi"))
        lines = [line for path in texts for line in path.read_text(errors="replace").splitlines()]
        shown.append(f"<pre>{html.escape(chr(10).join(lines[:SAMPLE_LINES]))}</pre>")
    return "\n".join(shown)


def _metrics_table(evaluation: dict[str, Any] | None) -> str:
    if not evaluation or not isinstance(evaluation.get("metrics"), dict):
        return "<p>not evaluated yet (lcmd eval RUN)</p>"
    protocol = evaluation.get("protocol", {})
    rows = [
        f"<tr><td>{html.escape(str(k))}</td><td>{_number(v)}</td></tr>"
        for k, v in evaluation["metrics"].items()
    ]
    described = ", ".join(
        f"{k} {protocol[k]}" for k in ("task", "split", "samples", "steps") if k in protocol
    )
    return (
        f"<p>{html.escape(described)}</p><table id='metrics'><tr><th>metric</th>"
        f"<th>value</th></tr>{''.join(rows)}</table>"
    )


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
