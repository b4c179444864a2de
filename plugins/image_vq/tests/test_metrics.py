"""Feature statistics, the metric classifier and its cache, and the weight-free metric pipeline."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lcmd_image_vq import classifier
from lcmd_image_vq.classifier import ClassifierOptions, SmallCNN, load_or_train
from lcmd_image_vq.metrics import classifier_metrics, feature_metrics
from lcmd_image_vq.stats import feature_stats, frechet_distance, inception_score, precision_recall

from lcmd_core.plugins import DatasetInfo, MetricContext

FAST = ClassifierOptions(width=8, features=32, epochs=5, batch_size=16)


# ---------------------------------------------------------------------------------- statistics
def test_frechet_distance_closed_form_for_diagonal_covariances() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    got = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_numpy_eigenvalues_of_the_product() -> None:
    # Independent route: Tr sqrt(S1 S2) from the (real, non-negative) eigenvalues of S1 S2 itself.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(40, 8)), rng.normal(size=(40, 8)) @ rng.normal(size=(8, 8))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    tr_covmean = np.sqrt(np.linalg.eigvals(s1 @ s2).real.clip(min=0)).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_feature_stats_match_numpy() -> None:
    x = np.random.default_rng(2).normal(size=(30, 5))
    mu, sigma = feature_stats(x)
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x, rowvar=False), rtol=1e-12)


def test_frechet_distance_zero_for_same_set_and_grows_with_noise() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 64))  # fewer samples than dimensions: singular covariance
    noise = rng.normal(size=x.shape)
    stats = feature_stats(x)
    assert abs(frechet_distance(*stats, *stats)) < 1e-9 * float(stats[1].trace())
    distances = [frechet_distance(*stats, *feature_stats(x + s * noise)) for s in (0.1, 0.3, 1, 3)]
    assert distances == sorted(distances) and distances[0] > 0


def test_precision_recall_identical_and_disjoint_sets() -> None:
    x = np.random.default_rng(4).normal(size=(200, 4))
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)


def test_recall_is_half_when_half_the_modes_are_covered() -> None:
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(10, 2)) * 100

    def draw(modes: np.ndarray, per_mode: int) -> np.ndarray:
        return np.concatenate([c + rng.normal(size=(per_mode, 2)) for c in modes])

    real, fake = draw(centres, 100), draw(centres[:5], 200)
    precision, recall = precision_recall(real, fake, k=3)
    assert precision > 0.95
    assert 0.45 <= recall <= 0.5


def test_inception_score_uniform_and_one_hot() -> None:
    uniform = torch.full((100, 10), 0.1)
    assert inception_score(uniform) == pytest.approx((1.0, 0.0))
    one_hot = torch.eye(10).repeat(10, 1)  # each of the 10 splits holds every class once
    assert inception_score(one_hot) == pytest.approx((10.0, 0.0))


# ---------------------------------------------------------------------------------- classifier
def quadrant_images(n: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """12×12×1 noise images with one bright quadrant: the quadrant is the label (4 classes)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.integers(0, 120, size=(n, 12, 12, 1))
    for image, label in zip(images, labels, strict=True):
        r, c = divmod(int(label), 2)
        image[6 * r : 6 * r + 6, 6 * c : 6 * c + 6] += 120
    return list(images.astype(np.uint8)), labels.tolist()


def test_small_cnn_has_about_100k_parameters() -> None:
    assert 80_000 < sum(p.numel() for p in SmallCNN(1, 10).parameters()) < 120_000


def test_classifier_learns_and_its_cache_is_reused_and_invalidated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items, labels = quadrant_images(400, seed=0)
    model, record = load_or_train(items, labels, 4, tmp_path, FAST)
    assert record["held_out_accuracy"] > 0.9
    assert json.loads((tmp_path / "classifier.json").read_text()) == record

    trainings = []
    train = classifier.train_classifier

    def counting(*args: Any) -> tuple[SmallCNN, float]:
        trainings.append(args)
        return train(*args)

    monkeypatch.setattr(classifier, "train_classifier", counting)
    again, cached = load_or_train(items, labels, 4, tmp_path, FAST)
    assert not trainings and cached == record
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor)

    items[0] = items[0].copy()
    items[0][0, 0, 0] ^= 1  # one bit of the training data changes the checksum
    _, retrained = load_or_train(items, labels, 4, tmp_path, FAST)
    assert len(trainings) == 1 and retrained["data_sha256"] != record["data_sha256"]
    load_or_train(items, labels, 4, tmp_path, dataclasses.replace(FAST, seed=1))
    assert len(trainings) == 2  # so do the options


def test_classifier_training_is_deterministic(tmp_path: Path) -> None:
    items, labels = quadrant_images(100, seed=1)
    options = dataclasses.replace(FAST, epochs=1)
    first, _ = load_or_train(items, labels, 4, tmp_path / "a", options)
    second, _ = load_or_train(items, labels, 4, tmp_path / "b", options)
    for name, tensor in first.state_dict().items():
        assert torch.equal(second.state_dict()[name], tensor)


