"""The core's shape: no class over 400 lines in `lcmd_core`, the training loop under 450."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "lcmd_core"


def test_no_core_class_over_400_lines():
    sizes = {
        f"{path.name}:{node.name}": node.end_lineno - node.lineno + 1
        for path in CORE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    }
    assert "trainer.py:Trainer" in sizes
    assert {name: size for name, size in sizes.items() if size > 400} == {}


def test_trainer_module_stays_under_450_lines():
    assert len((CORE / "trainer.py").read_text().splitlines()) < 450
