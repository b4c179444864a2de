"""Ablations of LCMD's ingredients with lcmd itself: train and evaluate each variant × seed.

    python examples/ablations.py --plugin image_vq --steps 2000 --seeds 0 1 --jobs 12 \\
        --out runs/ablations                     # trains, evaluates, writes results.json
    python examples/ablations.py --report runs/ablations/results.json --figures docs/experiments
    python examples/ablations.py --sampling runs/demo --guidance 1 2 --out runs/sampling
    python examples/ablations.py --report runs/sampling/sampling.json --figures docs/experiments

The data are prepared once (`lcmd prepare`) and every run reuses the fitted codec and shards, so
variants differ only in what the overrides change. Runs already recorded in `OUT/results.json`
are kept and not trained again, so a stopped sweep resumes. Each
record in `results.json` holds the variant, seed, overrides, the `lcmd eval` metrics and the
collapse diagnostics over training.
`--report` prints the markdown table (mean ± half-range over seeds) and, when matplotlib is
installed, draws the diagnostics against the step and the metrics against m_RD and the shift.
`--sampling` evaluates trained runs at every number of sampling steps (5 … 200), guidance
weight and x0 temperature, once per seed, into `sampling.json`; its report draws the metrics
against the steps.
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

from lcmd_core.config import PAPER_OBJECTIVE
from lcmd_core.embedding import distinguishable_log_snr
from lcmd_core.schedule import ShiftedCosineSchedule

# Every variant measured before the CE-at-t defaults carries the paper's objective, so its
# command still reproduces its row; `paper` is what `full` was then.
PAPER = [
    f"{sec}.{key}={value}" for sec, opts in PAPER_OBJECTIVE.items() for key, value in opts.items()
]
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "paper": [*PAPER],
    "no_cm": [*PAPER, "diffusion.cm_weight=0"],
    "no_drop": [*PAPER, "diffusion.drop_prob=0"],
    "drop_0.2": [*PAPER, "diffusion.drop_prob=0.2"],
    "drop_0.3": [*PAPER, "diffusion.drop_prob=0.3"],
    "drop_0.5": [*PAPER, "diffusion.drop_prob=0.5"],
    "shift_-1": [*PAPER, "diffusion.shift=-1"],
    "shift_-2": [*PAPER, "diffusion.shift=-2"],
    "shift_-4": [*PAPER, "diffusion.shift=-4"],
    "frozen_emb": [*PAPER, "model.freeze_embeddings=true"],
    "ce_only_l2": [*PAPER, "diffusion.loss=ce_only", "model.embed_norm=l2"],
    "shift_+2": [*PAPER, "diffusion.shift=2"],
    "shift_+4": [*PAPER, "diffusion.shift=4"],
    "scale_4": [*PAPER, "model.embed_scale=4"],
    "scale_4_shift_-2.8": [*PAPER, "model.embed_scale=4", "diffusion.shift=-2.77"],
    "ce_1": [*PAPER, "diffusion.ce_weight=1"],
    "ce_4": [*PAPER, "diffusion.ce_weight=4"],
    "ce_4_no_cm": [*PAPER, "diffusion.ce_weight=4", "diffusion.cm_weight=0"],
    "ce_4_ddim": [*PAPER, "diffusion.ce_weight=4", "diffusion.cm_target=ddim"],
    "ce_4_delta": [*PAPER, "diffusion.ce_weight=4", "diffusion.cm_pairs=delta"],
    "ce_4_no_cm_flops": [*PAPER, "diffusion.ce_weight=4", "diffusion.cm_weight=0"],
    "ce_4_ema_target": [*PAPER, "diffusion.ce_weight=4", "diffusion.cm_target_weights=ema"],
    "ce_4_l2_scale_2": [
        *PAPER,
        "diffusion.ce_weight=4",
        "model.embed_norm=l2",
        "model.embed_scale=2",
    ],
    "ce_1_importance": [*PAPER, "diffusion.ce_weight=1", "diffusion.time_sampling=importance"],
    "shift_+2_ce_4": [*PAPER, "diffusion.shift=2", "diffusion.ce_weight=4"],
    "shift_+2_ce_4_importance": [
        *PAPER,
        "diffusion.shift=2",
        "diffusion.ce_weight=4",
        "diffusion.time_sampling=importance",
    ],
    "gate_5": [*PAPER, "model.output_prior_logsnr=5"],
    "gate_5_ce": [*PAPER, "model.output_prior_logsnr=5", "diffusion.ce_weight=1"],
    "importance": [*PAPER, "diffusion.time_sampling=importance"],
    "gate_5_importance": [
        *PAPER,
        "model.output_prior_logsnr=5",
        "diffusion.time_sampling=importance",
    ],
    "ce_only_l2_warp": [
        "diffusion.loss=ce_only",
        "model.embed_norm=l2",
        "diffusion.time_sampling=warp",
    ],
    "ce_only_l2s_warp": [
        "diffusion.loss=ce_only",
        "model.embed_norm=l2_scaled",
        "diffusion.time_sampling=warp",
    ],
    "ce_cm_l2_warp": [
        "diffusion.w_diff=0",
        "diffusion.w_prior=0",
        "diffusion.ce_weight=1",
        "model.embed_norm=l2",
        "diffusion.time_sampling=warp",
    ],
    "ce_cm_l2": [
        "diffusion.w_diff=0",
        "diffusion.w_prior=0",
        "diffusion.ce_weight=1",
        "model.embed_norm=l2",
        "diffusion.time_sampling=uniform",
    ],
    "ce_cm_warp": [
        "diffusion.w_diff=0",
        "diffusion.w_prior=0",
        "diffusion.ce_weight=1",
        "model.embed_norm=none",
        "diffusion.time_sampling=warp",
    ],
    "stagger_1": ["diffusion.stagger=1"],
    "stagger_4": ["diffusion.stagger=4"],
    "stagger_16": ["diffusion.stagger=16"],
    "ce_cm_l2_warp_gate_5": [
        "diffusion.w_diff=0",
        "diffusion.w_prior=0",
        "diffusion.ce_weight=1",
        "model.embed_norm=l2",
        "diffusion.time_sampling=warp",
        "model.output_prior_logsnr=5",
    ],
    "masked": ["diffusion.process=masked"],
    "masked_flops": ["diffusion.process=masked"],
}
# Variants trained for as many network FLOPs as `full` (more steps, since a masked step is
# cheaper); the others train for --steps.
EQUAL_FLOPS = {"masked_flops", "ce_4_no_cm_flops"}
# The full model's m_RD and shift are the presets' (0.1, 0); these variants sweep around them.
SWEEPS = {
    "drop_prob": {"full": 0.1, "no_drop": 0.0, "drop_0.2": 0.2, "drop_0.3": 0.3, "drop_0.5": 0.5},
    "shift": {
        "full": 0.0,
        "shift_-1": -1.0,
        "shift_-2": -2.0,
        "shift_-4": -4.0,
        "shift_+2": 2.0,
        "shift_+4": 4.0,
    },
}
SAMPLING_STEPS = (5, 10, 25, 50, 100, 200)
PLOTTED = (
    "elbo_bits_per_token",
    "classifier/fid",
    "classifier/class_accuracy",
    "quality/word_in_vocab",
    "quality/ngram_ppl",
)
DIAGNOSTICS = (
    "embed/mean_pairwise_dist",
    "embed/cov_trace",
    "embed/effective_rank",
    "embed/mean_nn_dist",
    "acc_t0",
)


def lcmd(*args: str, log: Path) -> None:
    """Run the lcmd CLI; a failure stops with the end of its log."""
    with log.open("a") as out:
        done = subprocess.run(
            [sys.executable, "-m", "lcmd_core.cli", *args], stdout=out, stderr=subprocess.STDOUT
        )
    if done.returncode:
        raise RuntimeError(f"lcmd {' '.join(args[:3])} failed:\n{log.read_text()[-2000:]}")


def plugin_flags(args: argparse.Namespace) -> list[str]:
    """`--plugin` and, when given, `--preset` for `lcmd prepare` and `lcmd train`."""
    return ["--plugin", args.plugin, *(["--preset", args.preset] if args.preset else [])]


def network_passes(config: dict) -> float:
    """Network passes per training sequence of a resolved config.json, counting a backward pass
    as two forwards: what a step costs in FLOPs up to the network's size (the embedding-table
    products of the readout are left out)."""
    d, m = config["diffusion"], config["model"]
    if d["process"] == "masked":  # one pass with gradients, plus the self-conditioning draft
        return 3.0 + (1.0 if m["self_condition"] else 0.0)
    rows = 1.0 + d["rec_fraction"]  # the batch plus its copies at t = 0
    passes = 3.0 * rows + (rows if m["self_condition"] else 0.0)
    if d["loss"] == "lcmd" and d["cm_weight"] > 0:
        passes += 1.0  # the CM target, no gradients
    return passes


def resolved_config(args: argparse.Namespace, data: Path, sets: list[str], name: str) -> dict:
    """A variant's resolved config.json, from a one-step run in a scratch directory."""
    scratch = args.out / f".config-{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(data / "codec", scratch / "codec")
    # one preview sample of one step: the run ends with a preview, and the mnist preset's is 500
    quick = [*sets, "sample.num_samples=1", "sample.steps=1"]
    flags = [f for s in quick for f in ("--set", s)]
    lcmd("train", *plugin_flags(args), "--out", str(scratch), "--max-steps", "1",
         "--no-progress", *flags, log=args.out / f".config-{name}.log")  # fmt: skip
    config = json.loads((scratch / "config.json").read_text())
    shutil.rmtree(scratch)
    return config


