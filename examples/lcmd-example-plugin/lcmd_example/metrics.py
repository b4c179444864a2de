"""The `name_validity` metric: do sampled strings read like real Unicode character names?"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lcmd_core.plugins import MetricContext


def name_validity(
    samples: list[str], references: list[str], codec: Any, context: MetricContext
) -> dict[str, float]:
    """Fractions of samples that are exact reference names and of sample words seen in them.

    `references` are real names (the evaluated split); the codec is not needed, and the
    context only takes the protocol: which Unicode database the names come from. Empty inputs
    score 0.
    """
    context.protocol["unicode_version"] = unicodedata.unidata_version
    names = set(references)
    vocabulary = {word for name in references for word in name.split()}
    words = [word for sample in samples for word in sample.split()]
    return {
        "valid_name_fraction": sum(s in names for s in samples) / len(samples) if samples else 0.0,
        "valid_word_fraction": sum(w in vocabulary for w in words) / len(words) if words else 0.0,
    }
