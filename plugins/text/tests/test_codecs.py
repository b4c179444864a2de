"""The char and BPE codecs: conformance, exact round trips, unknown characters, prompts."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lcmd_text.bpe_codec import BPECodec
from lcmd_text.char_codec import PAD, UNK, UNK_CHAR, CharCodec
from lcmd_text.prompt import PromptError, parse_prompt

from lcmd_core.plugins import PluginError
from lcmd_core.testing import CodecConformance

TEXT8_ALPHABET = "abcdefghijklmnopqrstuvwxyz "
PLAY = [
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n",
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father — and refuse thy name.",
    "Ça va? ünïcödé 文字 🙂",
]


class TestCharCodec(CodecConformance):
    def new_codec(self) -> CharCodec:
        return CharCodec(seq_len=96)

    def sample_items(self) -> list[str]:
        return PLAY

    def valid_prompts(self) -> list[str]:
        return ["ROMEO:{gap:8}light", "{gap:4}Romeo"]

    def invalid_prompts(self) -> list[str]:
        return ["Z" * 97, "ROMEO{gap:100}", "{gap:3}"]


@functools.cache
def fitted_bpe() -> BPECodec:
    codec = BPECodec(seq_len=128, vocab_size=300)
    codec.fit(PLAY * 3)
    return codec


class TestBPECodec(CodecConformance):
    def new_codec(self) -> BPECodec:
        return BPECodec(seq_len=128, vocab_size=300)

    def make_codec(self) -> BPECodec:
        return fitted_bpe()

    def sample_items(self) -> list[str]:
        return PLAY

    def valid_prompts(self) -> list[str]:
        return ["ROMEO:{gap:8}light"]

    def invalid_prompts(self) -> list[str]:
        return ["{gap:200}x"]


def text8_codec() -> CharCodec:
    codec = CharCodec(seq_len=64)
    codec.fit(["the quick brown fox jumps over the lazy dog", "  zebra"])
    return codec


def test_text8_alphabet_gives_27_symbols_plus_pad_and_unknown() -> None:
    assert text8_codec().token_spec.vocab_size == 27 + 2


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=TEXT8_ALPHABET, max_size=64))
def test_char_round_trip_is_exact_on_in_vocabulary_text(text: str) -> None:
    codec = text8_codec()
    tokens = codec.encode([text])
    assert tokens[0, len(text) :].eq(PAD).all()
    assert codec.decode(tokens) == [text]


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=30))
def test_bpe_round_trip_is_exact_on_any_text(text: str) -> None:
    codec = fitted_bpe()
    assert codec.decode(codec.encode([text])) == [text]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8))
def test_bpe_stream_is_cut_into_full_sequences_padded_only_at_the_end(pieces: list[str]) -> None:
    codec = BPECodec(seq_len=16, vocab_size=300)
    codec._tokenizer = fitted_bpe().tokenizer
    tokens = codec.encode_stream(pieces)
    is_pad = tokens.flatten() == codec.pad
    stream_length = int((~is_pad).sum())
    assert tokens.shape == (max(1, -(-stream_length // 16)), 16)
    assert not is_pad[:stream_length].any() and is_pad[stream_length:].all()
    # the stream round-trips (a row alone may start inside a multi-byte character)
    assert codec.decode(tokens.view(1, -1)) == ["".join(pieces)]


def test_unseen_character_becomes_the_unknown_token() -> None:
    codec = text8_codec()
    tokens = codec.encode(["a1b"])
    assert tokens[0, 1].item() == UNK
    assert codec.decode(tokens) == [f"a{UNK_CHAR}b"]


def test_item_longer_than_the_sequence_is_refused() -> None:
    with pytest.raises(PluginError, match="longer than seq_len=64"):
        text8_codec().encode(["a" * 65])
    with pytest.raises(PluginError, match="more than seq_len=128"):
        fitted_bpe().encode(["🙂" * 100])


def test_fitting_on_empty_text_is_refused() -> None:
    with pytest.raises(PluginError, match="training text is empty"):
        CharCodec().fit(["", ""])
    with pytest.raises(PluginError, match="training text is empty"):
        BPECodec().fit([""])


def test_bpe_loads_a_given_tokenizer_file(tmp_path) -> None:
    fitted_bpe().tokenizer.save(str(tmp_path / "tokenizer.json"))
    codec = BPECodec(seq_len=128, tokenizer_file=str(tmp_path / "tokenizer.json"))
    codec.fit([])
    assert torch.equal(codec.encode(PLAY), fitted_bpe().encode(PLAY))
    with pytest.raises(PluginError, match="does not exist"):
        BPECodec(tokenizer_file=str(tmp_path / "missing.json")).fit([])


_literal = st.text(alphabet="ab{}:gp \n", min_size=1, max_size=6).filter(
    lambda s: "{gap:" not in s and not s.endswith(("{", "{g", "{ga", "{gap"))
)


@given(st.lists(st.one_of(_literal, st.integers(0, 50)), max_size=6))
def test_parse_prompt_inverts_rendering(parts: list[str | int]) -> None:
    merged: list[str | int] = []
    for part in parts:  # adjacent literals render as one
        if merged and isinstance(part, str) and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    rendered = "".join(p if isinstance(p, str) else f"{{gap:{p}}}" for p in parts)
    assert parse_prompt(rendered) == merged


def test_char_prompt_keeps_prefix_and_suffix_around_a_gap() -> None:
    codec = text8_codec()
    a, b, c = codec.encode(["abc"])[0, :3].tolist()
    assert codec.prompt_tokens("ab{gap:3}c", 10).tolist() == [a, b, -1, -1, -1, c, -1, -1, -1, -1]


def test_bpe_prompt_gaps_count_tokens() -> None:
    codec = fitted_bpe()
    prefix = codec.encode(["ROMEO:"])[0]
    n = int((prefix != codec.pad).sum())
    known = codec.prompt_tokens("ROMEO:{gap:4}", 32)
    assert known[:n].tolist() == prefix[:n].tolist()
    assert known[n:].eq(-1).all()


@pytest.mark.parametrize(
    ("prompt", "match"),
    [
        ("ab7", "characters outside the vocabulary: '7'"),
        ("a" * 11, "takes 11 positions, more than the sequence length 10"),
        ("a{gap:10}", "takes 11 positions"),
        ("{gap:3}", "no text to keep"),
    ],
)
def test_bad_prompts_are_prompt_errors(prompt: str, match: str) -> None:
    with pytest.raises(PromptError, match=match):
        text8_codec().prompt_tokens(prompt, 10)


def test_a_huge_gap_is_refused_without_being_built() -> None:
    import tracemalloc

    codec = text8_codec()
    tracemalloc.start()
    try:
        with pytest.raises(PromptError, match="takes 100000001 positions, more than the sequence"):
            codec.prompt_tokens("a{gap:100000000}", 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the gap's 10⁸ free positions (800 MB as a list) were never built
