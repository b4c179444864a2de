"""A small CNN classifier whose penultimate layer is the feature space of the weight-free metrics.

lcmd trains it on a labelled data set's training split the first time a metric needs it and
caches it in a directory the caller gives: `classifier.safetensors` (weights) and
`classifier.json` (the SHA-256 of the training images and labels, the options, the held-out
accuracy). The cache is reused while checksum and options match and retrained otherwise.
Training is seeded and runs on the CPU (about a minute for 4,000 MNIST images).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

CACHE_VERSION = 1
WEIGHTS = "classifier.safetensors"
META = "classifier.json"
EVAL_BATCH = 512
POOL = 4  # spatial size of the pooled map fed to the hidden layer


@dataclasses.dataclass(frozen=True)
class ClassifierOptions:
    """Training options; part of the cache key."""

    width: int = 16  # channels of the first conv; then 2x and 4x
    features: int = 64  # size of the penultimate layer (the metric feature space)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    held_out_every: int = 10  # every 10th training item is held out to measure accuracy
    seed: int = 0


class SmallCNN(nn.Module):
    """Three 3×3 conv blocks with 2× max-pools, a 4×4 average pool, a hidden layer, logits.

    About 90k parameters at the default width; any image size works (the 4×4 pool is adaptive
    and keeps where things are, which a global pool would lose).
    """

    def __init__(self, channels: int, num_classes: int, width: int = 16, features: int = 64):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.Conv2d(width, 2 * width, 3, padding=1),
                nn.Conv2d(2 * width, 4 * width, 3, padding=1),
            ]
        )
        self.hidden = nn.Linear(4 * width * POOL * POOL, features)
        self.head = nn.Linear(features, num_classes)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features `[B, F]` and logits `[B, classes]` of images `[B, C, H, W]`."""
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2, ceil_mode=True)
        features = F.relu(self.hidden(F.adaptive_avg_pool2d(x, POOL).flatten(1)))
        return features, self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)[1]


def to_tensor(items: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 images `(H, W, C)` of one shape → float `[N, C, H, W]` in [-1, 1]."""
    array = np.stack([np.asarray(item) for item in items])
    if array.ndim != 4:
        raise ValueError(f"images must be (H, W, C) arrays, got shape {array.shape[1:]}")
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@torch.no_grad()
def embed(model: SmallCNN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and logits of images `x [N, C, H, W]` (see `to_tensor`), in eval mode."""
    model.eval()
    parts = [model.embed(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat([f for f, _ in parts]), torch.cat([lg for _, lg in parts])


def data_checksum(items: Sequence[np.ndarray], labels: Sequence[int]) -> str:
    """SHA-256 of the images (shape, dtype and bytes, in order) and their labels."""
    digest = hashlib.sha256()
    for item in items:
        array = np.ascontiguousarray(item)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()


def train_classifier(
    items: Sequence[np.ndarray], labels: Sequence[int], num_classes: int, options: ClassifierOptions
) -> tuple[SmallCNN, float]:
    """Train on all but every `held_out_every`-th item; return the model and held-out accuracy."""
    x, y = to_tensor(items), torch.as_tensor(list(labels), dtype=torch.long)
    held = torch.arange(len(x)) % options.held_out_every == options.held_out_every - 1
    if not held.any() or held.all() or len(x) != len(y):
        raise ValueError(
            f"training the classifier needs as many labels as images (got {len(x)} and {len(y)}) "
            f"and at least {options.held_out_every} of them"
        )
    generator = torch.Generator().manual_seed(options.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        model = SmallCNN(x.shape[1], num_classes, options.width, options.features)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=options.lr, weight_decay=options.weight_decay
    )
    x_train, y_train = x[~held], y[~held]
    steps = options.epochs * -(-len(x_train) // options.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, options.lr, total_steps=steps)
    model.train()
    for _ in range(options.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), options.batch_size):
            idx = order[i : i + options.batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    _, logits = embed(model, x[held])
    return model, float((logits.argmax(1) == y[held]).double().mean())


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def load_or_train(
    items: Sequence[np.ndarray],
    labels: Sequence[int],
    num_classes: int,
    cache_dir: str | Path,
    options: ClassifierOptions | None = None,
) -> tuple[SmallCNN, dict[str, Any]]:
    """The cached classifier for this training data and options, trained and cached if absent.

    Returns the model (eval mode) and its cache record (`held_out_accuracy`, checksum, options).
    """
    options = options or ClassifierOptions()
    cache = Path(cache_dir)
    key = {
        "version": CACHE_VERSION,
        "data_sha256": data_checksum(items, labels),
        "options": dataclasses.asdict(options),
        "num_classes": num_classes,
        "image_shape": list(np.shape(items[0])),
    }
    meta_path, weights_path = cache / META, cache / WEIGHTS
    if meta_path.is_file() and weights_path.is_file():
        record = json.loads(meta_path.read_text())
        if {k: record.get(k) for k in key} == key:
            model = SmallCNN(key["image_shape"][-1], num_classes, options.width, options.features)
            model.load_state_dict(load_file(weights_path))
            return model.eval(), record
    start = time.perf_counter()
    model, accuracy = train_classifier(items, labels, num_classes, options)
    record = {
        **key,
        "held_out_accuracy": accuracy,
        "train_items": len(items),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    cache.mkdir(parents=True, exist_ok=True)
    # Weights first: the json is written last, so a record always describes the weights beside it.
    meta_path.unlink(missing_ok=True)
    _write_atomic(weights_path, lambda p: save_file(model.state_dict(), str(p)))
    _write_atomic(meta_path, lambda p: p.write_text(json.dumps(record, indent=2) + "\n"))
    return model, record
