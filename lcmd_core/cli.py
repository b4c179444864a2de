"""The `lcmd` command line: plugins, prepare, train, sample, eval.

Every user error (bad flags, config, plugin names, missing data or runs, broken checkpoints) ends
with exit code 2 and one line `lcmd: <message>` on stderr; a bug keeps its traceback. Torch loads
only for the commands that need it, so `lcmd plugins` and `--help` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import math
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lcmd_core.config import (
    MAX_SAMPLE_STEPS,
    MAX_SAMPLES,
    MAX_STEPS,
    ConfigError,
    RunConfig,
    apply_overrides,
    deep_merge,
    load_config_file,
    merge_config,
    parse_override,
)
from lcmd_core.plugins import Plugin, PluginError, collect_plugins, get_plugin, get_plugin_manager
from lcmd_core.run_dir import RunError

if TYPE_CHECKING:
    import pluggy

    from lcmd_core.sampling import Run

DATA_ROOT_ENV = "LCMD_DATA_ROOT"

Handler = Callable[[argparse.Namespace, "pluggy.PluginManager | None"], int]


class CLIError(ValueError):
    """Bad command-line input; the message is for the user."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors become one-line CLIErrors, reported by `main`."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see `{self.prog} --help`)")


_TORCH_ERRORS = {
    "lcmd_core.shards": "ShardError",
    "lcmd_core.checkpoint": "CheckpointError",
}


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions whose message is for the user.

    Those of torch-backed modules count once their module is loaded (none can be raised before),
    so a usage error or `lcmd plugins` never pays for importing torch.
    """
    loaded = [
        getattr(sys.modules[mod], name) for mod, name in _TORCH_ERRORS.items() if mod in sys.modules
    ]
    return (CLIError, ConfigError, PluginError, RunError, FileNotFoundError, *loaded)


def _message(err: Exception) -> str:
    """`err` as one line."""
    if isinstance(err, FileNotFoundError) and err.filename is not None:
        return f"{err.filename}: no such file or directory"
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None, *, pm: pluggy.PluginManager | None = None) -> int:
    """Run `lcmd` with `argv` (default: `sys.argv[1:]`); returns the exit code.

    `pm` replaces the installed plugins (tests register plugin objects on it).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv, namespace=argparse.Namespace(argv=argv))
        handler: Handler = args.handler
        return handler(args, pm)
    except KeyboardInterrupt:
        print("lcmd: interrupted", file=sys.stderr)
        return 130
    # Evaluated when an exception arrives, so it sees the modules the command has loaded.
    except _user_errors() as err:
        print(f"lcmd: {_message(err)}", file=sys.stderr)
        return 2


def _positive_int(text: str, limit: int = MAX_STEPS) -> int:
    """argparse type: an integer from 1 to `limit`."""
    try:
        value = int(text) if len(text) < 20 else 0
    except ValueError:
        value = 0
    if not 1 <= value <= limit:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, got {text[:40]!r} (at most {limit:,})"
        )
    return value


def _samples(text: str) -> int:
    return _positive_int(text, MAX_SAMPLES)


def _sample_steps(text: str) -> int:
    return _positive_int(text, MAX_SAMPLE_STEPS)


def _seed(text: str) -> int:
    """argparse type: a seed torch takes, in [-2⁶³, 2⁶⁴)."""
    try:
        value = int(text) if len(text) < 25 else 2**64
    except ValueError:
        value = 2**64
    if not -(2**63) <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected a seed in [-2**63, 2**64), got {text[:40]!r}")
    return value


