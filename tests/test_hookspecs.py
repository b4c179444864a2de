"""Each hookspec's docstring names the arguments lcmd passes: to `register`, and to what is
registered (codec factories, data set readers, metrics, backbones)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from lcmd_core import hookspecs
from lcmd_core.plugins import _HOOKS, MetricInfo, Plugin, _registrar

CORE = Path(hookspecs.__file__).parent


def documented(doc: str, callee: str) -> list[str]:
    """Argument names of the first `callee(...)` a docstring shows (annotations dropped)."""
    match = re.search(rf"{re.escape(callee)}\(([^)]*)\)", doc)
    assert match, f"the docstring shows no {callee}(...): {doc}"
    return [part.split(":")[0].split("=")[0].strip() for part in match[1].split(",") if part]


def calls(module: str, function: str) -> list[int]:
    """The number of positional arguments of every call `….function(...)` in a core module."""
    tree = ast.parse((CORE / module).read_text())
    return [
        len(node.args)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == function
    ]


@pytest.mark.parametrize("hook", _HOOKS)
def test_register_signature_is_the_one_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    register = _registrar(Plugin("p"), hook)
    assert documented(doc, "register") == list(inspect.signature(register).parameters)


@pytest.mark.parametrize(
    ("hook", "callee", "module", "function"),
    [
        ("lcmd_register_codecs", "factory", "plugins.py", "factory"),
        ("lcmd_register_datasets", "info.read", "plugins.py", "read"),
        ("lcmd_register_metrics", "info.compute", "evaluation.py", "compute"),
        ("lcmd_register_backbones", "factory", "backbone.py", "factory"),
        ("lcmd_register_backbones", "forward", "diffusion_model.py", "denoiser"),
    ],
)
def test_what_is_registered_is_called_as_documented(hook, callee, module, function):
    names = documented(inspect.getdoc(getattr(hookspecs, hook)), callee)
    arities = calls(module, function)
    assert arities, f"no call of {function}(...) in lcmd_core/{module}"
    assert set(arities) == {len(names)}, f"{callee}({', '.join(names)}) vs calls {arities}"


def test_metric_info_documents_the_same_call():
    doc = inspect.getdoc(MetricInfo)
    hook = inspect.getdoc(hookspecs.lcmd_register_metrics)
    assert documented(doc, "compute") == documented(hook, "info.compute")
