"""The `name_validity` metric: do sampled strings read like real Unicode character names?"""

from __future__ import annotations

from typing import Any


def name_validity(
    samples: list[str], references: list[str], codec: Any, context: Any
) -> dict[str, float]:
    """Fractions of samples that are exact reference names and of sample words seen in them.

    `references` are real names (the evaluated split); neither the codec nor the context is
    needed here. Empty inputs score 0.
    """
    names = set(references)
    vocabulary = {word for name in references for word in name.split()}
    words = [word for sample in samples for word in sample.split()]
    return {
        "valid_name_fraction": sum(s in names for s in samples) / len(samples) if samples else 0.0,
        "valid_word_fraction": sum(w in vocabulary for w in words) / len(words) if words else 0.0,
    }
