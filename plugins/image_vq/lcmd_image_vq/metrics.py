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
    model, record = load_or_train(
        train_items, train_labels, num_classes, context.cache_dir / CLASSIFIER_CACHE
    )
    real, _ = context.load(context.split)
    context.protocol.update(
        features="penultimate layer of lcmd_image_vq.classifier.SmallCNN trained on 'train'",
        classifier=record,
        reference=f"raw images of split {context.split!r} ({len(real)})",
        k=3,
    )
    return feature_metrics(model, samples, real, context.sample_labels)


INCEPTION_WEIGHTS_ENV = "LCMD_INCEPTION_WEIGHTS"
INCEPTION_CACHE = "inception"  # subdirectory of `context.cache_dir`
INCEPTION_HIGHER_IS_BETTER = {
    "fid": False,
    "precision": True,
    "recall": True,
    "inception_score": True,
}


def inception_metrics(
    samples: list[Any], references: list[Any], codec: Any, context: MetricContext
) -> dict[str, float]:
    """FID, precision/recall (k=3) and Inception Score in the FID Inception-v3 features.

    The published weights (`pt_inception-2015-12-05-6726825d.pth`) are read from the path in
    the environment variable `LCMD_INCEPTION_WEIGHTS`; without it the metric returns nothing.
    Real features of the evaluated split are cached under `context.cache_dir/inception`, keyed
    by the weights' and the images' checksums. Like `classifier_metrics`, samples are compared
    with the raw images of the split.
    """
    import hashlib
    import os

    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    from lcmd_image_vq.inception import inception_features, load_fid_inception
    from lcmd_image_vq.stats import feature_stats, frechet_distance, inception_score
    from lcmd_image_vq.stats import precision_recall as knn_precision_recall

    path = os.environ.get(INCEPTION_WEIGHTS_ENV)
    if not path:
        return {}
    model = load_fid_inception(path)
    real_items, _ = context.load(context.split)
    digest = hashlib.sha256(model.weights_sha256.encode())
    for item in real_items:
        digest.update(np.ascontiguousarray(item).tobytes())
    name = f"{context.split}-{digest.hexdigest()[:16]}.safetensors"
    cache_file = context.cache_dir / INCEPTION_CACHE / name
    if cache_file.is_file():
        real = load_file(cache_file)["features"].double()
    else:
        real = torch.from_numpy(inception_features(model, real_items)[0])
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        save_file({"features": real.float().contiguous()}, tmp)
        tmp.replace(cache_file)
        real = real.float().double()  # the same precision as a cached read
    fake, probs = inception_features(model, samples)
    precision, recall = knn_precision_recall(real, fake, 3)
    is_splits = min(10, len(samples))
    context.protocol.update(
        network="FID Inception-v3 (inception-2015-12-05, pytorch-fid port), pool3 features",
        weights=str(path),
        weights_sha256=model.weights_sha256,
        preprocessing="uint8 → [0, 1], grey repeated to RGB, bilinear resize to 299×299 "
        "(align_corners=False, no antialias), → [-1, 1]",
        reference=f"raw images of split {context.split!r} ({len(real_items)})",
        k=3,
        inception_score_splits=is_splits,
    )
    return {
        "fid": frechet_distance(*feature_stats(real), *feature_stats(fake)),
        "precision": precision,
        "recall": recall,
        "inception_score": inception_score(probs, splits=is_splits)[0],
    }
