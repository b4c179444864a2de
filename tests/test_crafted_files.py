"""Crafted run directories, shard indexes, configs and command lines: every probe ends in success
or one `lcmd: ...` line (exit 2), never a traceback or a hang; integrity violations are refused.

The named probes run by default; `pytest -m slow tests/test_crafted_files.py` adds many more
structure-mutating fuzz cases per file and prints the tally.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from lcmd_core.cli import main

pytest.importorskip("lcmd_example", reason="the example plugin is installed by `make test`")
pytestmark = pytest.mark.usefixtures("one_thread")

FAST = [
    *("--preset", "tiny", "--max-steps", "8", "--no-progress"),
    *("--set", "model.width=32", "--set", "model.depth=1", "--set", "model.embed_dim=8"),
    *("--set", "train.global_batch_size=8", "--set", "train.checkpoint_every=4"),
    *("--set", "sample.steps=2", "--set", "sample.num_samples=2"),
]
STEP = "checkpoints/step-0000008"
TALLY: Counter[str] = Counter()
HANG_SECONDS = 120


def lcmd(*args: object) -> tuple[int, str, str]:
    """`lcmd ARGS` in-process, in a thread that must finish within HANG_SECONDS."""
    result: dict[str, Any] = {}

    def run() -> None:
        out, err = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(err):
                result["code"] = main([str(a) for a in args])
        except BaseException as exc:  # a traceback would escape main: record it as one
            result["code"] = f"escaped {type(exc).__name__}: {exc}"
        result["out"], result["err"] = out.getvalue(), err.getvalue()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_SECONDS)
    if thread.is_alive():
        TALLY["hangs"] += 1
        pytest.fail(f"lcmd {' '.join(map(str, args))} did not return in {HANG_SECONDS} s")
    return result["code"], result["out"], result["err"]


def probe(*args: object, refused: str | None = None) -> tuple[int, str, str]:
    """Run a probe: success or one clean line; with `refused`, it must be refused with that."""
    code, out, err = lcmd(*args)
    TALLY["probes"] += 1
    clean = code == 2 and err.count("\n") == 1 and err.startswith("lcmd: ")
    if code not in (0, 2) or "Traceback" in err or (code == 2 and not clean):
        TALLY["tracebacks"] += 1
        pytest.fail(f"not one clean line: code {code!r}\n{err[-2000:]}")
    TALLY["one-line errors" if code == 2 else "successes"] += 1
    if refused is not None:
        assert code == 2 and refused in err, err
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("crafted") / "run"
    code, _, err = lcmd("train", "--plugin", "example", "--out", run, *FAST)
    assert code == 0, err
    return run


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def resume(run: Path, refused: str | None = None) -> tuple[int, str, str]:
    return probe("train", "--out", run, "--resume", "--max-steps", 8, refused=refused)


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


# ------------------------------------------------------------------------ integrity checks
def test_a_shard_with_a_wrong_checksum_is_refused(run: Path) -> None:
    def wrong(index: dict) -> dict:
        index["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
        return index

    edit_json(run / "shards" / "index.json", wrong)
    resume(run, refused="sha256 mismatch")


def test_a_shard_swapped_for_another_valid_shard_is_refused(run: Path) -> None:
    shards = run / "shards"
    shutil.copyfile(shards / "test-00000.safetensors", shards / "train-00000.safetensors")
    resume(run, refused="corrupt or replaced")


@pytest.mark.parametrize("name", ["/etc/passwd", "../config.json", "..", "a/b.safetensors"])
def test_an_index_naming_a_file_outside_its_directory_is_refused(run: Path, name: str) -> None:
    def outside(index: dict) -> dict:
        index["splits"]["train"]["shards"][0]["file"] = name
        return index

    edit_json(run / "shards" / "index.json", outside)
    probe("eval", run, refused="is not a file name inside it")
    # `prepare` (inside `train`) does not trust it either: it encodes the shards again
    assert resume(run)[0] == 0
    assert name not in (run / "shards" / "index.json").read_text()


@pytest.mark.parametrize("name", ["/etc/passwd", "../../config.json", "../step-0000004/x"])
def test_a_checkpoint_listing_a_file_outside_it_is_refused(run: Path, name: str) -> None:
    def outside(record: dict) -> dict:
        record["files"][name] = "0" * 64
        return record

    edit_json(run / STEP / "state.json", outside)
    probe("sample", run, refused="is not a file name inside it")


def test_float_tokens_in_a_shard_are_refused(run: Path) -> None:
    path = run / "shards" / "train-00000.safetensors"
    tensors = load_file(path)
    save_file({**tensors, "tokens": tensors["tokens"].float()}, path)

    def rehash(index: dict) -> dict:
        from lcmd_core.checkpoint import sha256_file

        index["splits"]["train"]["shards"][0]["sha256"] = sha256_file(path)
        return index

    edit_json(run / "shards" / "index.json", rehash)
    resume(run, refused="does not match its index")


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        (torch.int64, "not floating point"),
        (torch.bool, "not floating point"),
        (torch.complex64, "not floating point"),
        (None, "holds NaN or Inf"),
    ],
)
def test_weights_of_the_wrong_kind_are_refused(run: Path, dtype: Any, message: str) -> None:
    for name in ("model", "ema"):
        path = run / STEP / f"{name}.safetensors"
        tensors = load_file(path)
        key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
        value = tensors[key]
        tensors[key] = value.to(dtype) if dtype is not None else value.fill_(float("nan"))
        save_file(tensors, path)
        edit_json(run / STEP / "state.json", lambda r, n=name, p=path: _rehash(r, n, p))
    probe("sample", run, refused=message)  # checksums recomputed: refused for the content


def _rehash(record: dict, name: str, path: Path) -> dict:
    from lcmd_core.checkpoint import sha256_file

    record["files"][path.name if name == "optimizer" else f"{name}.safetensors"] = sha256_file(path)
    return record


# ------------------------------------------------------------- structure of state.json etc.
STATE_MUTATIONS: dict[str, Callable[[Any], Any]] = {
    "a list": lambda r: [r],
    "null": lambda r: None,
    "no files": lambda r: {k: v for k, v in r.items() if k != "files"},
    "a string step": lambda r: {**r, "step": "8"},
    "no fingerprint": lambda r: {
        **r,
        "state": {k: v for k, v in r["state"].items() if k != "fingerprint"},
    },
    "a 5000-digit step": lambda r: {**r, "step": int("9" * 4000)},
    "a string EMA counter": lambda r: {**r, "state": {**r["state"], "ema_updates": "many"}},
    "a malformed data position": lambda r: {
        **r,
        "state": {**r["state"], "batch_order": {"epoch": -1}},
    },
    "a malformed RNG state": lambda r: {**r, "rng": {"python": [1, 2], "torch": "x"}},
    "a data position past the data": lambda r: {
        **r,
        "state": {**r["state"], "batch_order": {"epoch": 0, "position": 10**9}},
    },
}


@pytest.mark.parametrize("mutation", list(STATE_MUTATIONS))
def test_malformed_state_json_is_one_line_or_skipped(run: Path, mutation: str) -> None:
    path = run / STEP / "state.json"
    raw = path.read_text()
    try:
        path.write_text(json.dumps(STATE_MUTATIONS[mutation](json.loads(raw))))
    except ValueError:  # json refuses to write the 5000-digit integer: write it by hand
        path.write_text(raw.replace('"step": 8', '"step": ' + "9" * 5000))
    code, _, err = resume(run)
    if code == 0:  # resumed from the checkpoint before, saying which was skipped
        assert "skipping step-0000008" in err
    assert probe("sample", run)[0] in (0, 2)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a": ' + "9" * 5000 + "}", "\xff\xfe{", '{"files": '],
)
@pytest.mark.parametrize("name", ["state.json", "optimizer.json"])
def test_undecodable_checkpoint_json_is_one_line_or_skipped(
    run: Path, name: str, text: str
) -> None:
    (run / STEP / name).write_bytes(
        text.encode("utf-8", "surrogateescape") if "\xff" not in text else b"\xff\xfe{"
    )
    code, _, err = resume(run)
    assert code == 2 or "skipping step-0000008" in err


def test_dangling_optimizer_references_are_one_line(run: Path) -> None:
    def dangle(record: dict) -> dict:
        record["state"][0][1] = {"exp_avg": {"__tensor__": "nothing/here"}}
        return record

    edit_json(run / STEP / "optimizer.json", dangle)
    edit_json(
        run / STEP / "state.json", lambda r: _rehash(r, "optimizer", run / STEP / "optimizer.json")
    )
    code, _, err = resume(run)  # the checkpoint before it is whole: training goes on from there
    assert code == 0 and "optimizer.json refers to tensor 'nothing/here'" in err


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", "null", '{"model": {"width": ' + "9" * 5000 + "}}", "[" * 100_000],
)
def test_a_broken_config_json_is_one_line(run: Path, content: str) -> None:
    (run / "config.json").write_text(content)
    probe("sample", run, refused="config.json")
    probe("eval", run, refused="config.json")


@pytest.mark.parametrize("content", ["[]", '{"plugin": "example"}', '{"codec": 3, "options": []}'])
def test_a_broken_codec_marker_is_one_line(run: Path, content: str) -> None:
    (run / "codec" / "codec.json").write_text(content)
    probe("sample", run, refused="codec.json")


def test_a_codec_state_that_is_a_list_is_one_line(run: Path) -> None:
    (run / "codec" / "vocab.json").write_text("[1, 2, 3]")
    probe("sample", run)


def test_shard_rows_missing_is_one_line(run: Path) -> None:
    def no_rows(index: dict) -> dict:
        del index["splits"]["train"]["shards"][0]["rows"]
        return index

    edit_json(run / "shards" / "index.json", no_rows)
    probe("eval", run, refused="rows")


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(run: Path) -> None:
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "tot')
    code, _, err = resume(run)
    assert code == 0 and "dropped 1 unreadable line" in err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] <= 8 for line in lines)


# ------------------------------------------------------------------------- command lines
def test_absurd_command_lines_are_one_line(run: Path, tmp_path: Path) -> None:
    probe("sample", run, "--n", 10**9, refused="at most 1,000,000")
    probe("sample", run, "--steps", 10**9, refused="at most 100,000")
    probe("sample", run, "--seed", 2**70, refused="expected a seed")
    probe("sample", run, "--prompt", "A{gap:100000000}", refused="does not take prompts")
    (tmp_path / "file").write_text("x")
    probe("train", "--plugin", "example", "--out", tmp_path / "file", refused="is a file")
    probe(
        "train",
        "--plugin",
        "example",
        "--out",
        tmp_path / "w",
        "--set",
        "model.width=10000000",
        refused="model.width",
    )


def test_resource_requests_are_refused_before_allocating(tmp_path: Path) -> None:
    big = ["--set", "model.width=65536", "--set", "model.depth=1024"]
    probe("train", "--plugin", "example", "--out", tmp_path / "w", *big, refused="memory")
    long = ["--set", "data.codec_options={length: 1000000000}"]
    probe("train", "--plugin", "example", "--out", tmp_path / "l", *long, refused="memory")
    assert not (tmp_path / "w" / "checkpoints").exists()  # refused before training


LAUGHS = "a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b]\n"


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (LAUGHS, "aliases"),
        ("train:\n  seed: 2001-02-30\n", "day is out of range"),
        ("\xff\xfe", "not UTF-8"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_crafted_config_files_are_one_line(tmp_path: Path, text: str, refused: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(text.encode("utf-8") if "\xff" not in text else b"\xff\xfe")
    probe(
        "train", "--plugin", "example", "--out", tmp_path / "r", "--config", path, refused=refused
    )


# --------------------------------------------------------------------- structure fuzzing
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def mutate(value: Any, draw: Any) -> Any:
    """A structural mutation of a decoded JSON value: replace, drop or wrap one node."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["drop", "replace", "descend"]))
        if action == "drop":
            return {k: v for k, v in value.items() if k != key}
        if action == "replace":
            return {**value, key: draw(JSON_VALUES)}
        return {**value, key: mutate(value[key], draw)}
    if isinstance(value, list) and value and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        return [*value[:i], mutate(value[i], draw), *value[i + 1 :]]
    return draw(st.sampled_from([None, [value], "x", 2**70, -1, {}]))


