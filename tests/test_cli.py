"""The `lcmd` command line: prepare → train → sample → eval; user errors are one line, exit 2."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from lcmd_core.cli import main
from lcmd_core.config import ConfigError, apply_overrides, parse_override, resolve_config
from lcmd_core.plugins import DataNotFoundError, DatasetInfo, get_plugin_manager, hookimpl
from lcmd_core.shards import TokenDataset

example_plugin = pytest.importorskip("lcmd_example.plugin", reason="needs the example plugin")

STEPS = 8
CONFIG = [
    "--preset",
    "tiny",
    *("--set", "model.width=32", "--set", "model.depth=1", "--set", "model.embed_dim=8"),
    *("--set", "train.global_batch_size=32", "--set", "train.log_every=1"),
    *("--set", "train.checkpoint_every=4", "--set", "optim.warmup_steps=2"),
    *("--set", "sample.steps=2", "--set", "sample.num_samples=4"),
]
FAST = [*CONFIG, "--max-steps", str(STEPS), "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


@contextlib.contextmanager
def watched(on_step: Any) -> Iterator[None]:
    """`lcmd train` inside the block calls `on_step(trainer, values)` after every step."""
    from lcmd_core import trainer

    class Watched(trainer.Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, on_step=on_step, **kwargs)

    original, trainer.Trainer = trainer.Trainer, Watched
    try:
        yield
    finally:
        trainer.Trainer = original


def lcmd(*args: object, pm: object = None) -> tuple[int, str, str]:
    """Run `lcmd ARGS` in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args], pm=pm)
    return code, out.getvalue(), err.getvalue()


def assert_user_error(result: tuple[int, str, str], match: str) -> None:
    """Exit code 2 and exactly one stderr line `lcmd: ...` containing `match`, no traceback."""
    code, _, err = result
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("lcmd: "), err
    assert "Traceback" not in err
    assert match in err, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """`lcmd prepare` then `lcmd train` into one run directory, shared by this module's tests."""
    run = tmp_path_factory.mktemp("cli") / "run"
    prepared = lcmd("prepare", "--plugin", "example", "--out", run, *CONFIG)
    assert prepared[0] == 0, prepared[2]
    train = lcmd("train", "--plugin", "example", "--out", run, *FAST)
    assert train[0] == 0, train[2]
    return {"run": run, "prepare": prepared[1], "train": train[1]}


