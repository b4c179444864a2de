"""Weight-free image metrics: FID, precision/recall and class accuracy in a small classifier's
feature space (see `classifier.py`), for labelled data sets such as MNIST.

Import-light (torch is imported when a metric runs), so the entry-point module can import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from lcmd_core.plugins import MetricContext
    from lcmd_image_vq.classifier import SmallCNN

CLASSIFIER_CACHE = "classifier"  # subdirectory of `context.cache_dir`
HIGHER_IS_BETTER = {"fid": False, "precision": True, "recall": True, "class_accuracy": True}


def feature_metrics(
    model: SmallCNN,
    samples: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    sample_labels: Sequence[int] | None = None,
    k: int = 3,
) -> dict[str, float]:
    """FID and k-NN precision/recall of `samples` against `references` in `model`'s features.

    With `sample_labels` (the class each sample was generated for) also `class_accuracy`: the
    fraction of samples the model classifies as that class.
    """
    import torch

    from lcmd_image_vq.classifier import embed, to_tensor
    from lcmd_image_vq.stats import feature_stats, frechet_distance, precision_recall

    fake, logits = embed(model, to_tensor(samples))
    real, _ = embed(model, to_tensor(references))
    precision, recall = precision_recall(real, fake, k)
    results = {
        "fid": frechet_distance(*feature_stats(real), *feature_stats(fake)),
        "precision": precision,
        "recall": recall,
    }
    if sample_labels is not None:
        target = torch.as_tensor(list(sample_labels), dtype=torch.long)
        results["class_accuracy"] = float((logits.argmax(1) == target).double().mean())
    return results


def classifier_metrics(
    samples: list[Any], references: list[Any], codec: Any, context: MetricContext
) -> dict[str, float]:
    """`feature_metrics` of the samples against the real images of the evaluated split.

    The classifier is trained on the data set's raw `train` split (cached under
    `context.cache_dir/classifier`). The reference is the raw split `context.split`, not
    `references` (the codec's reconstructions of it), so FID includes what the codec loses.
    Returns nothing for a data set without labels.
    """
    from lcmd_image_vq.classifier import load_or_train

    num_classes = context.dataset.num_classes
    if not num_classes:
        return {}
    train_items, train_labels = context.load("train")
    if train_labels is None:
        return {}
    model, _ = load_or_train(
        train_items, train_labels, num_classes, context.cache_dir / CLASSIFIER_CACHE
    )
    real, _ = context.load(context.split)
    return feature_metrics(model, samples, real, context.sample_labels)
