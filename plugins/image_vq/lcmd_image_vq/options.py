"""Codec options from a plain dict (`data.codec_options`), checked against a dataclass."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from lcmd_core.plugins import PluginError

T = TypeVar("T")


def options_from_dict(cls: type[T], codec: str, options: dict[str, Any]) -> T:
    """`cls(**options)` for the dataclass `cls`, refusing unknown keys and values of the wrong type.

    bool and str fields take exactly those types; int fields take integral numbers, float
    fields any number (never a bool).
    """
    kinds = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise PluginError(
            f"codec {codec}: unknown option {', '.join(unknown)} (known: {', '.join(known)})"
        )
    values: dict[str, Any] = {}
    for name, value in options.items():
        kind = kinds[name]
        if kind in (bool, str):
            if type(value) is not kind:
                raise PluginError(
                    f"codec {codec}: option {name} must be a {kind.__name__}, got {value!r}"
                )
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PluginError(f"codec {codec}: option {name} must be a number, got {value!r}")
        elif kind is int and value != int(value):
            raise PluginError(f"codec {codec}: option {name} must be an integer, got {value}")
        else:
            value = kind(value)
        values[name] = value
    return cls(**values)