def _non_negative_float(text: str) -> float:
    """argparse type: a finite float of at least 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The `lcmd` argument parser and its commands."""
    parser = _Parser(
        prog="lcmd",
        description="Latent consistency-matching diffusion over discrete tokens.",
        epilog="Run `lcmd COMMAND --help` for a command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    plugins = commands.add_parser(
        "plugins",
        help="list installed plugins",
        description="List the installed plugins with their codecs, data sets, presets, metrics.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.set_defaults(handler=_plugins)

    prepare = commands.add_parser(
        "prepare",
        help="fit the codec and encode a data set to token shards",
        description="Fit the codec if it needs training, then encode every split of the data "
        "set to token shards in the run directory.",
    )
    _add_run_options(prepare)
    prepare.add_argument(
        "--codec", help="codec to use (default: the data set's default codec); sets data.codec"
    )
    prepare.set_defaults(handler=_prepare, command="prepare")

    train = commands.add_parser(
        "train",
        help="train a model (preparing the data first if needed)",
        description="Prepare the data if needed, train, checkpoint, and write a sample preview.",
    )
    _add_run_options(train)
    train.add_argument(
        "--max-steps",
        type=_positive_int,
        metavar="N",
        help="total optimizer steps of the run; sets train.max_steps",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in the run directory (required when it has any)",
    )
    train.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        metavar="N",
        help="data-parallel processes on this machine (one per GPU); starts torchrun for you",
    )
    _add_no_progress(train)
    train.set_defaults(handler=_train, command="train")

    sample = commands.add_parser(
        "sample",
        help="generate samples from a trained run",
        description="Generate samples from a run's latest checkpoint; writes the decoded files "
        "and tokens.safetensors.",
    )
    sample.add_argument("run", metavar="RUN", help="run directory written by `lcmd train`")
    sample.add_argument(
        "--n",
        type=_samples,
        metavar="N",
        help="number of samples (default: sample.num_samples)",
    )
    sample.add_argument(
        "--steps", type=_sample_steps, metavar="S", help="sampling steps (default: sample.steps)"
    )
    sample.add_argument(
        "--sampler",
        choices=["ancestral", "ddim"],
        help="update rule (default: sample.sampler); masked runs unmask by ancestral only",
    )
    sample.add_argument(
        "--guidance",
        type=_non_negative_float,
        metavar="W",
        help="classifier-free guidance weight; 1 is none (default: sample.guidance)",
    )
    sample.add_argument(
        "--label",
        metavar="L",
        help="class to generate, by name or index (default: cycle through the classes)",
    )
    sample.add_argument(
        "--temperature",
        type=_non_negative_float,
        metavar="T",
        help="readout temperature; 0 takes the argmax (default: sample.temperature, else the "
        "process's: 0 for continuous, 1 for masked)",
    )
    _add_x0_temperature(sample)
    prompting = sample.add_mutually_exclusive_group()
    prompting.add_argument(
        "--prompt",
        metavar="TEXT",
        help="keep these tokens and generate the rest (prefix completion, infilling); the "
        "codec's prompt_tokens reads it, e.g. the text plugin's 'ROMEO:{gap:40}JULIET:'",
    )
    prompting.add_argument(
        "--prompt-file",
        metavar="F",
        help="one prompt per sample: a text file, one prompt a line, or a .jsonl file of "
        'strings or {"prompt": ...} objects; the sample count is the number of prompts',
    )
    sample.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    sample.add_argument(
        "--out", metavar="DIR", help="output directory (default: inside RUN/samples)"
    )
    sample.add_argument(
        "--no-ema", action="store_true", help="sample with the raw weights instead of the EMA"
    )
    _add_no_progress(sample)
    sample.set_defaults(handler=_sample)

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a trained run",
        description="ELBO bits/token on held-out data and the plugin's metrics on samples; "
        "writes RUN/metrics.json.",
    )
    evaluate.add_argument("run", metavar="RUN", help="run directory written by `lcmd train`")
    evaluate.add_argument("--split", default="test", help="held-out split to score (default: test)")
    evaluate.add_argument(
        "--n-samples",
        type=_samples,
        metavar="N",
        help="samples drawn for the plugin's metrics (default: the run's sample.num_samples)",
    )
    evaluate.add_argument(
        "--steps", type=_sample_steps, help="sampling steps (default: the run's sample.steps)"
    )
    evaluate.add_argument(
        "--guidance",
        type=_non_negative_float,
        help="classifier-free guidance weight (default: the run's sample.guidance)",
    )
    _add_x0_temperature(evaluate)
    evaluate.add_argument(
        "--task",
        choices=("generate", "infill"),
        default="generate",
        help="generate: ELBO + metrics on fresh samples (default); infill: hide a share of each "
        "held-out item's positions, regenerate them, report their accuracy + the metrics",
    )
    evaluate.add_argument(
        "--hide",
        type=_non_negative_float,
        default=0.5,
        metavar="SHARE",
        help="--task infill: share of each item's positions hidden (default: 0.5)",
    )
    evaluate.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_no_progress(evaluate)
    evaluate.set_defaults(handler=_eval)
    report = commands.add_parser(
        "report",
        help="plot a run's training records and write a one-page HTML report",
        description="PNG plots of the loss terms, ELBO, collapse diagnostics, learning rate and "
        "throughput against the step, and index.html with them, the latest samples and "
        "metrics.json (needs matplotlib: pip install 'lcmd-core[report]').",
    )
    report.add_argument("run", metavar="RUN", help="run directory written by `lcmd train`")
    report.add_argument("--out", metavar="DIR", help="where to write it (default: RUN/report)")
    report.set_defaults(handler=_report)
    _add_plugin_author_commands(commands)
    return parser


