"""The example plugin: its codec passes the conformance suite; its data, metric and preset work."""

from __future__ import annotations

import functools
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lcmd_example import plugin as entry_point
from lcmd_example.codec import CharsCodec
from lcmd_example.data import CLASS_NAMES, SPLITS, all_names
from lcmd_example.metrics import name_validity

from lcmd_core.config import resolve_config
from lcmd_core.plugins import (
    MetricContext,
    Plugin,
    PluginError,
    collect_plugins,
    get_plugin_manager,
)
from lcmd_core.testing import CodecConformance


@functools.cache
def example() -> Plugin:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(entry_point, name="example")
    return collect_plugins(pm)["example"]


class TestCharsCodec(CodecConformance):
    def new_codec(self) -> CharsCodec:
        return example().codec("chars")

    def sample_items(self) -> list[str]:
        return [
            "LATIN SMALL LETTER A",
            "HYPHEN-MINUS",
            "EXTENDED ARABIC-INDIC DIGIT ZERO",  # 32 characters: no PAD at all
            "SPACE",
            "",
        ]


def test_plugin_registers_dataset_codec_preset_and_metric() -> None:
    plugin = example()
    assert plugin.default_dataset == "unicode_names"
    info = plugin.dataset()
    assert (info.default_codec, info.num_classes, info.class_names) == ("chars", 6, CLASS_NAMES)
    assert list(plugin.codecs) == ["chars"] and list(plugin.metrics) == ["name_validity"]
    config = resolve_config(preset=plugin.preset("tiny"))
    assert (config.model.width, config.model.depth, config.model.embed_dim) == (64, 2, 16)
    assert config.train.max_steps == 300


def test_splits_are_disjoint_deterministic_and_about_90_5_5() -> None:
    info = example().dataset("unicode_names")
    splits = {split: info.load(split) for split in SPLITS}
    names = {split: set(items) for split, (items, _) in splits.items()}
    assert not names["train"] & names["valid"]
    assert not names["train"] & names["test"]
    assert not names["valid"] & names["test"]
    assert sum(map(len, names.values())) == len(all_names()) > 20_000
    assert info.load("valid") == splits["valid"]
    for split, share in (("train", 0.90), ("valid", 0.05), ("test", 0.05)):
        assert abs(len(names[split]) / len(all_names()) - share) < 0.01


def test_names_are_filtered_and_labelled_by_category() -> None:
    labels = dict(all_names())
    assert labels["LATIN SMALL LETTER A"] == CLASS_NAMES.index("letter")
    assert labels["COMBINING GRAVE ACCENT"] == CLASS_NAMES.index("mark")
    assert labels["DIGIT ONE"] == CLASS_NAMES.index("number")
    assert labels["HYPHEN-MINUS"] == CLASS_NAMES.index("punctuation")
    assert labels["PLUS SIGN"] == CLASS_NAMES.index("symbol")
    assert labels["SPACE"] == CLASS_NAMES.index("other")
    assert "CJK UNIFIED IDEOGRAPH-4E00" not in labels
    assert "HANGUL SYLLABLE GA" not in labels
    assert "LATIN CAPITAL LETTER A WITH DOUBLE GRAVE" not in labels  # 40 characters
    assert all(len(name) <= 32 for name in labels)


def test_unknown_split_is_a_one_line_error() -> None:
    with pytest.raises(PluginError, match="has no split 'dev'"):
        example().dataset().load("dev")


def test_codec_fitted_on_train_encodes_every_split() -> None:
    info = example().dataset()
    codec = example().codec(info.default_codec, info.codec_options)
    codec.fit(info.load("train")[0])
    assert codec.token_spec.vocab_size == 1 + 26 + 10 + 2  # PAD, A–Z, 0–9, space, hyphen
    for split in ("valid", "test"):
        items, _ = info.load(split)
        assert codec.decode(codec.encode(items)) == items


def test_codec_errors_say_what_to_fix() -> None:
    codec = example().codec("chars", {"length": 8})
    with pytest.raises(ValueError, match="not fitted: call fit"):
        codec.encode(["A"])
    codec.fit(["ABC DEF"])
    with pytest.raises(ValueError, match=r"outside the fitted vocabulary \('XZ'\)"):
        codec.encode(["AXZ"])
    with pytest.raises(ValueError, match=r"more than length=8; raise codec_options\.length"):
        codec.encode(["ABCABCABC"])
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 7\]"):
        codec.decode(torch.full((1, 8), 8))
    with pytest.raises(PluginError, match="codec chars: unknown option width"):
        example().codec("chars", {"width": 3})


@given(st.lists(st.text("ABCXYZ019 -", max_size=32), min_size=1, max_size=8))
def test_any_string_over_the_fitted_characters_round_trips(items: list[str]) -> None:
    codec = CharsCodec()
    codec.fit(["ABCXYZ019 -"])
    assert codec.decode(codec.encode(items)) == items


def test_decode_drops_pad_anywhere() -> None:
    codec = CharsCodec(length=4)
    codec.fit(["AB"])
    assert codec.decode(torch.tensor([[1, 0, 2, 0], [0, 0, 0, 0]])) == ["AB", ""]


def test_write_puts_one_sample_per_line(tmp_path) -> None:
    codec = CharsCodec()
    (path,) = codec.write(["DIGIT ONE", "SPACE"], tmp_path / "out")
    assert path.name == "samples.txt"
    assert path.read_text().splitlines() == ["DIGIT ONE", "SPACE"]


def test_name_validity_on_known_inputs() -> None:
    references = ["LATIN SMALL LETTER A", "DIGIT ONE"]
    samples = ["DIGIT ONE", "LATIN SMALL ONE", "LATIN SMAL LETTER", ""]
    info = example().datasets["unicode_names"]
    context = MetricContext(
        dataset=info, split="test", sample_labels=None, load=info.load, cache_dir=Path(".")
    )
    scores = example().metrics["name_validity"].compute(samples, references, CharsCodec(), context)
    # 1 of 4 samples is a real name; 7 of 8 words are real ("SMAL" is not).
    assert scores == {"valid_name_fraction": 0.25, "valid_word_fraction": 0.875}
    assert context.protocol == {"unicode_version": unicodedata.unidata_version}
    assert name_validity([], references, None, context) == {
        "valid_name_fraction": 0.0,
        "valid_word_fraction": 0.0,
    }


def test_entry_point_module_does_not_import_torch() -> None:
    code = "import sys, lcmd_example.plugin; print(sorted({'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
