"""A character n-gram model with Witten-Bell interpolation: the baseline and the sample judge."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable


class CharNgram:
    """P(c | the previous `order − 1` characters), Witten-Bell interpolated down to uniform.

    P_k(c|h) = (C(hc) + T(h) · P_{k−1}(c|h′)) / (C(h·) + T(h)), with T(h) the number of
    distinct characters seen after h and h′ = h without its first character; the base is uniform
    over the training characters plus one for any unseen character, so no probability is zero.
    """

    def __init__(self, order: int = 5) -> None:
        if order < 1:
            raise ValueError(f"n-gram order must be at least 1, got {order}")
        self.order = order
        self.grams: Counter[str] = Counter()  # every k-gram, k = 1..order
        self.totals: Counter[str] = Counter()  # C(h·): how often h is followed by a character
        self.types: Counter[str] = Counter()  # T(h): how many distinct characters follow h
        self.uniform = 1.0

    def fit(self, texts: Iterable[str]) -> CharNgram:
        """Count the n-grams inside each text (none across text boundaries)."""
        for text in texts:
            for k in range(1, self.order + 1):
                self.grams.update(text[i : i + k] for i in range(len(text) - k + 1))
        for gram, count in self.grams.items():
            self.totals[gram[:-1]] += count
            self.types[gram[:-1]] += 1
        self.uniform = 1.0 / (self.types[""] + 1)
        return self

    def prob(self, context: str, char: str) -> float:
        """P(char | the last `order − 1` characters of context)."""
        context = context[max(0, len(context) - self.order + 1) :]
        p = self.uniform
        for k in range(len(context) + 1):
            h = context[len(context) - k :]
            total = self.totals.get(h, 0)
            if not total:
                break  # a longer context containing h is unseen too
            types = self.types[h]
            p = (self.grams.get(h + char, 0) + types * p) / (total + types)
        return p

    def bits(self, text: str) -> float:
        """−log2 P(text), each character given up to `order − 1` characters before it."""
        back = self.order - 1
        return -sum(math.log2(self.prob(text[max(0, i - back) : i], c)) for i, c in enumerate(text))

    def bits_per_char(self, texts: Iterable[str]) -> float:
        """Mean −log2 P per character over `texts`, each scored on its own."""
        texts = list(texts)
        chars = sum(map(len, texts))
        if not chars:
            raise ValueError("cannot score empty texts")
        return sum(map(self.bits, texts)) / chars
