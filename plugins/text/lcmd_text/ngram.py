"""A character n-gram model with interpolated Kneser-Ney smoothing: the baseline and the judge."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable


class CharNgram:
    """P(c | the previous `order − 1` characters), interpolated Kneser-Ney down to uniform.

    P_k(c|h) = (max(n(hc) − D, 0) + D · T(h) · P_{k−1}(c|h′)) / Σ_c n(hc), with h′ = h without
    its first character, T(h) the number of distinct characters seen after h, n the count for
    the highest order and the continuation count (distinct characters seen before) for lower
    ones. The base is uniform over the training characters plus one for any unseen character,
    so no probability is zero.
    """

    def __init__(self, order: int = 5, discount: float = 0.75) -> None:
        if order < 1 or not 0 < discount < 1:
            raise ValueError(f"need order >= 1 and 0 < discount < 1, got {order}, {discount}")
        self.order, self.discount = order, discount
        self.counts: dict[str, int] = {}  # n(g) for every k-gram g, k = 1..order
        self.totals: Counter[str] = Counter()  # Σ_c n(hc)
        self.types: Counter[str] = Counter()  # T(h)
        self.uniform = 1.0

    def fit(self, texts: Iterable[str]) -> CharNgram:
        """Count the n-grams inside each text (none across text boundaries)."""
        raw: Counter[str] = Counter()
        for text in texts:
            for k in range(1, self.order + 1):
                raw.update(text[i : i + k] for i in range(len(text) - k + 1))
        before = Counter(gram[1:] for gram in raw if len(gram) > 1)
        self.counts = {g: n if len(g) == self.order else before.get(g, n) for g, n in raw.items()}
        for gram, count in self.counts.items():
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
            seen = max(self.counts.get(h + char, 0) - self.discount, 0.0)
            p = (seen + self.discount * self.types[h] * p) / total
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