def _add_plugin_author_commands(commands: Any) -> None:
    """`new-plugin` and `check-plugin`."""
    new = commands.add_parser(
        "new-plugin",
        help="write a ready plugin package to start a new modality from",
        description="Write an installable plugin package (entry point, codec, data set, tiny "
        "preset, metric, tests using CodecConformance) that passes its own tests unchanged.",
    )
    new.add_argument("name", metavar="NAME", help="plugin name: lower-case letters, digits, _")
    new.add_argument("--dir", metavar="D", help="where to write it (default: ./lcmd-NAME-plugin)")
    new.set_defaults(handler=_new_plugin)
    check = commands.add_parser(
        "check-plugin",
        help="check an installed plugin: conformance, then a tiny train → sample → eval",
        description="Run the codec conformance checks on the plugin's default data set and "
        "codec, then train its tiny preset, sample and evaluate in a scratch directory; one "
        "line per check, exit 1 if any failed.",
    )
    check.add_argument("name", metavar="NAME", help="an installed plugin (see `lcmd plugins`)")
    check.add_argument(
        "--steps", type=_positive_int, metavar="N", help="training steps (default: the preset's)"
    )
    check.add_argument(
        "--keep", metavar="DIR", help="train in DIR and keep it (default: a temporary directory)"
    )
    check.set_defaults(handler=_check_plugin)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `prepare` and `train`: what to train on and how it is configured."""
    parser.add_argument(
        "--plugin",
        metavar="P",
        help="plugin name (see `lcmd plugins`); with --resume, default: the run's config.json",
    )
    parser.add_argument(
        "--data",
        metavar="D",
        help="data set name; sets data.dataset (default: the plugin's default data set)",
    )
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        default=os.environ.get(DATA_ROOT_ENV),
        help=f"directory holding the raw data of real data sets (default: ${DATA_ROOT_ENV})",
    )
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="plugin preset to start from (default: the preset named like the data set, if any)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML, TOML or JSON config file applied over the preset"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set optim.lr=1e-3 (repeatable; applied last)",
    )
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/PLUGIN-DATASET)")


def _add_no_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_x0_temperature(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--x0-temperature",
        type=_non_negative_float,
        metavar="T",
        help="continuous runs: sharpen the clean estimate each step moves towards, "
        "softmax(logits / T) E; 0 takes the argmax (default: sample.x0_temperature)",
    )
    parser.add_argument(
        "--readout-gate",
        type=_readout_gate,
        metavar="C",
        help="continuous runs: weigh each step's Bayes readout by σ(λ_eff − C), so that the "
        "context decides more at mid noise (higher: sharper); off: as trained (default: "
        "sample.readout_gate, else 1)",
    )


def _readout_gate(text: str) -> float | str:
    """argparse type: a finite number or 'off'."""
    if text == "off":
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a number or 'off', got {text!r}")
    return value


def _run_config(args: argparse.Namespace, plugin: Plugin) -> RunConfig:
    """The config for `prepare`/`train`, resolved once: preset ← --config ← --set ← flags.

    Its `data.plugin` and `data.dataset` name the plugin and the data set to train on.
    """
    from_file = load_config_file(args.config) if args.config else {}
    user = apply_overrides(from_file, args.set or [])
    user_data = user.get("data") if isinstance(user.get("data"), dict) else {}
    chosen = args.data or user_data.get("dataset")
    if chosen is not None and not isinstance(chosen, str):
        raise ConfigError(f"data.dataset: expected a data set name, got {chosen!r}")
    dataset = plugin.dataset(chosen).name
    _refuse_file_shards_outside_run(args, from_file, plugin, dataset)
    preset = args.preset or (dataset if dataset in plugin.presets else None)
    if getattr(args, "saved", None) is not None and not args.preset:
        preset = None  # resuming from RUN/config.json: it is the base, not the preset
    data: dict[str, Any] = {"plugin": plugin.name, "dataset": dataset}
    flags: dict[str, Any] = {"data": data}
    if args.data_root:
        data["data_root"] = args.data_root
    if getattr(args, "codec", None):
        data["codec"] = args.codec
    if getattr(args, "max_steps", None):
        flags["train"] = {"max_steps": args.max_steps}
    return merge_config(
        deep_merge(user, flags),
        preset=plugin.preset(preset) if preset else None,
        base=getattr(args, "saved", None),
    )


def _refuse_file_shards_outside_run(
    args: argparse.Namespace, from_file: dict[str, Any], plugin: Plugin, dataset: str
) -> None:
    """A config file may not send `prepare`'s writes outside the run directory: a shared or
    downloaded config could otherwise pick any directory. On the command line it may."""
    file_data = from_file.get("data")
    shards = file_data.get("shards") if isinstance(file_data, dict) else None
    on_command_line = any(parse_override(text)[0] == ["data", "shards"] for text in args.set or [])
    if not shards or not isinstance(shards, str) or on_command_line:
        return  # a shards value that is no path is refused by the config's validation
    run = Path(args.out or Path("runs") / f"{plugin.name}-{dataset}").resolve()
    if not Path(shards).expanduser().resolve().is_relative_to(run):
        raise CLIError(
            f"--config {args.config} sets data.shards={shards}, outside the run directory "
            f"{run}; a config file does not choose where lcmd writes: give it on the command "
            "line (--set data.shards=...) if you mean it"
        )


def _plugins(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    plugins = collect_plugins(pm if pm is not None else get_plugin_manager())
    listing = {name: _describe(plugin) for name, plugin in plugins.items()}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    if not listing:
        print("no lcmd plugins are installed; pip install one, e.g. lcmd-text")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("plugin", "kind", "name", "description")
    for name, info in listing.items():
        table.add_section()
        for codec in info["codecs"]:
            _add_text_row(table, name, "codec", codec["name"], codec["description"])
        for dataset in info["datasets"]:
            label = f"{dataset['name']} (default)" if dataset["default"] else dataset["name"]
            _add_text_row(table, name, "dataset", label, dataset["description"])
        for kind in ("preset", "metric", "backbone"):
            for entry in info[f"{kind}s"]:
                _add_text_row(table, name, kind, entry["name"], entry["description"])
    Console().print(table)
    return 0


def _add_text_row(table: Any, *cells: str) -> None:
    """Add cells as plain text: rich would read "[reconstructed]" in a description as markup."""
    from rich.markup import escape

    table.add_row(*(escape(cell) for cell in cells))


def _describe(plugin: Plugin) -> dict[str, Any]:
    """What a plugin registered, JSON-ready."""
    return {
        "codecs": [
            {"name": name, "description": (inspect.getdoc(factory) or "").partition("\n")[0]}
            for name, factory in plugin.codecs.items()
        ],
        "datasets": [
            {
                "name": info.name,
                "description": info.description,
                "default": info.name == plugin.default_dataset,
                "default_codec": info.default_codec,
                "splits": list(info.splits),
                "num_classes": info.num_classes,
                "needs_root": info.needs_root,
                "source": info.source,
            }
            for info in plugin.datasets.values()
        ],
        "presets": [
            {"name": name, "description": description}
            for name, (_, description) in plugin.presets.items()
        ],
        "metrics": [
            {
                "name": info.name,
                "description": info.description,
                "higher_is_better": info.higher_is_better or {},
            }
            for info in plugin.metrics.values()
        ],
        "backbones": [
            {"name": name, "description": (inspect.getdoc(factory) or "").partition("\n")[0]}
            for name, factory in plugin.backbones.items()
        ],
    }


def _plugin_of(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> Plugin:
    """`--plugin`; with `--resume --out RUN`, the plugin (and data set) RUN/config.json names,
    whose config then stands in for the preset (`args.saved`)."""
    args.saved = None
    if args.plugin:
        return get_plugin(args.plugin, pm)
    saved = Path(args.out) / "config.json" if args.out else None
    if not (getattr(args, "resume", False) and saved is not None and saved.is_file()):
        raise CLIError(
            f"the following arguments are required: --plugin (see `lcmd {args.command} --help`); "
            "--resume --out RUN takes it from RUN/config.json"
        )
    from lcmd_core.readback import read_json

    args.saved = read_json(saved, CLIError, "pass --plugin")
    data = args.saved.get("data") if isinstance(args.saved, dict) else None
    plugin, dataset = (
        (data.get("plugin"), data.get("dataset")) if isinstance(data, dict) else (0, 0)
    )
    if not isinstance(plugin, str) or not isinstance(dataset, str):
        raise CLIError(
            f"{saved} names no plugin and data set (data.plugin, data.dataset); pass --plugin"
        )
    args.data = args.data or dataset
    return get_plugin(plugin, pm)


def _prepare(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    from lcmd_core.trainer import Trainer

    plugin = _plugin_of(args, pm)
    trainer = Trainer(_run_config(args, plugin), plugin=plugin, run_dir=args.out, pm=pm)
    prepared = trainer.prepare()
    spec = prepared.spec
    print(f"codec   {prepared.codec.name}: vocab {spec.vocab_size}, tokens {spec.token_shape}")
    print(f"shards  {prepared.shards_dir}")
    print(f"run     {trainer.run.path}")
    return 0


NPROC_ENV = "LCMD_NPROC"  # set for the processes that `--nproc` starts


def _torchrun(args: argparse.Namespace) -> int:
    """Re-run this `lcmd train` command under torchrun with `--nproc` processes."""
    argv, skip = [], False
    for arg in args.argv:  # torchrun's own parser would take --nproc for --nproc-per-node
        if skip or arg == "--nproc" or arg.startswith("--nproc="):
            skip = arg == "--nproc"
            continue
        argv.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc-per-node={args.nproc}", "-m", "lcmd_core.cli", *argv]
    return subprocess.call(command, env={**os.environ, NPROC_ENV: str(args.nproc)})


def _command_again(args: argparse.Namespace, *extra: str) -> str:
    """The `lcmd` command line that started this run (with `--nproc` as the user gave it)."""
    nproc = os.environ.get(NPROC_ENV)
    relaunched = ["--nproc", nproc] if nproc and args.nproc == 1 else []
    return shlex.join(["lcmd", *args.argv, *relaunched, *extra])


def _train(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    from lcmd_core.distributed import barrier
    from lcmd_core.trainer import Trainer, TrainingInterrupted

    if args.nproc > 1:
        return _torchrun(args)
    plugin = _plugin_of(args, pm)
    trainer = Trainer(
        _run_config(args, plugin),
        plugin=plugin,
        run_dir=args.out,
        resume=args.resume,
        progress=not args.no_progress,
        pm=pm,
    )
    run = trainer.run
    if args.resume and run.latest() is None and trainer.world.is_main:
        # A re-queued job killed before its first checkpoint starts again from the beginning.
        source = "its config.json" if run.config_path.is_file() else "the command line's config"
        print(f"lcmd: --resume: {run.path} has no checkpoint yet; starting it from {source}",
              file=sys.stderr)  # fmt: skip
    try:
        final = trainer.fit()
    except (KeyboardInterrupt, TrainingInterrupted) as err:
        signum = err.signum if isinstance(err, TrainingInterrupted) else signal.SIGINT
        latest = run.latest()
        if not trainer.world.is_main:
            return 128 + signum
        if latest is None:
            again = _command_again(args)
            print(
                f"lcmd: interrupted before the first checkpoint; start again with `{again}`",
                file=sys.stderr,
            )
        else:
            again = _command_again(args, *([] if args.resume else ["--resume"]))
            print(
                f"lcmd: {signal.Signals(signum).name} at step {trainer.step}; checkpoint "
                f"{latest} holds step {int(latest.name.split('-')[-1])}; continue with `{again}`",
                file=sys.stderr,
            )
        return 128 + signum
    if trainer.world.is_main:
        # The closing preview, beside the ones of train.sample_every (unless one was drawn at
        # this step already); `lcmd sample` draws into samples/step-NNNNNNN-seed-S/.
        preview = run.samples_dir / f"preview-{trainer.step:07d}"
        if not (preview / "sample.json").is_file():
            trainer.sample(out_dir=preview)
        print(f"run          {run.path}")
        print(f"checkpoints  {run.checkpoints_dir} (latest: {_name(run.latest())})")
        print(f"samples      {preview}")
        print(f"metrics      {run.metrics_path}")
        if final:
            _print_table("final", final)
        else:
            print(f"nothing to train: the run is already at step {trainer.step}")
    # Data-parallel ranks leave together: one that exits while another still holds the process
    # group is aborted by the group's threads.
    barrier(trainer.world)
    return 0


def _name(path: Path | None) -> str:
    return path.name if path is not None else "none"


def _print_table(title: str, values: dict[str, Any], better: dict[str, bool] | None = None) -> None:
    """Print `values` as a rich table; with `better` (key → higher is better), a third column
    marks each value's better direction (↑ higher, ↓ lower, blank where the plugin says none)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("name", overflow="fold")  # a narrow terminal folds names, never cuts them
    table.add_column("value")
    if better is not None:
        table.add_column("better")
    for key, value in values.items():
        cells = [key, f"{value:.4g}" if isinstance(value, float) else str(value)]
        if better is not None:
            cells.append({True: "↑", False: "↓"}.get(better.get(key), ""))
        _add_text_row(table, *cells)
    Console().print(table)


