"""`lcmd new-plugin` writes a plugin that installs, lists, passes its tests and `check-plugin`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from lcmd_core.cli import main
from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.plugins import DatasetInfo, PluginError, get_plugin_manager, hookimpl
from lcmd_core.scaffold import new_plugin


def lcmd(*args: object, pm: object = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args], pm=pm)
    return code, out.getvalue(), err.getvalue()


def test_bad_names_and_occupied_directories_are_refused(tmp_path: Path) -> None:
    for name in ("Sudoku", "9lives", "my-plugin", "class", ""):
        with pytest.raises(PluginError, match="use lower-case letters"):
            new_plugin(name, tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(PluginError, match="already exists and is not empty"):
        new_plugin("sudoku", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    if "example" in dict(get_plugin_manager().list_name_plugin()):
        code, _, err = lcmd("new-plugin", "example", "--dir", tmp_path / "dup")
        assert code == 2 and "already installed" in err and not (tmp_path / "dup").exists()


def test_new_plugin_installs_lists_passes_its_tests_and_the_check(tmp_path: Path) -> None:
    source = new_plugin("sorted_toy", tmp_path / "src")
    assert not list(source.rglob("*.tmpl")) and (source / "lcmd_sorted_toy" / "plugin.py").is_file()
    prefix = tmp_path / "prefix"  # installed beside, not into, this environment
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--prefix", prefix, source], check=True, capture_output=True)
    site = next(prefix.glob("lib/python*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], env=env, cwd=tmp_path, capture_output=True, text=True
        )

    listed = run(sys.executable, "-m", "lcmd_core.cli", "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "sorted_toy" in json.loads(listed.stdout)
    tests = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", source / "tests")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    check = run(sys.executable, "-m", "lcmd_core.cli", "check-plugin", "sorted_toy", "--steps", 20)
    assert check.returncode == 0, check.stdout + check.stderr
    lines = check.stdout.splitlines()
    assert lines[-1].endswith("0 failed, 1 skipped"), check.stdout
    assert {line.split()[0] for line in lines[:-1]} == {"ok", "skip"}
    assert any(line.startswith("ok    train tiny: 20 steps") for line in lines)
    assert any(line.startswith("ok    eval test: elbo_bits_per_token") for line in lines)


class Ragged:
    """A codec that cannot decode the highest token: the check must say so, in one line."""

    name = "ragged"
    needs_fit = False
    token_spec = TokenSpec(vocab_size=4, token_shape=(3,), fingerprint=fingerprint_of("ragged"))

    def fit(self, items):
        pass

    def encode(self, items):
        return torch.tensor([[int(c) for c in item] for item in items], dtype=torch.long)

    def decode(self, tokens):
        if int(tokens.max()) == 3:
            raise ValueError("token 3 has no meaning")
        return ["".join(map(str, row)) for row in tokens.tolist()]

    def write(self, items, directory):
        path = Path(directory) / "samples.txt"
        path.write_text("".join(f"{item}\n" for item in items))
        return [path]

    def save(self, directory):
        pass

    def load(self, directory):
        pass


class RaggedPlugin:
    @hookimpl
    def lcmd_register_codecs(self, register):
        register("ragged", lambda options: Ragged())

    @hookimpl
    def lcmd_register_datasets(self, register):
        items = ["012", "120", "201", "000", "111", "222"]
        register(
            DatasetInfo(
                name="triples",
                description="six triples",
                read=lambda root, split: (items, None),
                default_codec="ragged",
            )
        )


def test_check_plugin_names_the_failing_contract_and_exits_1(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(RaggedPlugin(), name="ragged")
    code, out, _ = lcmd("check-plugin", "ragged", "--keep", tmp_path, pm=pm)
    lines = out.splitlines()
    assert code == 1
    assert (
        "FAIL  codec ragged: any_in_range_tokens_decode: ValueError: token 3 has no meaning"
        in lines
    )
    assert "ok    codec ragged: round_trip: passed" in lines
    assert "FAIL  preset tiny: every plugin registers a `tiny` preset" in lines
    assert lines[-1].endswith("2 failed, 1 skipped")
    assert lcmd("check-plugin", "nothing", pm=pm)[1].startswith("FAIL  load: unknown plugin")