def test_prepare_train_sample_eval_end_to_end(trained: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich fits tables to the terminal width
    run: Path = trained["run"]
    index = json.loads((run / "shards" / "index.json").read_text())
    assert f"codec   chars: vocab {index['spec']['vocab_size']}, tokens (32,)" in trained["prepare"]

    assert f"checkpoints  {run / 'checkpoints'} (latest: step-{STEPS:07d})" in trained["train"]
    assert "bits_per_token" in trained["train"]
    assert json.loads((run / "config.json").read_text())["model"]["width"] == 32
    assert (run / "checkpoints" / f"step-{STEPS:07d}" / "model.safetensors").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == STEPS
    assert (run / "samples" / f"preview-{STEPS:07d}" / "tokens.safetensors").is_file()

    out = tmp_path / "drawn"
    code, stdout, _ = lcmd(
        "sample", run, "--n", 3, "--steps", 2, "--sampler", "ddim", "--guidance", 2,
        "--label", "letter", "--seed", 1, "--out", out, "--no-ema", "--no-progress",
    )  # fmt: skip
    assert code == 0 and f"wrote 3 samples to {out}" in stdout
    saved = load_file(out / "tokens.safetensors")
    assert saved["tokens"].shape == (3, 32) and saved["labels"].tolist() == [0, 0, 0]
    protocol = json.loads((out / "sample.json").read_text())
    assert (protocol["sampler"], protocol["guidance"], protocol["ema"]) == ("ddim", 2.0, False)
    assert len((out / "samples.txt").read_text().splitlines()) == 3

    code, stdout, _ = lcmd("eval", run, "--n-samples", 4, "--no-progress")
    assert code == 0 and "elbo_bits_per_token" in stdout and "name_validity" in stdout
    written = json.loads((run / "metrics.json").read_text())
    assert written["protocol"]["checkpoint_step"] == STEPS
    code, stdout, _ = lcmd("eval", run, "--n-samples", 4, "--json", "--no-progress")
    metrics = json.loads(stdout)
    assert code == 0 and 0 < metrics["elbo_bits_per_token"] < 64
    assert metrics == written["metrics"]
    code, _, _ = lcmd("eval", run, "--n-samples", 2, "--steps", 3, "--guidance", 1.5, "--json")
    protocol = json.loads((run / "metrics.json").read_text())["protocol"]
    assert code == 0 and (protocol["steps"], protocol["guidance"]) == (3, 1.5)
    assert protocol["readout_gate"] == 1.0  # LCMD's default
    for gate, recorded in (("off", "off"), ("-2.5", -2.5)):
        code, _, _ = lcmd("eval", run, "--n-samples", 2, "--steps", 3, "--readout-gate", gate)
        protocol = json.loads((run / "metrics.json").read_text())["protocol"]
        assert code == 0 and protocol["readout_gate"] == recorded


def test_label_by_index_matches_label_by_name(trained: dict, tmp_path: Path) -> None:
    for label in ("number", "2"):
        out = tmp_path / label
        assert lcmd("sample", trained["run"], "--n", 2, "--label", label, "--out", out)[0] == 0
        assert load_file(out / "tokens.safetensors")["labels"].tolist() == [2, 2]


def test_resume_at_max_steps_has_nothing_to_train(trained: dict) -> None:
    code, stdout, _ = lcmd(
        "train", "--plugin", "example", "--out", trained["run"], *FAST, "--resume"
    )
    assert code == 0 and f"already at step {STEPS}" in stdout


def test_plugins_lists_example_codec_dataset_preset_and_metric(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich fits tables to the terminal width
    code, stdout, _ = lcmd("plugins", "--json")
    example = json.loads(stdout)["example"]
    assert code == 0
    assert [c["name"] for c in example["codecs"]] == ["chars"]
    assert [(d["name"], d["default"]) for d in example["datasets"]] == [("unicode_names", True)]
    assert example["presets"][0]["name"] == "tiny" and "CPU" in example["presets"][0]["description"]
    assert [m["name"] for m in example["metrics"]] == ["name_validity"]
    code, stdout, _ = lcmd("plugins")
    for name in ("example", "chars", "unicode_names (default)", "tiny", "name_validity"):
        assert name in stdout


def test_plugins_table_prints_square_brackets_as_text(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")

    class Bracketed:
        @hookimpl
        def lcmd_register_presets(self, register) -> None:
            register("paper", {}, "the paper's setting [reconstructed]")

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Bracketed(), name="bracketed")
    code, stdout, _ = lcmd("plugins", pm=pm)
    assert code == 0 and "the paper's setting [reconstructed]" in stdout


def read_scans(root: Path | None, split: str) -> tuple[list[str], None]:
    path = Path(root or ".") / f"scans-{split}.txt"
    if not path.is_file():
        raise DataNotFoundError(f"--data scans: no {path.name} under {root} (from example.org)")
    return path.read_text().splitlines(), None


class Rooted:
    """A plugin whose only data set lives under a data root."""

    @hookimpl
    def lcmd_register_codecs(self, register) -> None:
        register("chars", example_plugin.chars_codec)

    @hookimpl
    def lcmd_register_datasets(self, register) -> None:
        register(
            DatasetInfo(
                name="scans",
                description="text files under a data root",
                read=read_scans,
                default_codec="chars",
                needs_root=True,
                source="example.org",
            )
        )


def rooted_manager():
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Rooted(), name="rooted")
    return pm


def test_missing_data_root_names_where_the_files_come_from(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LCMD_DATA_ROOT", raising=False)
    result = lcmd("prepare", "--plugin", "rooted", "--out", tmp_path / "run", pm=rooted_manager())
    assert_user_error(result, "dataset 'scans' needs --data-root (or LCMD_DATA_ROOT)")
    assert "example.org" in result[2]


def test_data_root_defaults_to_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LCMD_DATA_ROOT", str(tmp_path))
    result = lcmd("prepare", "--plugin", "rooted", "--out", tmp_path / "run", pm=rooted_manager())
    assert_user_error(result, f"no scans-train.txt under {tmp_path}")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["fly"], "invalid choice: 'fly'"),
        (["train"], "required: --plugin (see `lcmd train --help`)"),
        (["train", "--plugin", "nope"], "unknown plugin 'nope' (installed:"),
        (["train", "--plugin", "example", "--data", "text9"], "has no dataset 'text9'"),
        (["train", "--plugin", "example", "--preset", "huge"], "has no preset 'huge'"),
        (["train", "--plugin", "example", "--set", "train.max_stepz=5"], "no key 'max_stepz'"),
        (["train", "--plugin", "example", "--set", "train.max_steps=abc"], "train.max_steps:"),
        (["train", "--plugin", "example", "--set", "lr"], "expected KEY=VALUE"),
        (["train", "--plugin", "example", "--max-steps", "0"], "expected a positive integer"),
        (["train", "--plugin", "example", "--config", "nope.yaml"], "--config nope.yaml"),
        (["prepare", "--plugin", "example", "--data-root", "/no/such/dir"], "/no/such/dir"),
        (["sample", "run", "--sampler", "euler"], "argument --sampler: invalid choice"),
        (["sample", "run", "--guidance", "-1"], "expected a number >= 0"),
        (["sample", "run", "--readout-gate", "of"], "expected a number or 'off', got 'of'"),
        (["eval", "run", "--readout-gate", "inf"], "expected a number or 'off', got 'inf'"),
        (["eval", "run", "--n-samples", "many"], "expected a positive integer, got 'many'"),
        (["eval", "run", "--steps", "0"], "expected a positive integer, got '0'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], match: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_user_error(lcmd(*args), match)


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_missing_run_directory_is_one_line_exit_2(command: str, tmp_path: Path) -> None:
    assert_user_error(lcmd(command, tmp_path / "nope"), "is not a run directory (no config.json)")


def test_resume_without_a_checkpoint_starts_the_run_and_says_so(tmp_path: Path) -> None:
    args = ["train", "--plugin", "example", "--out", tmp_path / "new", *FAST, "--resume"]
    code, stdout, err = lcmd(*args)  # killed before anything was written: start from scratch
    assert code == 0 and f"(latest: step-{STEPS:07d})" in stdout
    assert "has no checkpoint yet; starting it from the command line's config" in err
    shutil.rmtree(tmp_path / "new" / "checkpoints")  # killed before the first checkpoint
    (tmp_path / "new" / "metrics.jsonl").unlink()
    code, stdout, err = lcmd(*args)
    assert code == 0 and "starting it from its config.json" in err
    assert len((tmp_path / "new" / "metrics.jsonl").read_text().splitlines()) == STEPS


def test_training_over_existing_checkpoints_needs_resume(trained: dict) -> None:
    result = lcmd("train", "--plugin", "example", "--out", trained["run"], *FAST)
    assert_user_error(result, "already holds checkpoints; pass --resume")


def test_checkpoint_that_does_not_fit_the_config_is_one_line(trained: dict, tmp_path) -> None:
    run = shutil.copytree(trained["run"], tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["model"]["width"] = 48
    (run / "config.json").write_text(json.dumps(config))
    assert_user_error(lcmd("sample", run), "does not fit the model")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--label", "vegetable"], "--label 'vegetable': expected one of letter, mark"),
        (["--label", "6"], "label 6 is outside [0, 6)"),
    ],
)
def test_bad_label_is_one_line(trained: dict, args: list[str], match: str) -> None:
    assert_user_error(lcmd("sample", trained["run"], *args), match)


def test_prompt_to_a_codec_without_prompt_tokens_is_one_line(trained: dict) -> None:
    assert_user_error(
        lcmd("sample", trained["run"], "--prompt", "LATIN"), "codec chars does not take prompts"
    )


def test_eval_of_unknown_split_is_one_line(trained: dict) -> None:
    assert_user_error(lcmd("eval", trained["run"], "--split", "dev"), "split 'dev' is not in")


def test_interrupt_keeps_checkpoint_and_prints_resume_command(
    trained: dict, tmp_path: Path
) -> None:
    def interrupted_after_6(trainer, values):
        if trainer.step == 6:
            raise KeyboardInterrupt

    shards = f"data.shards={trained['run'] / 'shards'}"
    args = ["train", "--plugin", "example", "--out", tmp_path / "run", *FAST, "--set", shards]
    with watched(interrupted_after_6):
        code, _, err = lcmd(*args)
    assert code == 130 and err.count("\n") == 1, err
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000004"
    assert f"SIGINT at step 6; checkpoint {checkpoint} holds step 4" in err
    again = shlex.split(err.split("`")[1])
    assert again[:2] == ["lcmd", "train"] and again[-1] == "--resume"

    code, stdout, _ = lcmd(*again[1:])
    assert code == 0 and f"(latest: step-{STEPS:07d})" in stdout


def test_sigterm_checkpoints_the_step_and_exits_143(trained: dict, tmp_path: Path) -> None:
    def terminated_before_6(trainer, values):
        if trainer.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # step 6 still runs, then is checkpointed

    shards = f"data.shards={trained['run'] / 'shards'}"
    args = ["train", "--plugin", "example", "--out", tmp_path / "run", *FAST, "--set", shards]
    with watched(terminated_before_6):
        code, _, err = lcmd(*args)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-0000006"
    assert code == 143 and err.count("\n") == 1, err
    assert f"SIGTERM at step 6; checkpoint {checkpoint} holds step 6" in err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored

    code, stdout, _ = lcmd(*shlex.split(err.split("`")[1])[1:])
    assert code == 0 and f"(latest: step-{STEPS:07d})" in stdout


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_last(
    trained: dict, tmp_path: Path, monkeypatch
) -> None:
    from lcmd_core import checkpoint

    real_save, calls = checkpoint.save_file, []

    def fills_the_disk(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 3:  # the second checkpoint (three files each) finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", fills_the_disk)
    shards = f"data.shards={trained['run'] / 'shards'}"
    args = ["train", "--plugin", "example", "--out", tmp_path / "run", *FAST, "--set", shards]
    first = tmp_path / "run" / "checkpoints" / "step-0000004"
    assert_user_error(lcmd(*args), f"(No space left on device); the previous checkpoint {first}")
    checkpoint.load_checkpoint(first)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == [first.name]


def test_config_file_cannot_send_shards_outside_the_run(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  shards: {outside}\n")
    args = ["prepare", "--plugin", "example", "--out", tmp_path / "run", *CONFIG]
    assert_user_error(lcmd(*args, "--config", config), "outside the run directory")
    assert not outside.exists()
    inside = tmp_path / "run" / "my-shards"
    config.write_text(f"data:\n  shards: {inside}\n")
    assert lcmd(*args, "--config", config)[0] == 0 and (inside / "index.json").is_file()
    on_cli = ["--config", config, "--set", f"data.shards={outside}"]
    assert lcmd(*args, *on_cli)[0] == 0 and (outside / "index.json").is_file()


def test_second_trainer_on_a_run_directory_is_refused(trained: dict, tmp_path: Path) -> None:
    from lcmd_core.run_guard import run_lock

    shards = f"data.shards={trained['run'] / 'shards'}"
    args = ["train", "--plugin", "example", "--out", tmp_path / "run", *FAST, "--set", shards]
    with run_lock(tmp_path / "run"):
        assert_user_error(lcmd(*args), f"is being trained by pid {os.getpid()} on")
    code, _, _ = lcmd(*args)  # released: the same command now trains
    assert code == 0


def test_interrupt_before_first_checkpoint_says_start_again(tmp_path) -> None:
    def interrupted(trainer, values):
        raise KeyboardInterrupt

    with watched(interrupted):
        code, _, err = lcmd("train", "--plugin", "example", "--out", tmp_path / "run", *FAST)
    assert code == 130 and err.count("\n") == 1
    assert "interrupted before the first checkpoint; start again with `lcmd train" in err
    assert "--resume" not in err


def test_console_script_and_module_exit_codes(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("lcmd")
    if not script.is_file():
        pytest.skip(f"no console script beside {sys.executable}")
    listed = subprocess.run([script, "plugins", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0 and "example" in json.loads(listed.stdout)
    missing = subprocess.run(
        [sys.executable, "-m", "lcmd_core.cli", "sample", tmp_path / "nope"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == f"lcmd: {tmp_path / 'nope'} is not a run directory (no config.json)\n"
    helped = subprocess.run([script, "train", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--max-steps N" in helped.stdout


# --------------------------------------------------------------------------- --set parsing
def typed(value: object) -> str:
    """How a user would type `value` after `--set key=`."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else repr(value)


def is_yaml_string(text: str) -> bool:
    return yaml.safe_load(text) == text


SETTINGS = st.one_of(
    st.tuples(st.just("train.seed"), st.integers(-(2**63), 2**64 - 1)),
    st.tuples(st.just("train.max_steps"), st.integers(1, 10**9)),
    st.tuples(st.just("model.embed_dim"), st.integers(1, 2**16)),
    st.tuples(st.sampled_from(["optim.lr", "diffusion.w_diff"]), st.floats(1e-9, 1e9)),
    st.tuples(st.just("diffusion.shift"), st.floats(-20, 20)),
    st.tuples(st.sampled_from(["model.self_condition", "train.compile"]), st.booleans()),
    st.tuples(st.just("sample.sampler"), st.sampled_from(["ancestral", "ddim"])),
    st.tuples(
        st.sampled_from(["data.dataset", "data.codec"]),
        st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(is_yaml_string),
    ),
)


@settings(deadline=None)
@given(SETTINGS, st.sampled_from(["", " "]))
def test_set_round_trips_valid_keys_and_values(setting: tuple[str, object], pad: str) -> None:
    key, value = setting
    text = f"{pad}{key}{pad}={pad}{typed(value)}{pad}"
    parts, _ = parse_override(text)
    assert parts == key.split(".")
    section, field = parts
    assert getattr(getattr(resolve_config(overrides=[text]), section), field) == value


GARBAGE = st.one_of(
    st.text(),
    st.builds("{}={}".format, st.text(), st.text()),
    st.builds(
        "{}={}".format,
        st.sampled_from(["train.seed", "optim.betas", "data.codec_options", "model", "version"]),
        st.text(),
    ),
)


@settings(deadline=None)
@given(GARBAGE)
@example("train.seed=2001-02-30")  # YAML reads a date; an impossible one must not leak ValueError
def test_set_garbage_raises_only_config_error(text: str) -> None:
    try:
        apply_overrides({}, [text])
        resolve_config(overrides=[text])
    except ConfigError as err:
        assert "\n" not in str(err)


def test_sample_and_eval_need_no_optimizer_state(trained: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    latest = run / "checkpoints" / f"step-{STEPS:07d}"
    for name in ("optimizer.safetensors", "optimizer.json"):
        (latest / name).unlink()
    code, stdout, err = lcmd("sample", run, "--n", 2, "--steps", 2, "--out", tmp_path / "drawn")
    assert code == 0 and "wrote 2 samples" in stdout, err
    code, _, err = lcmd("eval", run, "--n-samples", 2, "--steps", 2, "--json")
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["protocol"]["checkpoint_step"] == STEPS
    # training further does need it: the checkpoint before it, whole, is resumed instead
    again = ["train", "--plugin", "example", "--out", run, *FAST, "--resume"]
    code, stdout, err = lcmd(*again)
    assert code == 0 and f"(latest: step-{STEPS:07d})" in stdout, err
    assert f"skipping step-{STEPS:07d}: checkpoint file" in err and "is missing" in err
    assert (latest / "optimizer.json").is_file()  # step 8 trained again and checkpointed whole


def test_eval_table_marks_the_better_direction(trained: dict, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, stdout, _ = lcmd("eval", trained["run"], "--n-samples", 2, "--steps", 2)
    assert code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in
            stdout.splitlines() if line.count("│") == 4}  # fmt: skip
    assert rows["elbo_bits_per_token"] == "↓" and rows["elbo_bits_per_token_stderr"] == ""
    assert rows["name_validity/valid_name_fraction"] == "↑"
    listed = json.loads(lcmd("plugins", "--json")[1])["example"]["metrics"][0]
    assert listed["higher_is_better"] == {"valid_name_fraction": True, "valid_word_fraction": True}


def test_resume_takes_the_plugin_and_data_set_from_the_run(trained: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    more = ["--max-steps", STEPS + 2, "--no-progress"]
    code, stdout, err = lcmd("train", "--out", run, "--resume", *more)
    assert code == 0 and f"(latest: step-{STEPS + 2:07d})" in stdout, err
    assert_user_error(lcmd("train", "--resume", *more), "required: --plugin")
    assert_user_error(lcmd("train", "--out", tmp_path / "none", *more), "required: --plugin")
    (run / "config.json").write_text("[]")
    assert_user_error(lcmd("train", "--out", run, "--resume", *more), "names no plugin")


def test_failed_start_leaves_no_empty_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("lcmd_text")
    run = tmp_path / "new"
    args = ["train", "--plugin", "text", "--data", "text8", "--out", run, "--data-root", tmp_path]
    code, _, err = lcmd(*args, "--max-steps", 1, "--no-progress")
    assert code == 2 and "text8" in err, err
    assert not run.exists()
    run.mkdir()  # a directory the user made is left alone
    assert lcmd(*args, "--max-steps", 1, "--no-progress")[0] == 2 and run.is_dir()


def test_eval_infill_scores_regenerated_positions(trained: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained["run"], run)
    assert lcmd("eval", run, "--n-samples", 2, "--steps", 2, "--json")[0] == 0
    code, stdout, err = lcmd(
        "eval", run, "--task", "infill", "--hide", 0.25, "--n-samples", 6, "--steps", 2, "--json"
    )
    assert code == 0, err
    metrics = json.loads(stdout)
    assert 0 <= metrics["infill/accuracy"] <= 1 and "name_validity/valid_name_fraction" in metrics
    written = json.loads((run / "metrics.json").read_text())
    protocol = written["protocol"]
    assert protocol["task"] == "infill" and protocol["items"] == 6
    assert (protocol["hidden_share"], protocol["hidden_per_item"]) == (0.25, 8)  # of 32 positions
    assert set(written["tasks"]) == {"generate", "infill"}  # the generation result is kept
    tokens = load_file(run / "samples" / f"infill-{STEPS:07d}" / "tokens.safetensors")["tokens"]
    held = TokenDataset(run / "shards", "test").tokens(torch.arange(6))
    assert ((tokens == held).sum(1) >= 32 - 8).all()  # the kept positions are the item's own
    again = json.loads(lcmd("eval", run, "--task", "infill", "--hide", 0.25, "--n-samples", 6,
                            "--steps", 2, "--json")[1])  # fmt: skip
    assert again == metrics  # a fixed, seeded draw of hidden positions
    assert_user_error(lcmd("eval", run, "--task", "infill", "--hide", 1.5), "must lie in (0, 1]")


@pytest.mark.parametrize(
    "setting",
    ["train.seed=18446744073709551616", "train.max_steps=1000000001", "model.width=10000000",
     "model.depth=100000", "sample.steps=100001", "sample.num_samples=1000000001"],
)  # fmt: skip
def test_sizes_beyond_their_bounds_are_one_line(setting: str) -> None:
    with pytest.raises(ConfigError, match="less than") as err:
        resolve_config(overrides=[setting])
    assert "\n" not in str(err.value)