def _better_directions(plugin: Plugin) -> dict[str, bool]:
    """Metric key → True where higher is better, as `lcmd eval` names the keys."""
    directions = {"elbo_bits_per_token": False}
    for name, info in plugin.metrics.items():
        for key, higher in (info.higher_is_better or {}).items():
            directions[f"{name}/{key}"] = higher
    return directions


def _load_run(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> Run:
    """The run directory `args.run` at its latest checkpoint, for sampling and evaluation."""
    from lcmd_core.sampling import load_run

    return load_run(args.run, pm=pm)


def _label(run: Run, text: str) -> int:
    """A class index from `--label`, given as a class name or an index."""
    names = list(run.spec.class_names)
    if text in names:
        return names.index(text)
    try:
        return int(text)
    except ValueError:
        known = f"one of {', '.join(names)}" if names else "a class index"
        raise CLIError(f"--label {text!r}: expected {known}") from None


def _prompts(args: argparse.Namespace, n: int) -> list[str] | None:
    """One prompt per sample: `--prompt` n times, or the prompts of `--prompt-file`."""
    if args.prompt is not None:
        return [args.prompt] * n
    if args.prompt_file is None:
        return None
    path = Path(args.prompt_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CLIError(f"--prompt-file {path}: cannot read it ({err})") from None
    prompts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise CLIError(f"--prompt-file {path}:{number}: not JSON ({err})") from None
            value = value.get("prompt") if isinstance(value, dict) else value
            if not isinstance(value, str):
                raise CLIError(
                    f'--prompt-file {path}:{number}: expected a string or {{"prompt": ...}}'
                )
            line = value
        prompts.append(line)
    if not prompts:
        raise CLIError(f"--prompt-file {path} holds no prompts")
    if args.n and args.n != len(prompts):
        raise CLIError(
            f"--prompt-file {path} holds {len(prompts)} prompts but --n is {args.n}; drop --n "
            "(one sample per prompt)"
        )
    return prompts


def _sample(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    run = _load_run(args, pm)
    prompts = _prompts(args, args.n or run.config.sample.num_samples)
    n = len(prompts) if prompts else args.n or run.config.sample.num_samples
    result = run.sample(
        n,
        steps=args.steps,
        sampler=args.sampler,
        guidance=args.guidance,
        labels=None if args.label is None else _label(run, args.label),
        seed=args.seed,
        temperature=args.temperature,
        x0_temperature=args.x0_temperature,
        readout_gate=args.readout_gate,
        use_ema=False if args.no_ema else None,
        prompts=prompts,
        out_dir=args.out,
    )
    print(f"wrote {len(result.items)} samples to {result.out_dir} (+ tokens.safetensors)")
    return 0


def _eval(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    run = _load_run(args, pm)
    metrics = run.evaluate(
        args.split,
        n_samples=args.n_samples,
        seed=args.seed,
        steps=args.steps,
        guidance=args.guidance,
        x0_temperature=args.x0_temperature,
        readout_gate=args.readout_gate,
        task=args.task,
        hide=args.hide,
    )
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    _print_table(f"{run.run_dir.path} ({args.split})", metrics, _better_directions(run.plugin))
    print(f"written to {run.run_dir.path / 'metrics.json'}")
    return 0


def _report(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    from lcmd_core.report import write_report

    page = write_report(args.run, args.out)
    print(f"wrote {page} and its plots in {page.parent}")
    return 0


def _new_plugin(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    from lcmd_core.scaffold import new_plugin

    if args.name in collect_plugins(pm if pm is not None else get_plugin_manager()):
        raise CLIError(f"a plugin called {args.name!r} is already installed; choose another name")
    out = new_plugin(args.name, Path(args.dir) if args.dir else None)
    print(f"wrote plugin {args.name!r} to {out}")
    print(f"next: pip install -e {shlex.quote(str(out))} && lcmd check-plugin {args.name}")
    return 0


def _check_plugin(args: argparse.Namespace, pm: pluggy.PluginManager | None) -> int:
    import tempfile

    from lcmd_core.plugin_check import check_plugin

    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(args.keep)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lcmd-check-")))
        checks = check_plugin(
            args.name, work, steps=args.steps, pm=pm, report=lambda c: print(c.line(), flush=True)
        )
    failed = [c for c in checks if c.status == "FAIL"]
    skipped = sum(c.status == "skip" for c in checks)
    passed = len(checks) - len(failed) - skipped
    print(f"{len(checks)} checks: {passed} ok, {len(failed)} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
