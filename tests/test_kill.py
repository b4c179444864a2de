"""A process killed (SIGKILL) while writing a checkpoint leaves the previous one loadable."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from lcmd_core import Trainer, load_run
from lcmd_core.checkpoint import RunDir
from lcmd_core.config import resolve_config

pytest.importorskip("lcmd_example", reason="the example plugin is installed by `make test`")

OVERRIDES = [
    "model.width=32",
    "model.depth=1",
    "model.heads=2",
    "model.embed_dim=8",
    "train.global_batch_size=8",
    "train.max_steps=12",
    "train.checkpoint_every=4",
    "train.log_every=4",
]

# Run in a child process: train, but stall inside the write of checkpoint 8 (after some of its
# files are written) and tell the parent, which then kills the child with SIGKILL.
CHILD = """
import sys, time
import lcmd_core.checkpoint as ck
from lcmd_core import Trainer
from lcmd_core.config import resolve_config

run_dir, marker, shards, *overrides = sys.argv[1:]
original = ck.fsync_path

def stall(path):
    original(path)
    if ".tmp-step-0000008" in str(path):
        open(marker, "w").close()
        time.sleep(120)

ck.fsync_path = stall
cfg = resolve_config(overrides=[*overrides, f"data.shards={shards}"])
Trainer(cfg, plugin="example", run_dir=run_dir, progress=False).fit()
"""


def test_kill_during_checkpoint_write_keeps_previous_and_resumes_exactly(tmp_path):
    shards = tmp_path / "shards"
    cfg = resolve_config(overrides=[*OVERRIDES, f"data.shards={shards}"])
    Trainer(cfg, plugin="example", run_dir=tmp_path / "full", progress=False).fit()

    marker = tmp_path / "stalled"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "killed"),
            str(marker),
            str(shards),
            *OVERRIDES,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "child never reached the checkpoint write"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()

    run = RunDir(tmp_path / "killed")
    assert run.latest().name == "step-0000004"
    assert any(p.name.startswith(".tmp-step-0000008") for p in run.checkpoints_dir.iterdir())
    assert load_run(run.path).step == 4

    Trainer(cfg, plugin="example", run_dir=run.path, progress=False, resume=True).fit()
    a = load_file(RunDir(tmp_path / "full").latest() / "model.safetensors")
    b = load_file(run.latest() / "model.safetensors")
    assert run.latest().name == "step-0000012"
    assert all(torch.equal(a[k], b[k]) for k in a)