def one_run(args: argparse.Namespace, data: Path, variant: str, seed: int) -> dict:
    """Train and evaluate one variant × seed; returns its record."""
    run = args.out / f"{variant}-seed{seed}"
    sets = [*args.set, *VARIANTS[variant], f"train.seed={seed}", f"data.shards={data / 'shards'}"]
    config = resolved_config(args, data, sets, f"{variant}-seed{seed}")
    passes = network_passes(config)
    steps = args.steps
    if variant in EQUAL_FLOPS:
        base = [*args.set, f"train.seed={seed}", f"data.shards={data / 'shards'}"]
        steps = round(
            args.steps * network_passes(resolved_config(args, data, base, "full")) / passes
        )
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(data / "codec", run / "codec")
    flags = [f for s in sets for f in ("--set", s)]
    log = args.out / f"{variant}-seed{seed}.log"
    started = time.perf_counter()
    lcmd("train", *plugin_flags(args), "--out", str(run), "--max-steps", str(steps),
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
        "train_steps": steps,
        "shift": config["diffusion"]["shift"],
        # network forward-pass equivalents over training, per sequence of the global batch
        "train_passes": round(steps * config["train"]["global_batch_size"] * passes),
        "train_s": round(trained - started, 1),
        "eval_s": round(time.perf_counter() - trained, 1),
        "metrics": metrics,
        "diagnostics": [{k: r[k] for k in ("step", *DIAGNOSTICS) if k in r} for r in trace],
    }


