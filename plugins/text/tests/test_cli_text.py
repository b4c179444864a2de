"""End to end through `lcmd`: the tiny preset trains, samples with prompts and evaluates."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import lcmd_text.plugin
import pytest
import torch
from lcmd_text.bpe_codec import BPECodec
from lcmd_text.char_codec import CharCodec
from safetensors.torch import load_file

from lcmd_core.cli import main
from lcmd_core.plugins import get_plugin_manager
from lcmd_core.shards import TokenDataset

pytestmark = pytest.mark.usefixtures("one_thread")

SPEECHES = [
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n",
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n",
    "MERCUTIO:\nA plague o' both your houses!\n",
]
FAST = [
    *("--preset", "tiny", "--max-steps", "6", "--no-progress"),
    *("--set", "model.width=32", "--set", "model.depth=1", "--set", "train.checkpoint_every=3"),
    *("--set", "sample.steps=3", "--set", "sample.num_samples=3"),
]


def text_pm():
    """A plugin manager holding only the text plugin (not whatever else is installed)."""
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(lcmd_text.plugin, "text")
    return pm


def lcmd(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args], pm=text_pm())
    return code, out.getvalue(), err.getvalue()


def assert_user_error(result: tuple[int, str, str], match: str) -> None:
    code, _, err = result
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("lcmd: ") and match in err, err


def train_run(tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Path:
    """A tiny char model trained on a small folder corpus through `lcmd train`."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "play.txt").write_text("\n".join(SPEECHES * 60), encoding="utf-8")
    out = root.parent / f"run-{root.name}"
    data = ["--plugin", "text", "--data", "text_files", "--data-root", root]
    code, _, err = lcmd("train", *data, "--out", out, *FAST, *extra)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(tmp_path_factory)


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_run(tmp_path_factory, "--set", "diffusion.process=masked")


