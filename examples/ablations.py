"""Ablations of LCMD's ingredients with lcmd itself: train and evaluate each variant × seed.

    python examples/ablations.py --plugin image_vq --steps 2000 --seeds 0 1 --jobs 12 \\
        --out runs/ablations                     # trains, evaluates, writes results.json
    python examples/ablations.py --report runs/ablations/results.json --figures docs/experiments

The data are prepared once (`lcmd prepare`) and every run reuses the fitted codec and shards, so
variants differ only in what the overrides change. Each record in `results.json` holds the
variant, seed, overrides, the `lcmd eval` metrics and the collapse diagnostics over training.
`--report` prints the markdown table (mean ± half-range over seeds) and, when matplotlib is
installed, draws the diagnostics against the step.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import mean

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_cm": ["diffusion.cm_weight=0"],
    "no_drop": ["diffusion.drop_prob=0"],
    "drop_0.3": ["diffusion.drop_prob=0.3"],
    "shift_-2": ["diffusion.shift=-2"],
    "frozen_emb": ["model.freeze_embeddings=true"],
    "ce_only_l2": ["diffusion.loss=ce_only", "model.embed_norm=l2"],
}
DIAGNOSTICS = ("embed/mean_pairwise_dist", "embed/cov_trace", "embed/effective_rank", "acc_t0")


def lcmd(*args: str, log: Path) -> None:
    """Run the lcmd CLI; a failure stops with the end of its log."""
    with log.open("a") as out:
        done = subprocess.run(
            [sys.executable, "-m", "lcmd_core.cli", *args], stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode:
        raise RuntimeError(f"lcmd {' '.join(args[:3])} failed:\n{log.read_text()[-2000:]}")


def one_run(args: argparse.Namespace, data: Path, variant: str, seed: int) -> dict:
    """Train and evaluate one variant × seed; returns its record."""
    run = args.out / f"{variant}-seed{seed}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(data / "codec", run / "codec")
    sets = [*args.set, *VARIANTS[variant], f"train.seed={seed}", f"data.shards={data / 'shards'}"]
    flags = [f for s in sets for f in ("--set", s)]
    log = args.out / f"{variant}-seed{seed}.log"
    started = time.perf_counter()
    lcmd("train", "--plugin", args.plugin, "--out", str(run), "--max-steps", str(args.steps),
         "--no-progress", *flags, log=log)  # fmt: skip
    trained = time.perf_counter()
    lcmd("eval", str(run), "--json", "--no-progress", log=log)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    trace = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {
        "variant": variant,
        "seed": seed,
        "overrides": VARIANTS[variant],
        "steps": args.steps,
        "train_s": round(trained - started, 1),
        "eval_s": round(time.perf_counter() - trained, 1),
        "metrics": metrics,
        "diagnostics": [{k: r[k] for k in ("step", *DIAGNOSTICS) if k in r} for r in trace],
    }


def run_all(args: argparse.Namespace) -> list[dict]:
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    lcmd("prepare", "--plugin", args.plugin, "--out", str(data),
         *[f for s in args.set for f in ("--set", s)], log=args.out / "prepare.log")  # fmt: skip
    jobs = [(v, s) for v in args.variants for s in args.seeds]
    results: list[dict] = []
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, args, data, v, s) for v, s in jobs]
        for future in futures:
            results.append(future.result())
            (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
            print(summary_line(results[-1]), flush=True)
    return results


def summary_line(record: dict) -> str:
    m = record["metrics"]
    return (
        f"{record['variant']:>11} seed {record['seed']}: ELBO {m['elbo_bits_per_token']:.3f}  "
        + "  ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in m.items() if "/" in k)
    )


def table(results: list[dict]) -> str:
    """Markdown table: per variant, mean ± half-range over seeds of every metric and the final
    collapse diagnostics."""
    variants = list(dict.fromkeys(r["variant"] for r in results))
    keys = list(dict.fromkeys(k for r in results for k in r["metrics"]))
    finals = list(DIAGNOSTICS)
    head = [
        "variant",
        "seeds",
        *[k.split("/")[-1] for k in keys],
        *[k.split("/")[-1] for k in finals],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        cells = [variant, str(len(rows))]
        columns = [[r["metrics"].get(k) for r in rows] for k in keys]
        columns += [[r["diagnostics"][-1].get(k) for r in rows] for k in finals]
        for values in columns:
            values = [v for v in values if v is not None]
            if not values:
                cells.append("–")
                continue
            spread = (max(values) - min(values)) / 2
            cells.append(
                f"{mean(values):.3g} ± {spread:.2g}" if len(values) > 1 else f"{values[0]:.3g}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figures(results: list[dict], directory: Path) -> list[Path]:
    """Diagnostics against the training step, one panel each, a line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(DIAGNOSTICS), figsize=(4.2 * len(DIAGNOSTICS), 3.4))
    variants = list(dict.fromkeys(r["variant"] for r in results))
    colours = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    for ax, key in zip(axes, DIAGNOSTICS, strict=True):
        for r in results:
            points = [(d["step"], d[key]) for d in r["diagnostics"] if key in d]
            if points:
                steps, values = zip(*points, strict=True)
                label = r["variant"] if r["seed"] == results[0]["seed"] else None
                ax.plot(steps, values, color=colours[r["variant"]], lw=1, label=label)
        ax.set_title(key.split("/")[-1].replace("_", " "))
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = directory / "diagnostics.png"
    fig.savefig(path, dpi=110)
    return [path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default="image_vq")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--report", type=Path, help="results.json to summarise instead of running")
    parser.add_argument("--figures", type=Path, help="with --report: directory for the PNGs")
    args = parser.parse_args()
    if args.report:
        results = json.loads(args.report.read_text())
        print(table(results))
        if args.figures:
            print("\n".join(str(p) for p in figures(results, args.figures)))
        return
    results = run_all(args)
    print(table(results))


if __name__ == "__main__":
    main()