def run_all(args: argparse.Namespace) -> list[dict]:
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    lcmd("prepare", *plugin_flags(args), "--out", str(data),
         *[f for s in args.set for f in ("--set", s)], log=args.out / "prepare.log")  # fmt: skip
    # Runs already in results.json are kept, not repeated: a stopped sweep resumes.
    found = args.out / "results.json"
    results = json.loads(found.read_text()) if found.is_file() else []
    lengths = {r["steps"] for r in results} - {args.steps}
    if lengths:
        raise SystemExit(
            f"ablations.py: {found} holds runs of {sorted(lengths)} steps, not {args.steps}; "
            "choose another --out"
        )
    done = {(r["variant"], r["seed"]) for r in results}
    # Seed-major: every variant's first seed finishes before any second seed starts.
    jobs = [(v, s) for s in args.seeds for v in args.variants if (v, s) not in done]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, args, data, v, s) for v, s in jobs]
        for future in futures:
            results.append(future.result())
            (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
            print(summary_line(results[-1]), flush=True)
    return results


def sweep_sampling(args: argparse.Namespace) -> list[dict]:
    """`lcmd eval` of trained runs at every sampling step count × guidance weight × x0
    temperature × seed."""
    records: list[dict] = []
    grid = [
        (g, x0, n, s)
        for g in args.guidance
        for x0 in args.x0_temperature
        for n in args.sampling_steps
        for s in args.seeds
    ]
    for run in args.sampling:
        for guidance, x0, steps, seed in grid:
            flags = ["--steps", str(steps), "--guidance", str(guidance), "--seed", str(seed)]
            if x0 is not None:
                flags += ["--x0-temperature", str(x0)]
            lcmd("eval", str(run), "--json", "--no-progress", *flags, log=run / "sweep.log")
            written = json.loads((run / "metrics.json").read_text())
            metrics, x0 = written["metrics"], written["protocol"].get("x0_temperature")
            records.append({"run": run.name, "steps": steps, "guidance": guidance,
                            "x0_temperature": x0, "seed": seed, "metrics": metrics})  # fmt: skip
            print(f"{run.name} steps {steps} guidance {guidance} x0 {x0} seed {seed}: {metrics}")
    (args.out / "sampling.json").write_text(json.dumps(records, indent=1) + "\n")
    return records


def spread(found: list[float]) -> tuple[float, float]:
    """Mean and half-range of a list of values."""
    return mean(found), (max(found) - min(found)) / 2


def cell(found: list[float]) -> str:
    """A table cell: mean ± half-range, the value alone for one, a dash for none."""
    if not found:
        return "–"
    m, half = spread(found)
    return f"{m:.3g} ± {half:.2g}" if len(found) > 1 else f"{m:.3g}"


def values(records: list[dict], key: str, **match: object) -> list[float]:
    """Metric `key` of the records whose fields equal `match`."""
    return [r["metrics"][key] for r in records if all(r[k] == v for k, v in match.items())]


def with_x0_temperature(records: list[dict]) -> list[dict]:
    """Sampling records with their x0 temperature: 1 for those written before it existed (a
    masked run's stays None)."""
    return [{"x0_temperature": 1.0, **r} for r in records]


def settings_of(records: list[dict]) -> list[tuple[float, float | None]]:
    """The (guidance, x0 temperature) pairs of sampling records, in order of appearance."""
    return list(dict.fromkeys((r["guidance"], r["x0_temperature"]) for r in records))


def run_variant(record: dict) -> str:
    """The variant of a sampling record's run (`masked-seed1` → `masked`)."""
    return record["run"].rsplit("-seed", 1)[0]


def sampling_table(records: list[dict]) -> str:
    """Markdown table of a sampling sweep: mean ± half-range over runs and sampling seeds per
    steps × guidance × x0 temperature, and per variant when the runs are of several."""
    records = with_x0_temperature(records)
    keys = list(dict.fromkeys(k for r in records for k in r["metrics"] if "/" in k))
    variants = list(dict.fromkeys(map(run_variant, records)))
    lead = ["variant"] if len(variants) > 1 else []
    lines = [
        "| "
        + " | ".join(
            [*lead, "steps", "guidance", "x0 T", "draws", *(k.split("/")[-1] for k in keys)]
        )
        + " |",
        "|" + "---|" * (len(lead) + 4 + len(keys)),
    ]
    for variant in variants:
        mine = [r for r in records if run_variant(r) == variant]
        for guidance, x0 in settings_of(mine):
            for steps in dict.fromkeys(r["steps"] for r in mine):
                match = {"steps": steps, "guidance": guidance, "x0_temperature": x0}
                found = values(mine, keys[0], **match) if keys else []
                if not found:
                    continue
                x0_text = "–" if x0 is None else f"{x0:g}"
                row = [*([variant] if lead else []), str(steps), f"{guidance:g}", x0_text]
                row += [str(len(found)), *(cell(values(mine, key, **match)) for key in keys)]
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


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
        "train steps",
        *[k.split("/")[-1] for k in keys],
        *[k.split("/")[-1] for k in finals],
        "λ at d′ = 2",
        "t at lower noise",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in variants:
        rows = [r for r in results if r["variant"] == variant]
        cells = [
            variant,
            str(len(rows)),
            "/".join(sorted({str(r["train_steps"]) for r in rows if "train_steps" in r})) or "–",
        ]
        columns = [[r["metrics"].get(k) for r in rows] for k in keys]
        columns += [[r["diagnostics"][-1].get(k) for r in rows] for k in finals]
        columns += list(map(list, zip(*(distinguishable(r) for r in rows), strict=True)))
        for column in columns:
            found = [v for v in column if v is not None]
            cells.append(cell(found))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def distinguishable(record: dict) -> tuple[float | None, float | None]:
    """The log-SNR at which a row and its nearest neighbour are two noise standard deviations
    apart (d′ = e^{λ/2} d_nn = 2, from the last logged mean nearest-neighbour distance), and the
    share of training times t at lower noise than that (the default log-SNR range)."""
    nn = record["diagnostics"][-1].get("embed/mean_nn_dist") if record["diagnostics"] else None
    if not nn or "shift" not in record:
        return None, None
    lam = distinguishable_log_snr(nn)
    return lam, float(ShiftedCosineSchedule(record["shift"]).t_from_log_snr(lam))


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise SystemExit(
            "ablations.py: --figures needs matplotlib: pip install matplotlib"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _metric_keys(records: list[dict]) -> list[str]:
    present = {k for r in records for k in r["metrics"]}
    return [k for k in PLOTTED if k in present]


def figures(results: list[dict], directory: Path) -> list[Path]:
    """Diagnostics against the training step (one panel each, a line per run) and, where the
    results hold m_RD or shift variants, the metrics against those values."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    paths = [_diagnostics_figure(plt, results, directory)]
    done = {r["variant"] for r in results}
    swept = {name: vs for name, vs in SWEEPS.items() if len(done & set(vs)) > 1}
    if swept:
        keys = _metric_keys(results)
        fig, axes = plt.subplots(
            len(swept), len(keys), figsize=(3.6 * len(keys), 3.0 * len(swept)), squeeze=False
        )
        for row, (name, variants) in zip(axes, swept.items(), strict=True):
            for ax, key in zip(row, keys, strict=True):
                points = []
                for variant, x in variants.items():
                    found = values(results, key, variant=variant)
                    if found:
                        points.append((x, *spread(found)))
                points.sort()
                xs, ys, halves = zip(*points, strict=True)
                ax.errorbar(xs, ys, yerr=halves, marker="o", capsize=3)
                ax.set_xlabel(name)
                ax.set_title(key.split("/")[-1].replace("_", " "))
        fig.tight_layout()
        paths.append(directory / "sweeps.png")
        fig.savefig(paths[-1], dpi=110)
    return paths


def sampling_figure(records: list[dict], directory: Path) -> Path:
    """Sample metrics against the number of sampling steps, a line per guidance weight, x0
    temperature and variant (the ELBO does not depend on the sampler and is left out)."""
    records = with_x0_temperature(records)
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    keys = [k for k in _metric_keys(records) if "/" in k]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.8 * len(keys), 3.2), squeeze=False)
    variants = list(dict.fromkeys(map(run_variant, records)))
    for ax, key in zip(axes[0], keys, strict=True):
        for variant in variants:
            mine = [r for r in records if run_variant(r) == variant]
            for guidance, x0 in settings_of(mine):
                match = {"guidance": guidance, "x0_temperature": x0}
                steps = sorted({r["steps"] for r in mine if values([r], key, **match)})
                stats = [spread(values(mine, key, steps=n, **match)) for n in steps]
                label = f"guidance {guidance:g}" + (f", x0 T {x0:g}" if x0 not in (1, None) else "")
                label += f", {variant}" if len(variants) > 1 else ""
                ax.errorbar(steps, [m for m, _ in stats], yerr=[h for _, h in stats],
                            marker="o", capsize=3, label=label)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.set_title(key.split("/")[-1].replace("_", " "))
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = directory / "sampling.png"
    fig.savefig(path, dpi=110)
    return path


def _diagnostics_figure(plt, results: list[dict], directory: Path) -> Path:
    fig, axes = plt.subplots(1, len(DIAGNOSTICS), figsize=(4.2 * len(DIAGNOSTICS), 3.4))
    variants = list(dict.fromkeys(r["variant"] for r in results))
    # tab10, then dashed: eleven variants would otherwise share a colour.
    styles = {v: (plt.cm.tab10(i % 10), "-" if i < 10 else "--") for i, v in enumerate(variants)}
    for ax, key in zip(axes, DIAGNOSTICS, strict=True):
        for r in results:
            points = [(d["step"], d[key]) for d in r["diagnostics"] if key in d]
            if points:
                steps, ys = zip(*points, strict=True)
                label = r["variant"] if r["seed"] == results[0]["seed"] else None
                colour, line = styles[r["variant"]]
                ax.plot(steps, ys, color=colour, linestyle=line, lw=1, label=label)
        ax.set_title(key.split("/")[-1].replace("_", " "))
        ax.set_xlabel("step")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = directory / "diagnostics.png"
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", default="image_vq")
    parser.add_argument("--preset", help="plugin preset (default: the data set's, as lcmd train)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"))
    parser.add_argument(
        "--sampling", type=Path, nargs="+", help="trained runs to evaluate at every sampling "
        "step count (--sampling-steps) and guidance weight (--guidance) instead of training"
    )  # fmt: skip
    parser.add_argument("--sampling-steps", type=int, nargs="+", default=list(SAMPLING_STEPS))
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    parser.add_argument(
        "--x0-temperature", type=float, nargs="+", default=[None], help="default: the run's"
    )
    parser.add_argument("--report", type=Path, help="results.json or sampling.json to summarise")
    parser.add_argument("--figures", type=Path, help="with --report: directory for the PNGs")
    args = parser.parse_args()
    if args.report:
        records = json.loads(args.report.read_text())
        is_sampling = bool(records) and "guidance" in records[0]
        print(sampling_table(records) if is_sampling else table(records))
        if args.figures:
            made = (
                [sampling_figure(records, args.figures)]
                if is_sampling
                else figures(records, args.figures)
            )
            print("\n".join(str(p) for p in made))
        return
    if args.sampling:
        args.out.mkdir(parents=True, exist_ok=True)
        print(sampling_table(sweep_sampling(args)))
        return
    results = run_all(args)
    print(table(results))


if __name__ == "__main__":
    main()
