"""Fault injection: `kill -9` at random points of `lcmd train`, then `--resume`, until done.

Every trial must leave a loadable run directory after every kill, and the finished run's weights
must equal those of an uninterrupted run bit for bit. Two trials run by default; the full suite
(`pytest -m slow tests/test_faults.py`) runs 20 and prints its tally.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from lcmd_core.checkpoint import RunDir, load_checkpoint

pytest.importorskip("lcmd_example")

STEPS = 30
COMMAND = [
    sys.executable, "-m", "lcmd_core.cli", "train", "--plugin", "example", "--preset", "tiny",
    "--no-progress", "--max-steps", str(STEPS),
    "--set", "model.width=32", "--set", "model.depth=1", "--set", "model.heads=2",
    "--set", "train.global_batch_size=8", "--set", "train.checkpoint_every=1",
    "--set", "train.sample_every=3", "--set", "train.keep_checkpoints=2",
    "--set", "sample.num_samples=2", "--set", "sample.steps=2",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def command(run: Path) -> list[str]:
    resume = ["--resume"] if RunDir(run).latest() is not None else []
    return [*COMMAND, "--out", str(run), *resume]


def weights(run: Path) -> dict:
    latest = RunDir(run).latest()
    assert latest is not None and latest.name == f"step-{STEPS:07d}"
    return {name: load_file(latest / name) for name in ("model.safetensors", "ema.safetensors")}


def assert_loadable(run: Path) -> None:
    """Whatever a kill left: the latest complete checkpoint loads (or there is none yet)."""
    latest = RunDir(run).latest()
    if latest is not None:
        load_checkpoint(latest)


def kill_and_resume(run: Path, rng: random.Random, kills: int, duration: float) -> int:
    """Start, kill -9 after a random share of an uninterrupted run's `duration` (start-up and
    data preparation included), repeat `kills` times, then run to the end. Returns the number
    of processes actually killed (a resumed run can finish before its kill)."""
    done = 0
    for _ in range(kills):
        proc = subprocess.Popen(
            command(run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(0.2, 0.95) * duration)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            done += 1
        proc.wait()
        assert_loadable(run)
    final = subprocess.run(command(run), env=ENV, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    return done


def run_trials(tmp_path: Path, trials: int) -> tuple[int, int]:
    started = time.perf_counter()
    reference = subprocess.run(
        command(tmp_path / "reference"), env=ENV, capture_output=True, text=True, timeout=600
    )
    duration = time.perf_counter() - started
    assert reference.returncode == 0, reference.stderr
    expected = weights(tmp_path / "reference")
    rng = random.Random(0)
    kills = matched = 0
    for trial in range(trials):
        run = tmp_path / f"trial-{trial}"
        kills += kill_and_resume(run, rng, kills=3, duration=duration)
        got = weights(run)
        for name, tensors in expected.items():
            assert tensors.keys() == got[name].keys()
            for key, value in tensors.items():
                assert value.equal(got[name][key]), f"trial {trial}: {name}/{key} differs"
        matched += 1
    return kills, matched


def test_kill_9_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    kills, matched = run_trials(tmp_path, trials=2)
    assert matched == 2 and kills >= 1


@pytest.mark.slow
def test_kill_9_twenty_trials(tmp_path: Path) -> None:
    kills, matched = run_trials(tmp_path, trials=20)
    print(f"\nfault suite: {kills} kill -9 injected over 20 trials, {matched} resumes matched")
    assert matched == 20 and kills >= 20


# Run `lcmd train` in a child that stalls at a chosen point of the data preparation and tells the
# parent (which then kills it with SIGKILL): inside the codec fit, or after the first shard file.
STALLING_CHILD = """
import sys, time
from pathlib import Path
marker, where, *argv = sys.argv[1:]

def stall():
    Path(marker).touch()
    time.sleep(120)

if where == "fit":
    from lcmd_example.codec import CharsCodec
    fit = CharsCodec.fit
    CharsCodec.fit = lambda self, items: (fit(self, items), stall())
else:
    import lcmd_core.shards as shards
    save = shards.save_file
    shards.save_file = lambda *args, **kwargs: (save(*args, **kwargs), stall())
from lcmd_core.cli import main
sys.exit(main(argv))
"""


@pytest.mark.parametrize("where", ["fit", "encode"])
def test_kill_during_data_preparation_then_the_same_command_finishes_exactly(
    tmp_path: Path, where: str
) -> None:
    reference = subprocess.run(
        command(tmp_path / "reference"), env=ENV, capture_output=True, text=True, timeout=600
    )
    assert reference.returncode == 0, reference.stderr
    run, marker = tmp_path / "run", tmp_path / "stalled"
    again = [*COMMAND, "--out", str(run), "--resume"]  # a re-queued job: the same line each time
    child = subprocess.Popen(
        [sys.executable, "-c", STALLING_CHILD, str(marker), where, *again[3:]],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), child.stderr.read().decode() if child.stderr else ""
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert RunDir(run).latest() is None  # killed before anything was trained
    final = subprocess.run(again, env=ENV, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert "has no checkpoint yet; starting it" in final.stderr
    expected, got = weights(tmp_path / "reference"), weights(run)
    for name, tensors in expected.items():
        assert all(value.equal(got[name][key]) for key, value in tensors.items()), name