FILES = {
    "state.json": STEP + "/state.json",
    "optimizer.json": STEP + "/optimizer.json",
    "index.json": "shards/index.json",
    "config.json": "config.json",
    "codec.json": "codec/codec.json",
}


def fuzz(trained: Path, tmp_path: Path, name: str, data: Any) -> None:
    run = tmp_path / f"fuzz-{TALLY['probes']}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(trained, run)
    path = run / FILES[name]
    path.write_text(json.dumps(mutate(json.loads(path.read_text()), data.draw)))
    probe("eval", run, "--n-samples", 2)
    resume(run)
    probe("sample", run)


@pytest.mark.parametrize("name", list(FILES))
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_structure_fuzz_never_tracebacks(trained: Path, tmp_path: Path, name: str, data) -> None:
    fuzz(trained, tmp_path, name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FILES))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_structure_fuzz_many(trained: Path, tmp_path: Path, name: str, data) -> None:
    fuzz(trained, tmp_path, name, data)


@pytest.mark.slow
def test_zz_print_the_tally() -> None:
    print(
        f"\ncrafted-input suite: {TALLY['probes']} probes, {TALLY['one-line errors']} one-line "
        f"errors, {TALLY['successes']} successes, {TALLY['tracebacks']} tracebacks, "
        f"{TALLY['hangs']} hangs"
    )
    assert TALLY["tracebacks"] == TALLY["hangs"] == 0
