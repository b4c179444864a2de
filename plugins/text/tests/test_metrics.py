"""The character n-gram and the sample-quality metrics."""

from __future__ import annotations

import pytest
from lcmd_text.metrics import distinct_n, word_in_vocab, words
from lcmd_text.ngram import CharNgram

TRAIN = "to be or not to be that is the question\n" * 20


@pytest.mark.parametrize("context", ["", "t", "to b", "xyz q", "zzzzzzz"])
def test_ngram_distribution_sums_to_one(context: str) -> None:
    model = CharNgram(order=5).fit([TRAIN])
    alphabet = sorted(set(TRAIN))
    total = sum(model.prob(context, c) for c in alphabet) + model.prob(context, "\x00")
    assert total == pytest.approx(1.0, abs=1e-12)


def test_ngram_prefers_seen_text_and_higher_orders_help() -> None:
    seen, shuffled = "that is the question", "tqhu aeitsn to htsei"
    five = CharNgram(order=5).fit([TRAIN])
    one = CharNgram(order=1).fit([TRAIN])
    assert five.bits_per_char([seen]) < 0.5 < five.bits_per_char([shuffled])
    assert five.bits_per_char([seen]) < one.bits_per_char([seen])
    counts = {c: TRAIN.count(c) for c in set(TRAIN)}  # order 1: discounted unigram + uniform
    u = 1 / (len(counts) + 1)
    p_t = (counts["t"] - 0.75 + 0.75 * len(counts) * u) / len(TRAIN)
    assert one.prob("", "t") == pytest.approx(p_t, rel=1e-12)


def test_words_distinct_and_vocabulary_fraction() -> None:
    assert words("O Romeo, Romeo! 'tis thee's 42 done_") == [
        "o",
        "romeo",
        "romeo",
        "tis",
        "thee's",
        "done",
    ]
    assert distinct_n(["a b a b", "a b"], 1) == 2 / 6
    assert distinct_n(["a b a b", "a b"], 2) == 2 / 4
    assert distinct_n([""], 3) == 0.0
    assert word_in_vocab(["to be or nott"], {"to", "be", "or"}) == 3 / 4
