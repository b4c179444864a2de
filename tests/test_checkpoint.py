"""Run directory layout, atomic checkpoints, exact resume and RNG capture."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from lcmd_core.checkpoint import (
    CheckpointError,
    RunDir,
    append_metrics,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_json_atomic,
    write_safetensors_atomic,
)
from lcmd_core.shards import BatchOrder


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.GELU(), nn.Linear(8, 1))


def train(model, optimizer, ema, sampler, data, steps):
    """AdamW steps on batches from `sampler`, with dropout and noise from the torch RNG."""
    for _ in range(steps):
        x = data[sampler.next_batch(4)]
        x = x + 0.1 * torch.randn_like(x)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for name, value in model.state_dict().items():
                ema[name].lerp_(value, 0.1)


def save(run, step, model, optimizer, ema, sampler, **kwargs):
    return save_checkpoint(
        run,
        step,
        model=model.state_dict(),
        ema=ema,
        optimizer=optimizer.state_dict(),
        state={"sampler": sampler.state_dict()},
        **kwargs,
    )


def test_resume_reproduces_uninterrupted_run(tmp_path):
    data = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    run = RunDir(tmp_path / "run")

    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ema = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = BatchOrder(len(data), seed=3)
    train(model, optimizer, ema, sampler, data, 4)
    path = save(run, 4, model, optimizer, ema, sampler)
    train(model, optimizer, ema, sampler, data, 5)

    torch.manual_seed(123)  # the resumed process starts from a different RNG state
    resumed = make_model()
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-2, weight_decay=0.1)
    checkpoint = load_checkpoint(path)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed_ema = checkpoint["ema"]
    resumed_sampler = BatchOrder(len(data), seed=3)
    resumed_sampler.load_state_dict(checkpoint["state"]["sampler"])
    restore_rng(checkpoint["rng"])
    assert checkpoint["step"] == 4
    train(resumed, resumed_optimizer, resumed_ema, resumed_sampler, data, 5)

    for name, value in model.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
        assert torch.equal(resumed_ema[name], ema[name]), name
    for a, b in zip(optimizer.state.values(), resumed_optimizer.state.values(), strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert sampler.state_dict() == resumed_sampler.state_dict()


def test_checkpoint_files_and_optimizer_structure(tmp_path):
    run = RunDir(tmp_path)
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.99))
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    path = save_checkpoint(
        run, 7, model=model.state_dict(), ema=None, optimizer=optimizer.state_dict(), state={}
    )

    assert path == tmp_path / "checkpoints" / "step-0000007"
    assert {p.name for p in path.iterdir()} == {
        "model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "state.json",
    }
    checkpoint = load_checkpoint(path)
    assert checkpoint["ema"] is None
    loaded, original = checkpoint["optimizer"], optimizer.state_dict()
    assert loaded["param_groups"][0]["lr"] == 3e-4
    assert loaded["param_groups"][0]["params"] == original["param_groups"][0]["params"]
    assert set(loaded["state"]) == set(original["state"]) == {0, 1, 2, 3}
    assert loaded["state"][0]["step"].item() == 1.0
    assert torch.equal(loaded["state"][2]["exp_avg_sq"], original["state"][2]["exp_avg_sq"])


def test_shared_and_noncontiguous_tensors_are_saved(tmp_path):
    weight = torch.randn(3, 5)
    tensors = {"weight": weight, "tied": weight, "transposed": weight.t(), "row": weight[1]}
    write_safetensors_atomic(tmp_path / "t.safetensors", tensors)
    path = save_checkpoint(
        RunDir(tmp_path),
        0,
        model=tensors,
        ema=None,
        optimizer={"state": {}, "param_groups": []},
        state={},
    )

    for name, value in load_checkpoint(path)["model"].items():
        assert torch.equal(value, tensors[name])
    assert not list(tmp_path.glob(".*"))


def test_latest_ignores_temporary_and_incomplete_dirs(tmp_path):
    run = RunDir(tmp_path)
    assert run.latest() is None
    assert run.checkpoints() == []
    for step in (5, 20):
        run.step_dir(step).mkdir(parents=True)
        (run.step_dir(step) / "state.json").write_text("{}")
    (run.checkpoints_dir / ".tmp-step-0000090-123").mkdir()
    (run.checkpoints_dir / ".tmp-step-0000090-123" / "state.json").write_text("{}")
    run.step_dir(50).mkdir()  # crashed before state.json

    assert run.checkpoints() == [run.step_dir(5), run.step_dir(20)]
    assert run.latest() == run.step_dir(20)
    assert run.step_dir(20).name == "step-0000020"


def test_run_dir_layout(tmp_path):
    run = RunDir(tmp_path)
    assert run.config_path == tmp_path / "config.json"
    assert run.codec_dir == tmp_path / "codec"
    assert run.metrics_path == tmp_path / "metrics.jsonl"
    assert run.checkpoints_dir == tmp_path / "checkpoints"
    assert run.samples_dir == tmp_path / "samples"
    assert run.shards_dir == tmp_path / "shards"


def test_prune_keeps_last_n(tmp_path):
    run = RunDir(tmp_path)
    model = {"w": torch.zeros(2)}
    empty = {"state": {}, "param_groups": []}
    for step in range(0, 60, 10):
        save_checkpoint(run, step, model=model, ema=None, optimizer=empty, state={}, keep_last=2)
    assert run.checkpoints() == [run.step_dir(40), run.step_dir(50)]

    # Resaving an earlier step keeps later checkpoints and the newly written one.
    save_checkpoint(run, 45, model=model, ema=None, optimizer=empty, state={"a": 1}, keep_last=1)
    assert run.checkpoints() == [run.step_dir(45), run.step_dir(50)]
    save_checkpoint(run, 50, model=model, ema=None, optimizer=empty, state={"b": 2}, keep_last=5)
    assert load_checkpoint(run.latest())["state"] == {"b": 2}
    assert [p.name for p in run.checkpoints_dir.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["model.safetensors", "ema.safetensors", "optimizer.json"])
def test_truncated_or_corrupt_file_is_reported_by_name(tmp_path, name):
    run = RunDir(tmp_path)
    weights = {"w": torch.randn(64)}
    path = save_checkpoint(
        run, 1, model=weights, ema=weights, optimizer={"state": {}, "param_groups": []}, state={}
    )
    file = path / name
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{name}.*delete"):
        load_checkpoint(path)


def test_missing_state_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path)


def test_rng_capture_restore_reproduces_draws():
    def draws():
        return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()

    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()
    state = json.loads(json.dumps(capture_rng()))
    expected = draws()
    draws()
    restore_rng(state)
    assert draws() == expected


def test_json_and_metrics_writers(tmp_path):
    write_json_atomic(tmp_path / "config.json", {"lr": 1e-3})
    write_json_atomic(tmp_path / "config.json", {"lr": 2e-3})
    assert json.loads((tmp_path / "config.json").read_text()) == {"lr": 2e-3}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]

    append_metrics(tmp_path / "metrics.jsonl", {"step": 1, "loss": 0.5})
    append_metrics(tmp_path / "metrics.jsonl", {"step": 2, "loss": 0.25})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "loss": 0.5},
        {"step": 2, "loss": 0.25},
    ]
