"""Codec options (`data.codec_options`, a plain dict) checked against what the codec accepts.

Every plugin's codec factory calls `codec_options(name, target, options)` with the class (or
dataclass of options) it builds: unknown keys and values of the wrong type are one-line
`PluginError`s that name the codec and the option.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from lcmd_core.plugins import PluginError


def codec_options(
    codec: str, target: Callable[..., Any], options: dict[str, Any]
) -> dict[str, Any]:
    """`options` checked against the fields of dataclass `target`, or the keyword parameters
    of class or function `target`, as keyword arguments for it.

    bool and str take exactly those types; int takes integral numbers, float any number (never
    a bool); `X | None` also takes None; a sequence of str takes a list of strings; other
    annotations are passed through unchecked.
    """
    kinds = _parameters(target)
    unknown = sorted(set(options) - set(kinds))
    if unknown:
        raise PluginError(
            f"codec {codec}: unknown option {', '.join(unknown)} (known: {', '.join(kinds)})"
        )
    return {name: _checked(codec, name, kinds[name], value) for name, value in options.items()}


def _parameters(target: Callable[..., Any]) -> dict[str, Any]:
    """Option name → annotation, in declaration order."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(target) if f.init}
    function = target.__init__ if inspect.isclass(target) else target
    hints = typing.get_type_hints(function)
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        name: hints.get(name, Any)
        for name, parameter in inspect.signature(function).parameters.items()
        if name != "self" and parameter.kind in kinds
    }


def _checked(codec: str, name: str, kind: Any, value: Any) -> Any:
    where = f"codec {codec}: option {name}"
    options = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        return _checked(codec, name, inner[0], value) if len(inner) == 1 else value
    if kind in (bool, str):
        if type(value) is not kind:
            raise PluginError(f"{where} must be a {kind.__name__}, got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise PluginError(f"{where} must be a finite number, got {value}")
        if kind is int and value != int(value):
            raise PluginError(f"{where} must be an integer, got {value}")
        return kind(value)
    origin = typing.get_origin(kind)
    if isinstance(origin, type) and issubclass(origin, Sequence) and options[:1] == (str,):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise PluginError(f"{where} must be a list of names, got {value!r}")
        if not all(isinstance(item, str) for item in value):
            raise PluginError(f"{where} must be a list of names, got {value!r}")
        return list(value)
    return value
