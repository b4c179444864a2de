"""Text metrics without downloads: sample quality next to the same numbers on held-out text.

Every quality number is reported twice: on the samples and (suffix `_heldout`) on as many
sequences of the evaluated split, taken evenly spaced, so the two read side by side. The
character n-gram is fitted on the train split (its first `NGRAM_MAX_CHARS` characters).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

from lcmd_text.ngram import CharNgram

ORDER = 5
NGRAM_MAX_CHARS = 10_000_000  # text8's 90M would take minutes and gigabytes in pure Python
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")

QUALITY_HIGHER_IS_BETTER = {
    f"{key}{suffix}": better
    for key, better in (
        ("word_in_vocab", True),
        ("distinct_1", True),
        ("distinct_2", True),
        ("distinct_3", True),
        ("ngram_ppl", False),
    )
    for suffix in ("", "_heldout")
}
BPC_HIGHER_IS_BETTER = {
    "chars_per_token": True,
    "ngram5_bits_per_char": False,
    "elbo_bits_per_char": False,
}


def words(text: str) -> list[str]:
    """Lower-cased words (letters, inner apostrophes) of a text."""
    return _WORD.findall(text.lower())


def word_in_vocab(texts: list[str], vocabulary: set[str]) -> float:
    """Fraction of the words of `texts` that occur in `vocabulary` (0 without words)."""
    found = [w in vocabulary for text in texts for w in words(text)]
    return sum(found) / len(found) if found else 0.0


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of `texts`, pooled (Li et al., 2016)."""
    grams = [
        tuple(ws[i : i + n]) for ws in map(words, texts) for i in range(max(0, len(ws) - n + 1))
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


@functools.lru_cache(maxsize=2)
def _train_statistics(train_text: str) -> tuple[CharNgram, frozenset[str]]:
    """The character n-gram and the word vocabulary of a train split (kept for re-use)."""
    return CharNgram(ORDER).fit([train_text]), frozenset(words(train_text))


def train_statistics(context: Any) -> tuple[CharNgram, frozenset[str]]:
    """`_train_statistics` of the train split of the context's data set."""
    items, _ = context.load("train")
    return _train_statistics("".join(items)[:NGRAM_MAX_CHARS])


def _evenly_spaced(items: list[str], n: int) -> list[str]:
    if n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def _quality(texts: list[str], ngram: CharNgram, vocabulary: frozenset[str]) -> dict[str, float]:
    texts = [t for t in texts if t]
    return {
        "word_in_vocab": word_in_vocab(texts, set(vocabulary)),
        **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
        "ngram_ppl": 2 ** ngram.bits_per_char(texts) if texts else math.inf,
    }


def quality_metrics(
    samples: list[str], references: list[str], codec: Any, context: Any
) -> dict[str, float]:
    """Word-in-vocabulary fraction, distinct-1/2/3, per-character 5-gram perplexity."""
    ngram, vocabulary = train_statistics(context)
    held_out = _quality(_evenly_spaced(references, len(samples)), ngram, vocabulary)
    return {
        **_quality(samples, ngram, vocabulary),
        **{f"{key}_heldout": value for key, value in held_out.items()},
    }


def bpc_metrics(
    samples: list[str], references: list[str], codec: Any, context: Any
) -> dict[str, float]:
    """Characters per token position of the split, the model's ELBO in bits per character and
    the 5-gram baseline's bits/char on the same split.

    `elbo_bits_per_char` = ELBO bits/token ÷ `chars_per_token` (padding positions count as
    tokens, so the figure bounds the bits of the text itself).
    """
    ngram, _ = train_statistics(context)
    chars = sum(map(len, references))
    per_token = chars / (len(references) * codec.token_spec.seq_len)
    scores = {"chars_per_token": per_token, "ngram5_bits_per_char": ngram.bits_per_char(references)}
    if context.elbo_bits_per_token is not None:
        scores["elbo_bits_per_char"] = context.elbo_bits_per_token / per_token
    return scores
