"""`lcmd report` plots a run and writes a page that renders; TensorBoard gets every scalar."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from lcmd_core.cli import main
from lcmd_core.config import resolve_config
from lcmd_core.trainer import Trainer

pytest.importorskip("lcmd_example", reason="the example plugin is installed by `make test`")
pytest.importorskip("matplotlib", reason="lcmd report needs matplotlib (lcmd-core[report])")
PIL = pytest.importorskip("PIL.Image")

FAST = [
    "model.width=32",
    "model.depth=1",
    "model.heads=2",
    "model.embed_dim=8",
    "train.global_batch_size=8",
    "train.log_every=1",
    "train.checkpoint_every=4",
    "train.max_steps=6",
    "sample.steps=2",
    "sample.num_samples=4",
]
PLOTS = ("loss_terms", "accuracy", "elbo", "collapse", "learning_rate", "throughput")


def lcmd(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "run"
    Trainer(resolve_config(overrides=FAST), plugin="example", run_dir=path, progress=False).fit()
    assert lcmd("eval", path, "--n-samples", 4, "--steps", 2)[0] == 0
    return path


def test_report_writes_every_plot_and_a_page_that_shows_them(run: Path) -> None:
    code, stdout, err = lcmd("report", run)
    assert code == 0 and "index.html" in stdout, err
    report = run / "report"
    for name in PLOTS:
        with PIL.open(report / f"{name}.png") as image:
            assert image.size == (700, 360)
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # drawn, not blank
    page = (report / "index.html").read_text()
    assert all(f"src='{name}.png'" in page for name in PLOTS)
    assert "example/unicode_names, continuous process, step 6" in page
    assert "name_validity/valid_name_fraction" in page and "eval-0000006" in page


def test_report_of_a_run_without_records_is_one_line(tmp_path: Path) -> None:
    code, _, err = lcmd("report", tmp_path)
    assert code == 2 and err.count("\n") == 1 and "has no metrics.jsonl" in err


@pytest.mark.skipif(not shutil.which("chromium"), reason="needs Debian's chromium")
def test_report_page_renders_in_a_headless_browser(run: Path, tmp_path: Path) -> None:
    assert lcmd("report", run, "--out", tmp_path / "page")[0] == 0
    shot = tmp_path / "shot.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    browser = [
        "chromium",
        *flags,
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1100,1400",
        f"--screenshot={shot}",
        (tmp_path / "page" / "index.html").as_uri(),
    ]
    subprocess.run(browser, check=True, capture_output=True, timeout=120)
    with PIL.open(shot) as image:
        grey = np.asarray(image.convert("L"))
    assert (grey < 128).mean() > 0.01  # text and plotted lines, not a blank page


def test_tensorboard_gets_every_scalar_and_the_previews(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = resolve_config(overrides=[*FAST, "train.log_to=[tensorboard]", "train.sample_every=3"])
    Trainer(config, plugin="example", run_dir=tmp_path / "run", progress=False).fit()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"total", "bits_per_token", "lr", "grad_norm", "embed/effective_rank"} <= scalars
    assert [event.step for event in events.Scalars("total")] == [1, 2, 3, 4, 5, 6]
    assert {tag.split("/")[0] for tag in events.Tags()["tensors"]} == {"preview"}  # text previews


def test_a_draw_with_a_grid_is_shown_by_its_grid(tmp_path: Path) -> None:
    from lcmd_core.report import write_report

    run = tmp_path / "run"
    draw = run / "samples" / "step-0000002-seed-0"
    draw.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "total": 1.0 / s, "lr": 1e-3}) + "\n" for s in (1, 2))
    )
    (draw / "sample.json").write_text("{}")
    for name in ("grid", "sample-0000", "sample-0001"):
        PIL.new("RGB", (8, 8), "white").save(draw / f"{name}.png")
    page = write_report(run).read_text()
    assert "samples-grid.png" in page and "samples-sample-0000.png" not in page
    assert (run / "report" / "samples-grid.png").is_file()
