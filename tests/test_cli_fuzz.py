"""Fuzzing the command line and config files: every rejection is exit 2 and one line.

Argument lists are drawn from the CLI's own vocabulary plus bad values; where a command line is
valid, training and preparation are replaced by a marker so that no example trains a model.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcmd_core.cli import main
from lcmd_core.config import ConfigError, resolve_config

pytest.importorskip("lcmd_example")


class Reached(Exception):
    """A command line got as far as real work."""


def reached(*args: object, **kwargs: object) -> None:
    raise Reached


WORDS = [
    *("plugins", "prepare", "train", "sample", "eval", "--help-me"),
    *("--plugin", "example", "nope", "--data", "unicode_names", "mnist", "--preset", "tiny"),
    *("--set", "model.width=0", "train.seed=x", "optim.lr=-1", "model.nope=1", "=", "a.b.c=1"),
    *("train.max_steps=3", "data.codec_options={", "sample.guidance=nan", "model.size=XL"),
    *("--config", "missing.yaml", "--max-steps", "-1", "0", "abc", "1e9", "--out", "RUN"),
    *("--n", "--steps", "--guidance", "--label", "99", "Z", "--seed", "--split", "dev"),
    *("--resume", "--nproc", "2", "--data-root", "/nonexistent", "--temperature", "-3"),
    *("--sampler", "euler", "--json", "--prompt", "LATIN", "--no-ema", "", "-", "--", "é"),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=9))
def test_fuzzed_command_lines_exit_0_or_2_with_one_line(argv: list[str]) -> None:
    err = io.StringIO()
    with (
        mock.patch("lcmd_core.trainer.Trainer.fit", reached),
        mock.patch("lcmd_core.trainer.Trainer.prepare", reached),
        mock.patch("lcmd_core.cli._torchrun", reached),
        redirect_stdout(io.StringIO()),
        redirect_stderr(err),
    ):
        try:
            code = main(argv)
        except Reached:
            return
    assert code in (0, 2), (argv, err.getvalue())
    if code == 2:
        text = err.getvalue()
        assert text.count("\n") == 1 and text.startswith("lcmd: "), (argv, text)
        assert "Traceback" not in text


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([".yaml", ".toml", ".json"]), st.text(max_size=80))
def test_fuzzed_config_files_raise_only_one_line_config_errors(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, text: str
) -> None:
    path = Path(tmp_path_factory.mktemp("cfg")) / f"run{suffix}"
    path.write_text(text, encoding="utf-8")
    try:
        resolve_config(file=path)
    except ConfigError as err:
        assert "\n" not in str(err) and str(err)
