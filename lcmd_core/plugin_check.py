"""`lcmd check-plugin NAME`: an installed plugin checked as lcmd will use it, one line a check.

The checks: the plugin loads; its default data set reads; its default codec passes the
`CodecConformance` suite on real items; its `tiny` preset trains, samples and evaluates in a
scratch run directory. A failed check does not stop the ones that do not depend on it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lcmd_core.plugins import Plugin, PluginError, get_plugin

FIT_ITEMS = 256  # train items a codec that needs fitting is fitted on
CHECK_ITEMS = 16  # items the conformance checks encode and decode


@dataclass(frozen=True)
class Check:
    """One check's outcome: `status` is ok, FAIL or skip; `detail` says what was seen."""

    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name}: {self.detail}"


def check_plugin(
    name: str,
    work_dir: Path,
    *,
    steps: int | None = None,
    pm: Any = None,
    report: Callable[[Check], None] = lambda check: None,
) -> list[Check]:
    """Run every check of plugin `name`, training in `work_dir`; `report` sees each result."""
    checks: list[Check] = []

    def record(check_name: str, status: str, detail: str) -> bool:
        checks.append(Check(check_name, status, detail))
        report(checks[-1])
        return status != "FAIL"

    try:
        plugin = get_plugin(name, pm)
    except PluginError as err:
        record("load", "FAIL", str(err))
        return checks
    record("load", "ok", _registered(plugin))
    items = _dataset_items(plugin, record)
    if items is not None:
        _codec_checks(plugin, items, work_dir, record)
    if "tiny" not in plugin.presets:
        record("preset tiny", "FAIL", "every plugin registers a `tiny` preset")
        return checks
    _train_sample_eval(plugin, work_dir / "run", steps, pm, record)
    return checks


def _registered(plugin: Plugin) -> str:
    parts = {
        "codecs": plugin.codecs,
        "datasets": plugin.datasets,
        "presets": plugin.presets,
        "metrics": plugin.metrics,
        "backbones": plugin.backbones,
    }
    return "; ".join(f"{kind} {', '.join(names)}" for kind, names in parts.items() if names)


def _dataset_items(plugin: Plugin, record: Callable[..., bool]) -> list[Any] | None:
    """The default data set's train items (every split read once), or None when it fails."""
    try:
        info = plugin.dataset()
        splits = {split: info.load(split)[0] for split in info.splits}
    except Exception as err:  # a plugin's reader may raise anything; report it as one line
        record("dataset", "FAIL", _one_line(err))
        return None
    counts = ", ".join(f"{split} {len(items)}" for split, items in splits.items())
    if not splits.get("train"):
        record(f"dataset {info.name}", "FAIL", f"no train items ({counts})")
        return None
    record(f"dataset {info.name}", "ok", counts)
    return splits["train"]


def _codec_checks(
    plugin: Plugin, items: list[Any], work_dir: Path, record: Callable[..., bool]
) -> None:
    try:
        import pytest

        from lcmd_core.testing import CodecConformance
    except ImportError:
        record("codec", "FAIL", "the conformance suite needs pytest: pip install pytest")
        return
    info = plugin.dataset()

    class Case(CodecConformance):
        def new_codec(self) -> Any:
            return plugin.codec(info.default_codec, info.codec_options)

        def sample_items(self) -> list[Any]:
            return items[:CHECK_ITEMS]

    case = Case()
    try:
        codec = case.new_codec()
        if codec.needs_fit:
            codec.fit(items[:FIT_ITEMS])
    except Exception as err:
        record(f"codec {info.default_codec}", "FAIL", f"cannot build and fit: {_one_line(err)}")
        return
    arguments = {"codec": codec, "items": case.sample_items()}
    for method in sorted(m for m in dir(CodecConformance) if m.startswith("test_")):
        test = getattr(case, method)
        tmp_path = work_dir / "conformance" / method
        tmp_path.mkdir(parents=True, exist_ok=True)
        wanted = {**arguments, "tmp_path": tmp_path}
        kwargs = {p: wanted[p] for p in inspect.signature(test).parameters}
        check = f"codec {codec.name}: {method.removeprefix('test_')}"
        try:
            test(**kwargs)
        except pytest.skip.Exception as skipped:
            record(check, "skip", str(skipped))
        except Exception as err:
            record(check, "FAIL", _one_line(err) or type(err).__name__)
        else:
            record(check, "ok", "passed")


def _train_sample_eval(
    plugin: Plugin, run_dir: Path, steps: int | None, pm: Any, record: Callable[..., bool]
) -> None:
    from lcmd_core.config import resolve_config
    from lcmd_core.sampling import load_run
    from lcmd_core.trainer import Trainer

    try:
        overrides = [f"train.max_steps={steps}"] if steps else []
        config = resolve_config(preset=plugin.preset("tiny"), overrides=overrides)
        started = time.perf_counter()
        last = Trainer(config, plugin=plugin, run_dir=run_dir, progress=False, pm=pm).fit()
    except Exception as err:
        record("train tiny", "FAIL", _one_line(err))
        return
    record(
        "train tiny",
        "ok",
        f"{last['step']} steps in {time.perf_counter() - started:.0f} s, loss "
        f"{last['total']:.3f}, {last['bits_per_token']:.3f} bits/token",
    )
    try:
        run = load_run(run_dir, pm=pm)
        drawn = run.sample()
    except Exception as err:
        record("sample", "FAIL", _one_line(err))
        return
    files = ", ".join(path.name for path in drawn.files)
    where = drawn.out_dir.relative_to(run_dir)
    record("sample", "ok", f"{len(drawn.items)} items → {files} in RUN/{where}")
    splits = plugin.dataset(config.data.dataset).splits
    split = next((s for s in ("test", "valid") if s in splits), splits[-1])
    try:
        metrics = run.evaluate(split)
    except Exception as err:
        record(f"eval {split}", "FAIL", _one_line(err))
        return
    shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items())
    record(f"eval {split}", "ok", shown)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {text}" if not isinstance(err, PluginError) else text
