"""Data-parallel training on CPU (gloo): 2 processes give the losses of 1, and resume works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lcmd_core.distributed import World, micro_batch_seed, sum_gradients, world_from_env

pytest.importorskip("lcmd_example")

TRAIN = [
    "train",
    "--plugin",
    "example",
    "--preset",
    "tiny",
    "--set",
    "train.global_batch_size=8",
    "--set",
    "train.micro_batch_size=2",
    "--set",
    "train.log_every=1",
    "--set",
    "train.checkpoint_every=3",
    "--set",
    "sample.num_samples=2",
    "--set",
    "sample.steps=2",
]


def lcmd(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lcmd_core.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def losses(run: Path) -> list[tuple[int, float, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["total"], r["grad_norm"]) for r in map(json.loads, lines)]


def train_one_and_two(tmp_path: Path, flags: list[str], strategy: str) -> None:
    """4 steps alone (`one`) and with 2 processes (`two`); their logs must match."""
    one = lcmd(*flags, "--max-steps", "4", "--out", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = lcmd(*flags, "--max-steps", "4", "--out", "two", "--nproc", "2", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert f"2 processes ({strategy})" in two.stdout
    for a, b in zip(losses(tmp_path / "one"), losses(tmp_path / "two"), strict=True):
        assert a[0] == b[0] and a[1:] == pytest.approx(b[1:], rel=1e-4)


def test_two_processes_match_one_and_resume(tmp_path: Path) -> None:
    train_one_and_two(tmp_path, TRAIN, "ddp")

    # Resume the 2-process run (last checkpoint at step 4) to step 6 and the 1-process run too.
    for run, extra in (("one", []), ("two", ["--nproc", "2"])):
        done = lcmd(*TRAIN, "--max-steps", "6", "--out", run, "--resume", *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r[0] for r in b] == list(range(1, 7))
    for x, y in zip(a, b, strict=True):
        assert x[1:] == pytest.approx(y[1:], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())[-1].endswith("6")


def checkpoint_shapes(run: Path, step: int) -> dict[str, dict[str, tuple[int, ...]]]:
    from safetensors import safe_open

    found = {}
    for name in ("model", "ema", "optimizer"):
        path = run / "checkpoints" / f"step-{step:07d}" / f"{name}.safetensors"
        with safe_open(path, "pt") as f:
            found[name] = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    return found


def test_fsdp_matches_one_process_and_checkpoints_cross_over(tmp_path: Path) -> None:
    fsdp = [*TRAIN, "--set", "train.strategy=fsdp"]
    train_one_and_two(tmp_path, fsdp, "fsdp")  # alone, `one` is not sharded
    # Rank 0 writes whole tensors: the sharded run's checkpoint is the one-process format.
    assert checkpoint_shapes(tmp_path / "two", 3) == checkpoint_shapes(tmp_path / "one", 3)

    # Cross over: the one-process checkpoint resumes sharded, the sharded one in one process.
    for run, extra in (("one", ["--nproc", "2"]), ("two", [])):
        done = lcmd(*fsdp, "--max-steps", "6", "--out", run, "--resume", *extra, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r[0] for r in a] == [r[0] for r in b] == list(range(1, 7))
    for x, y in zip(a, b, strict=True):
        assert x[1:] == pytest.approx(y[1:], rel=1e-4)
    # The samples drawn after training come from whole copies gathered from the shards.
    drawn = [
        tmp_path / r / "samples" / "preview-0000006" / "tokens.safetensors" for r in ("one", "two")
    ]
    assert drawn[0].read_bytes() == drawn[1].read_bytes()


def test_masked_process_trains_the_same_sharded_on_two_processes(tmp_path: Path) -> None:
    """FSDP covers what ddp does for the masked model and more (sharded EMA, gathered copies)."""
    flags = [*TRAIN, "--set", "diffusion.process=masked", "--set", "train.strategy=fsdp"]
    train_one_and_two(tmp_path, flags, "fsdp")
    drawn = [
        tmp_path / r / "samples" / "preview-0000004" / "tokens.safetensors" for r in ("one", "two")
    ]
    assert drawn[0].read_bytes() == drawn[1].read_bytes()


def test_interrupted_nproc_run_prints_a_resume_command_with_nproc(tmp_path: Path) -> None:
    import signal
    import time

    command = [sys.executable, "-m", "lcmd_core.cli", *TRAIN, "--max-steps", "100000",
               "--out", "run", "--nproc", "2", "--set", "train.checkpoint_every=99999"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: torchrun and its processes
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    resume = [line for line in err.splitlines() if line.startswith("lcmd: SIGINT at step")]
    assert resume and "--nproc 2 --resume`" in resume[0], err[-2000:]


def test_batch_that_does_not_split_over_processes_is_one_line(tmp_path: Path) -> None:
    bad = lcmd(
        *TRAIN, "--max-steps", "2", "--out", "bad", "--nproc", "2",
        "--set", "train.micro_batch_size=3", cwd=tmp_path,
    )  # fmt: skip
    assert bad.returncode != 0
    assert "must be a multiple of train.micro_batch_size (3) × processes (2)" in bad.stderr


def test_world_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world_from_env() == World() and World().is_main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert world_from_env() == World(rank=2, size=4, local_rank=0)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4 does not fit WORLD_SIZE=4"):
        world_from_env()


def test_micro_batch_seeds_differ_and_repeat() -> None:
    seeds = {
        micro_batch_seed(0, step, a, k) for step in range(20) for a in range(2) for k in range(8)
    }
    assert len(seeds) == 20 * 2 * 8 and all(0 <= s < 2**63 for s in seeds)
    assert micro_batch_seed(3, 5, 0, 1) == micro_batch_seed(3, 5, 0, 1)


def test_sum_gradients_alone_changes_nothing() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    sum_gradients([p], World())
    assert torch.equal(p.grad, torch.full((3,), 2.0))