# ---------------------------------------------------------------------------------- pipeline
def test_feature_metrics_with_random_network_fid_zero_on_itself_and_grows_with_noise() -> None:
    torch.manual_seed(0)
    model = SmallCNN(3, 10, width=8, features=32)
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, size=(64, 8, 8, 3))
    noise = rng.normal(size=images.shape)

    def noisy(scale: float) -> list[np.ndarray]:
        return list(np.clip(images + scale * noise, 0, 255).astype(np.uint8))

    same = feature_metrics(model, noisy(0), noisy(0))
    assert abs(same["fid"]) < 1e-9 and (same["precision"], same["recall"]) == (1.0, 1.0)
    fids = [feature_metrics(model, noisy(s), noisy(0))["fid"] for s in (10, 40, 160)]
    assert 1e-6 < fids[0] < fids[1] < fids[2]


def quadrant_context(cache_dir: Path, sample_labels: list[int] | None) -> MetricContext:
    def read(data_root: Path | None, split: str) -> tuple[list[Any], list[int]]:
        return quadrant_images(*{"train": (400, 0), "test": (100, 1)}[split])

    info = DatasetInfo(
        name="quadrants",
        description="bright quadrant",
        read=read,
        default_codec="vqvae",
        splits=("train", "test"),
        num_classes=4,
    )
    load = functools.partial(info.load, data_root=None)
    return MetricContext(
        dataset=info, split="test", sample_labels=sample_labels, load=load, cache_dir=cache_dir
    )


def test_classifier_metrics_scores_real_images_as_real(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(classifier, "ClassifierOptions", lambda: FAST)
    test_items, test_labels = quadrant_images(100, seed=1)  # the test split itself
    context = quadrant_context(tmp_path, test_labels)
    scores = classifier_metrics(test_items, [], None, context=context)
    assert set(scores) == {"fid", "precision", "recall", "class_accuracy"}
    assert abs(scores["fid"]) < 1e-6 and scores["class_accuracy"] > 0.9
    assert (tmp_path / "classifier" / "classifier.json").is_file()
    assert context.protocol["k"] == 3 and context.protocol["classifier"]["held_out_accuracy"] > 0.5

    wrong = dataclasses.replace(context, sample_labels=[(y + 1) % 4 for y in test_labels])
    assert classifier_metrics(test_items, [], None, context=wrong)["class_accuracy"] < 0.1
    unconditional = dataclasses.replace(context, sample_labels=None)
    assert "class_accuracy" not in classifier_metrics(test_items, [], None, context=unconditional)
    unlabelled = dataclasses.replace(
        context, dataset=dataclasses.replace(context.dataset, num_classes=0)
    )
    assert classifier_metrics(test_items, [], None, context=unlabelled) == {}


def test_inception_metrics_with_a_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The whole FID Inception pipeline on random weights: ~0 for a set against itself, larger
    with noise; real features cached by checksum; no weights path, no metric."""
    import torch
    from lcmd_image_vq import inception, metrics
    from lcmd_image_vq.inception import FIDInceptionV3

    torch.manual_seed(0)
    net = FIDInceptionV3()
    with torch.no_grad():  # small BN variances keep random-weight features O(1), not ~1e-8
        for name, buf in net.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.1, 0.2)
    weights = tmp_path / inception.WEIGHTS_NAME
    torch.save(net.state_dict(), weights)
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (16, 16, 1), dtype=np.uint8) for _ in range(6)]

    def read(data_root: Path | None, split: str) -> tuple[list[Any], None]:
        return real, None

    info = DatasetInfo(name="noise", description="", read=read, default_codec="vqvae")
    context = MetricContext(
        dataset=info,
        split="test",
        sample_labels=None,
        load=functools.partial(info.load, data_root=None),
        cache_dir=tmp_path / "cache",
    )
    monkeypatch.delenv(metrics.INCEPTION_WEIGHTS_ENV, raising=False)
    assert metrics.inception_metrics(real, [], None, context) == {}

    monkeypatch.setenv(metrics.INCEPTION_WEIGHTS_ENV, str(weights))
    same = metrics.inception_metrics(real, [], None, context)
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    assert same["inception_score"] >= 1.0
    assert context.protocol["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert len(list((tmp_path / "cache" / metrics.INCEPTION_CACHE).iterdir())) == 1

    calls = []
    original = inception.inception_features
    monkeypatch.setattr(
        inception, "inception_features", lambda m, x: calls.append(1) or original(m, x)
    )
    noisy = [
        np.clip(x.astype(int) + rng.integers(-90, 90, x.shape), 0, 255).astype(np.uint8)
        for x in real
    ]
    assert metrics.inception_metrics(noisy, [], None, context)["fid"] > 1e-3
    assert len(calls) == 1  # the real features came from the cache
