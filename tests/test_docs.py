"""The documentation cannot rot: its Python runs, its config tables and CLI flags match the code.

Every ```python block of README.md and docs/*.md runs, file by file in one namespace (a page
reads like a session), in a temporary working directory. A block right after a
`<!-- no-test -->` line is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from lcmd_core.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NO_TEST = "<!-- no-test -->"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of each ```python block not marked `<!-- no-test -->`."""
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        before = text[: match.start()].rstrip().splitlines()
        if before and before[-1].strip() == NO_TEST:
            continue
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(2)))
    return blocks


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", DOCS / "gen_config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_page_is_found_and_some_have_code() -> None:
    names = {p.name for p in PAGES}
    expected = {"README.md", "index.md", "concepts.md", "cli.md", "library.md", "plugins.md"}
    assert expected | {"configuration.md", "performance.md"} <= names
    assert sum(len(python_blocks(p.read_text())) for p in PAGES) >= 8


def test_block_parser_skips_marked_blocks_and_other_languages() -> None:
    text = "```python\na = 1\n```\n<!-- no-test -->\n```python\nb = 2\n```\n```console\nc\n```\n"
    assert python_blocks(text) == [(1, "a = 1\n")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page: Path, tmp_path: Path, monkeypatch) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip("no python blocks")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for line, code in blocks:
        where = f"{page.relative_to(ROOT)}:{line}"
        exec(compile(code, where, "exec"), namespace)  # the point of the test


def test_configuration_reference_is_up_to_date() -> None:
    gen = load_generator()
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert gen.splice(text, gen.render()) == text, (
        "docs/configuration.md is out of date: run python docs/gen_config_reference.py"
    )


def test_configuration_mentions_every_field_of_every_config_model() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = []
    for name, info in RunConfig.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            keys += [f"{name}.{field}" for field in model.model_fields]
        else:
            keys.append(name)
    assert len(keys) > 50
    missing = [key for key in keys if f"`{key}`" not in text]
    assert not missing, f"configuration.md does not document {missing}"
    stale = sorted(set(load_generator().NOTES) - set(keys))
    assert not stale, f"gen_config_reference.py NOTES describe fields that do not exist: {stale}"


def test_cli_reference_names_every_command_and_option() -> None:
    from lcmd_core.cli import build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = []
    for name, sub in commands.choices.items():
        if f"lcmd {name}" not in text:
            missing.append(f"lcmd {name}")
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and f"`{option}" not in text:
                    missing.append(f"lcmd {name} {option}")
    assert not missing, f"docs/cli.md does not document {missing}"
