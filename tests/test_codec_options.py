"""`codec_options`: every plugin's codec options checked one way, one line per mistake."""

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcmd_core.codec_options import codec_options
from lcmd_core.plugins import PluginError


class Codec:
    def __init__(
        self,
        seq_len: int = 8,
        rate: float = 0.5,
        strict: bool = False,
        file: str | None = None,
        names: Sequence[str] = (),
    ) -> None:
        pass


@dataclass
class Options:
    size: int = 4
    mode: str = "ema"


def test_unknown_option_names_the_codec_and_what_it_knows():
    with pytest.raises(PluginError) as err:
        codec_options("mine", Codec, {"width": 3, "seq_len": 4})
    assert str(err.value) == (
        "codec mine: unknown option width (known: seq_len, rate, strict, file, names)"
    )
    with pytest.raises(PluginError, match=r"unknown option other \(known: size, mode\)"):
        codec_options("dc", Options, {"other": 1})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seq_len": 2.5}, "option seq_len must be an integer, got 2.5"),
        ({"seq_len": "8"}, "option seq_len must be a number, got '8'"),
        ({"seq_len": True}, "option seq_len must be a number, got True"),
        ({"seq_len": float("inf")}, "option seq_len must be a finite number, got inf"),
        ({"rate": float("nan")}, "option rate must be a finite number, got nan"),
        ({"strict": 1}, "option strict must be a bool, got 1"),
        ({"file": 3}, "option file must be a str, got 3"),
        ({"names": "CNO"}, "option names must be a list of names, got 'CNO'"),
        ({"names": ["C", 1]}, "option names must be a list of names"),
    ],
)
def test_wrong_types_are_one_line(options, message):
    with pytest.raises(PluginError, match="codec mine: ") as err:
        codec_options("mine", Codec, options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_values_come_back_typed():
    out = codec_options("mine", Codec, {"seq_len": 8.0, "rate": 1, "file": None, "names": ("a",)})
    assert out == {"seq_len": 8, "rate": 1.0, "file": None, "names": ["a"]}
    assert type(out["seq_len"]) is int and type(out["rate"]) is float
    assert codec_options("dc", Options, {"mode": "x"}) == {"mode": "x"}


@given(st.integers(-(10**12), 10**12))
def test_integral_numbers_are_ints(value):
    assert codec_options("mine", Codec, {"seq_len": float(value)})["seq_len"] == value


@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)))
def test_fractions_are_not_ints(value):
    with pytest.raises(PluginError, match="must be an integer"):
        codec_options("mine", Codec, {"seq_len": value})


def test_the_plugins_check_their_options_with_it():
    example = pytest.importorskip("lcmd_example.plugin")
    with pytest.raises(PluginError, match="codec chars: option length must be a number"):
        example.chars_codec({"length": "long"})
    assert example.chars_codec({"length": 12.0}).length == 12
    graph = pytest.importorskip("lcmd_graph.plugin")
    with pytest.raises(PluginError, match="codec adjacency: option node_types must be a list"):
        graph.adjacency_codec({"node_types": "CNO"})
    text = pytest.importorskip("lcmd_text.plugin")
    with pytest.raises(PluginError, match="codec bpe: option tokenizer_file must be a str"):
        text.bpe_codec({"tokenizer_file": 5})