@pytest.mark.parametrize("which", ["run", "masked_run"])
def test_sample_with_prompt_keeps_prefix_and_infill_suffix(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run = request.getfixturevalue(which)
    code, out, err = lcmd("sample", run, "--prompt", "ROMEO:\n{gap:10}light", "--out", tmp_path)
    assert code == 0, err
    files = sorted(tmp_path.glob("sample-*.txt"))
    assert len(files) == 3 and "wrote 3 samples" in out
    for path in files:
        assert path.read_text(encoding="utf-8").startswith("ROMEO:\n")
    codec = CharCodec()
    codec.load(run / "codec")
    known = codec.prompt_tokens("ROMEO:\n{gap:10}light", 256)
    tokens = load_file(tmp_path / "tokens.safetensors")["tokens"]
    kept = known >= 0
    assert kept.sum() == 12 and (tokens[:, kept] == known[kept]).all()


@pytest.mark.parametrize("which", ["run", "masked_run"])
def test_eval_reports_elbo_bits_per_char_and_sample_metrics(
    which: str, request: pytest.FixtureRequest
) -> None:
    run = request.getfixturevalue(which)
    code, out, err = lcmd("eval", run, "--split", "valid", "--json", "--no-progress")
    assert code == 0, err
    metrics = json.loads(out)
    assert 0 < metrics["bpc/chars_per_token"] <= 1
    assert 0 < metrics["bpc/ngram5_bits_per_char"] < 3  # repetitive text: the 5-gram knows it
    for key in ("word_in_vocab", "distinct_2", "ngram_ppl"):
        assert key in {k.removeprefix("quality/").removesuffix("_heldout") for k in metrics}
    assert metrics["quality/word_in_vocab_heldout"] == 1.0
    assert metrics["elbo_bits_per_token"] > 0
    assert metrics["bpc/elbo_bits_per_char"] == pytest.approx(
        metrics["elbo_bits_per_token"] / metrics["bpc/chars_per_token"]
    )


def test_ddim_on_a_masked_run_is_one_line(masked_run: Path) -> None:
    assert_user_error(lcmd("sample", masked_run, "--sampler", "ddim"), "ancestral unmasking")


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        ("ROMEO: 7", "outside the vocabulary: '7'"),
        ("R" * 300, "takes 300 positions, more than the sequence length 256"),
    ],
)
def test_bad_prompt_is_one_line(run: Path, prompt: str, match: str) -> None:
    assert_user_error(lcmd("sample", run, "--prompt", prompt), match)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "hold no text"), ("café".encode("latin-1"), "not UTF-8 text")],
)
def test_bad_corpus_is_one_line(tmp_path: Path, content: bytes, match: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_bytes(content)
    args = ("prepare", "--plugin", "text", "--data", "text_files", "--data-root", tmp_path / "data")
    assert_user_error(lcmd(*args, "--out", tmp_path / "run"), match)


def test_prepare_trains_a_bpe_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("".join(SPEECHES * 30), encoding="utf-8")
    prepare = ["prepare", "--plugin", "text", "--data", "text_files", "--codec", "bpe"]
    prepare += ["--data-root", tmp_path / "data"]
    code, out, err = lcmd(
        *prepare, "--out", tmp_path / "run", "--set", "data.codec_options={vocab_size: 300}"
    )
    assert code == 0, err
    assert "codec   bpe: vocab 3" in out and "tokens (256,)" in out
    assert (tmp_path / "run" / "codec" / "tokenizer.json").is_file()
    short = "data.codec_options={vocab_size: 300, seq_len: 64}"
    code, out, err = lcmd(*prepare, "--out", tmp_path / "run2", "--set", short)
    assert code == 0, err
    train = TokenDataset(tmp_path / "run2" / "shards", "train")
    tokens = train.tokens(torch.arange(len(train)))
    codec = BPECodec()
    codec.load(tmp_path / "run2" / "codec")
    pad = codec.pad
    assert tokens.shape[1] == 64 and len(train) > 1
    assert not (tokens[:-1] == pad).any() and (tokens[-1] == pad).any()


def test_prompt_file_gives_one_prompt_per_sample_in_a_directory_of_its_own(
    run: Path, tmp_path: Path
) -> None:
    prompts = ["ROMEO:\n{gap:4}light", "JULIET:\n{gap:4}Romeo", "MERCUTIO:\n"]
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    code, out, err = lcmd("sample", run, "--prompt-file", jsonl)
    assert code == 0 and "wrote 3 samples" in out, err
    drawn = Path(out.split(" to ")[1].split(" (")[0])
    assert drawn.parent == run / "samples" and "-prompts-" in drawn.name
    texts = [p.read_text(encoding="utf-8") for p in sorted(drawn.glob("sample-*.txt"))]
    assert [t.split("\n")[0] for t in texts] == ["ROMEO:", "JULIET:", "MERCUTIO:"]
    record = json.loads((drawn / "sample.json").read_text())
    assert record["prompts"]["count"] == 3 and len(record["prompts"]["sha256"]) == 64
    kept = [
        json.loads(line)["prompt"] for line in (drawn / "prompts.jsonl").read_text().splitlines()
    ]
    assert kept == prompts
    again = lcmd("sample", run, "--prompt-file", jsonl)[1]  # the same draw again: a new directory
    assert Path(again.split(" to ")[1].split(" (")[0]).name == f"{drawn.name}-2"

    lines = tmp_path / "prompts.txt"
    lines.write_text("ROMEO:\nJULIET:\n")  # text: one prompt a line
    code, out, _ = lcmd("sample", run, "--prompt-file", lines, "--out", tmp_path / "two")
    assert code == 0 and "wrote 2 samples" in out
    assert_user_error(lcmd("sample", run, "--prompt-file", lines, "--n", 5), "holds 2 prompts")
    jsonl.write_text('{"prompt": 3}\n')
    assert_user_error(lcmd("sample", run, "--prompt-file", jsonl), f"{jsonl}:1: expected a string")
    both = ["--prompt", "ROMEO:", "--prompt-file", lines]
    assert lcmd("sample", run, *both)[0] == 2


def test_sampling_again_never_overwrites_the_training_preview(run: Path) -> None:
    preview = sorted((run / "samples").glob("preview-*"))[-1]
    before = (preview / "tokens.safetensors").read_bytes()
    drawn = []
    for _ in range(2):
        code, out, _ = lcmd("sample", run, "--steps", 2)
        assert code == 0
        drawn.append(Path(out.split(" to ")[1].split(" (")[0]).name)
    step = preview.name.removeprefix("preview-")
    assert drawn == [f"step-{step}-seed-0", f"step-{step}-seed-0-2"]
    assert (preview / "tokens.safetensors").read_bytes() == before
