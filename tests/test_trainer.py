"""Trainer on the example plugin: exact resume, atomic checkpoints, refusals, sample, evaluate."""

import itertools
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from lcmd_core import Trainer, load_run
from lcmd_core.checkpoint import CheckpointError, RunDir
from lcmd_core.config import resolve_config
from lcmd_core.lr_schedule import lr_factor
from lcmd_core.processes import PROCESSES as PROCESSES_BY_NAME
from lcmd_core.run_dir import RunError
from lcmd_core.trainer import TrainerError

pytest.importorskip("lcmd_example", reason="the example plugin is installed by `make test`")

FAST = [
    "model.width=32",
    "model.depth=1",
    "model.heads=2",
    "model.embed_dim=8",
    "train.global_batch_size=8",
    "train.log_every=1",
    "train.checkpoint_every=4",
    "optim.warmup_steps=2",
    "sample.steps=3",
    "sample.num_samples=4",
]


def config(*extra):
    return resolve_config(overrides=[*FAST, *extra])


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Encode the example data set once and share the shards between tests."""
    out = tmp_path_factory.mktemp("prepared")
    trainer = Trainer(
        config(f"data.shards={out / 'shards'}"),
        plugin="example",
        run_dir=out / "run",
        progress=False,
    )
    trainer.prepare()
    return out


def make(tmp_path, shards, name, *extra, **options):
    cfg = config(f"data.shards={shards / 'shards'}", *extra)
    return Trainer(cfg, plugin="example", run_dir=tmp_path / name, progress=False, **options)


def losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["total"]) for r in map(json.loads, lines)]


PROCESSES = pytest.mark.parametrize("process", ["continuous", "masked"])


# the importance-sampling proposal is state too: a buffer fitted over training
@pytest.mark.parametrize(
    "process", ["continuous", "masked", "continuous diffusion.time_sampling=importance"]
)
def test_resume_reproduces_uninterrupted_run(tmp_path, shards, process):
    process, *options = process.split()
    extra = ("train.max_steps=12", f"diffusion.process={process}", *options)
    make(tmp_path, shards, "full", *extra).fit()

    def crash_after_eight(trainer, values):
        if trainer.step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make(tmp_path, shards, "split", *extra, on_step=crash_after_eight).fit()
    make(tmp_path, shards, "split", *extra, resume=True).fit()

    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(RunDir(tmp_path / "full").latest() / name)
        b = load_file(RunDir(tmp_path / "split").latest() / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_crash_while_writing_checkpoint_keeps_previous(tmp_path, shards, monkeypatch):
    make(tmp_path, shards, "run", "train.max_steps=4").fit()
    import lcmd_core.checkpoint as ckpt

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(CheckpointError, match=r"\(disk full\); the previous .*step-0000004 is"):
        make(tmp_path, shards, "run", "train.max_steps=8", resume=True).fit()
    run = RunDir(tmp_path / "run")
    assert run.latest().name == "step-0000004"
    assert not [p for p in run.checkpoints_dir.iterdir() if p.name.startswith(".tmp")]
    monkeypatch.undo()
    assert load_run(tmp_path / "run").step == 4


def test_existing_run_refused_without_resume(tmp_path, shards):
    make(tmp_path, shards, "run", "train.max_steps=4").fit()
    with pytest.raises(RunError, match="--resume"):
        make(tmp_path, shards, "run", "train.max_steps=4")


def test_checkpoint_of_another_codec_refused(tmp_path, shards):
    make(tmp_path, shards, "run", "train.max_steps=4").fit()
    state_path = RunDir(tmp_path / "run").latest() / "state.json"
    record = json.loads(state_path.read_text())
    record["state"]["fingerprint"] = "0000000000000000"
    state_path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_run(tmp_path / "run")


@pytest.mark.parametrize(("trained", "other"), [("continuous", "masked"), ("masked", "continuous")])
def test_checkpoint_of_one_process_refuses_to_load_as_the_other(tmp_path, shards, trained, other):
    make(tmp_path, shards, "run", "train.max_steps=4", f"diffusion.process={trained}").fit()
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["diffusion"]["process"] = other
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"process={trained}, but .* says {other}"):
        load_run(tmp_path / "run")


def test_checkpoint_that_does_not_fit_the_config_refused(tmp_path, shards):
    make(tmp_path, shards, "run", "train.max_steps=4").fit()
    cfg_path = tmp_path / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["width"] = 64
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_run(tmp_path / "run")


@PROCESSES
def test_sample_and_evaluate_write_files_with_protocol(tmp_path, shards, process):
    trainer = make(tmp_path, shards, "run", "train.max_steps=4", f"diffusion.process={process}")
    trainer.fit()
    result = trainer.sample(6, seed=3, labels=1)
    assert result.tokens.shape == (6, 32) and len(result.items) == 6
    assert (result.out_dir / "tokens.safetensors").is_file()
    protocol = json.loads((result.out_dir / "sample.json").read_text())
    assert protocol["seed"] == 3 and protocol["process"] == process
    assert protocol["temperature"] == (1.0 if process == "masked" else 0.0)
    again = Trainer.from_run(tmp_path / "run", progress=False).sample(6, seed=3, labels=1)
    assert torch.equal(result.tokens, again.tokens)
    metrics = trainer.evaluate("valid", max_sequences=64)
    assert 0 < metrics["elbo_bits_per_token"] < 20
    assert "name_validity/valid_name_fraction" in metrics
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["protocol"]["split"] == "valid" and saved["protocol"]["sequences"] == 64
    assert saved["protocol"]["process"] == process
    assert saved["protocol"]["temperature"] == protocol["temperature"]
    assert saved["protocol"]["metrics"]["name_validity"]["unicode_version"]  # the metric's own


def test_global_batch_split_into_micro_batches(tmp_path, shards):
    with pytest.raises(TrainerError, match="multiple"):
        make(tmp_path, shards, "bad", "train.max_steps=2", "train.micro_batch_size=3").fit()
    out = make(tmp_path, shards, "ok", "train.max_steps=2", "train.micro_batch_size=4").fit()
    assert out["step"] == 2


def test_nonfinite_steps_skipped_then_stop(tmp_path, shards, monkeypatch):
    from lcmd_core.model import LCMD

    original = LCMD.loss

    def nan_loss(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(LCMD, "loss", nan_loss)
    with pytest.raises(TrainerError, match="non-finite"):
        make(tmp_path, shards, "nan", "train.max_steps=4", "train.max_nonfinite_steps=2").fit()


def test_lr_schedule_warms_up_then_decays():
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)
    values = [lr_factor(s, 10, 100, 0.1) for s in range(10, 100)]
    assert all(a >= b for a, b in itertools.pairwise(values))


@PROCESSES
def test_load_run_returns_ema_model_in_eval_mode(tmp_path, shards, process):
    make(tmp_path, shards, "run", "train.max_steps=4", f"diffusion.process={process}").fit()
    run = load_run(tmp_path / "run")
    assert type(run.model) is PROCESSES_BY_NAME[process]
    assert not run.model.training and run.spec.num_classes == 6
    assert os.path.isdir(run.run_dir.codec_dir)
    assert run.model.sample(2, steps=2, seed=0, labels=0).shape == (2, 32)


def test_second_fit_continues_in_memory(tmp_path, shards):
    trainer = make(tmp_path, shards, "run", "train.max_steps=3")
    trainer.fit()
    table = trainer.model.embedding.table
    trainer.fit(max_steps=5)
    assert trainer.step == 5 and [s for s, _ in losses(tmp_path / "run")] == [1, 2, 3, 4, 5]
    assert trainer.model.embedding.table is table
    assert int(trainer.optimizer.state[table]["step"]) == 5  # not a fresh optimizer
    assert RunDir(tmp_path / "run").latest().name == "step-0000005"


def test_on_step_sees_every_finished_step_with_its_values(tmp_path, shards):
    seen = []

    def watch(trainer, values):
        seen.append((trainer.step, values["total"], trainer.run.latest()))

    make(tmp_path, shards, "run", "train.max_steps=5", on_step=watch).fit()
    assert [step for step, _, _ in seen] == [1, 2, 3, 4, 5]
    assert [total for _, total, _ in seen] == [total for _, total in losses(tmp_path / "run")]
    # called after the step's checkpoint: at step 4 it is already on disk
    assert seen[3][2].name == "step-0000004" and seen[2][2] is None


def test_trainer_takes_an_opened_setup(tmp_path, shards):
    from lcmd_core.run_setup import RunSetup

    cfg = config(f"data.shards={shards / 'shards'}", "train.max_steps=2")
    setup = RunSetup(cfg, plugin="example", run_dir=tmp_path / "run")
    trainer = Trainer(setup, progress=False)
    assert trainer.fit()["step"] == 2 and trainer.codec is setup.prepared.codec
    assert trainer.as_run().sample(2, steps=2).tokens.shape == (2, 32)
    with pytest.raises(TrainerError, match="takes its plugin"):
        Trainer(setup, plugin="example")


def test_trainer_and_load_run_sample_the_same(tmp_path, shards):
    trainer = make(tmp_path, shards, "run", "train.max_steps=4")
    trainer.fit()
    for use_ema in (True, False):
        live = trainer.sample(3, seed=2, use_ema=use_ema, steps=3)
        loaded = load_run(tmp_path / "run").sample(3, seed=2, use_ema=use_ema, steps=3)
        assert torch.equal(live.tokens, loaded.tokens)
    run = load_run(tmp_path / "run")
    pairs = ((run.model, trainer.ema.module), (run.training_model, trainer.model))
    for loaded, live in pairs:
        assert all(
            torch.equal(a, b)
            for a, b in zip(loaded.state_dict().values(), live.state_dict().values(), strict=True)
        )
    table = run.model.embedding.table
    assert not torch.equal(table, run.training_model.embedding.table)  # EMA ≠ training weights


def test_resume_refuses_a_changed_config_and_takes_the_safe_changes(tmp_path, shards):
    make(tmp_path, shards, "run", "train.max_steps=4").fit()
    with pytest.raises(RunError) as err:
        make(tmp_path, shards, "run", "train.max_steps=6", "model.width=64", "optim.lr=0.5",
             resume=True)  # fmt: skip
    assert "model.width 32 → 64" in str(err.value) and "→ 0.5" in str(err.value)
    assert "\n" not in str(err.value)
    trainer = make(tmp_path, shards, "run", "train.max_steps=6", "train.log_every=2", resume=True)
    assert trainer.fit()["step"] == 6
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["log_every"] == 2 and saved["train"]["max_steps"] == 6  # recorded


def test_a_corrupt_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, shards, capsys):
    make(tmp_path, shards, "run", "train.max_steps=8").fit()
    newest = RunDir(tmp_path / "run").latest()
    (newest / "model.safetensors").write_bytes(b"not tensors")
    trainer = make(tmp_path, shards, "run", "train.max_steps=8", resume=True)
    trainer.fit()
    assert "skipping step-0000008: checkpoint file" in capsys.readouterr().err
    assert trainer.step == 8 and [s for s, _ in losses(tmp_path / "run")] == list(range(1, 9))


def test_training_with_an_ema_cm_target(tmp_path, shards):
    out = make(
        tmp_path, shards, "ema", "train.max_steps=3", "diffusion.cm_target_weights=ema"
    ).fit()
    assert out["step"] == 3 and out["consistency"] > 0
