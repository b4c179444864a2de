"""The FID Inception-v3 network in plain torch, for FID / Inception Score / precision-recall.

`FIDInceptionV3` reproduces the TensorFlow graph `inception-2015-12-05` as ported by pytorch-fid,
so the published state_dict `pt_inception-2015-12-05-6726825d.pth` loads into it with
`strict=True` and gives the reference features. Differences from torchvision's Inception-v3:
1008 classes, no auxiliary head, average pools inside the mixed blocks exclude the zero padding
(`count_include_pad=False`), and the last block (`Mixed_7c`) max-pools its pool branch.

Preprocessing follows pytorch-fid: pixels scaled to [0, 1], resized to 299×299 bilinearly
(`align_corners=False`, no antialiasing) inside the network, then mapped to [-1, 1].
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcmd_core.plugins import DataNotFoundError, PluginError

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_NAME
)
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class _ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_same(x: Tensor) -> Tensor:
    """3×3 stride-1 average pool that, like TensorFlow's, ignores the padded zeros."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _MixedA(nn.Module):
    """35×35 block: 1×1, 5×5, double 3×3 and pooled branches (Mixed_5b–5d)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, kernel_size=1)
        self.branch5x5_1 = _ConvBN(cin, 48, kernel_size=1)
        self.branch5x5_2 = _ConvBN(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, kernel_size=3, padding=1)
        self.branch_pool = _ConvBN(cin, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_same(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class _ReduceB(nn.Module):
    """35→17 grid reduction (Mixed_6a)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), b3, bp], 1)


class _MixedC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (Mixed_6b–6e)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row = {"kernel_size": (1, 7), "padding": (0, 3)}
        col = {"kernel_size": (7, 1), "padding": (3, 0)}
        self.branch1x1 = _ConvBN(cin, 192, kernel_size=1)
        self.branch7x7_1 = _ConvBN(cin, c7, kernel_size=1)
        self.branch7x7_2 = _ConvBN(c7, c7, **row)
        self.branch7x7_3 = _ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBN(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBN(c7, 192, **row)
        self.branch_pool = _ConvBN(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            d = conv(d)
        bp = self.branch_pool(_avg_pool_same(x))
        return torch.cat([self.branch1x1(x), b7, self.branch7x7dbl_5(d), bp], 1)


class _ReduceD(nn.Module):
    """17→8 grid reduction (Mixed_7a)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, kernel_size=1)
        self.branch3x3_2 = _ConvBN(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = _ConvBN(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _MixedE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs (Mixed_7b, 7c).

    `max_pool`: the 2015-12-05 graph max-pools the pool branch of its last block (Mixed_7c).
    """

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        row = {"kernel_size": (1, 3), "padding": (0, 1)}
        col = {"kernel_size": (3, 1), "padding": (1, 0)}
        self.branch1x1 = _ConvBN(cin, 320, kernel_size=1)
        self.branch3x3_1 = _ConvBN(cin, 384, kernel_size=1)
        self.branch3x3_2a = _ConvBN(384, 384, **row)
        self.branch3x3_2b = _ConvBN(384, 384, **col)
        self.branch3x3dbl_1 = _ConvBN(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, **row)
        self.branch3x3dbl_3b = _ConvBN(384, 384, **col)
        self.branch_pool = _ConvBN(cin, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_same(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(s),
                self.branch3x3_2b(s),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the FID reference (TF graph 2015-12-05), weights loadable strictly.

    Input: images [N, 3, H, W], uint8 in [0, 255] or float in [0, 1]. `forward` gives the
    2048-d pool3 features; `features_and_logits` adds the 1008-way logits. `weights_sha256` is
    set by `load_fid_inception` (None for an unloaded network).
    """

    def __init__(self) -> None:
        super().__init__()
        self.weights_sha256: str | None = None
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, kernel_size=3)
        self.Mixed_5b = _MixedA(192, 32)
        self.Mixed_5c = _MixedA(256, 64)
        self.Mixed_5d = _MixedA(288, 64)
        self.Mixed_6a = _ReduceB(288)
        self.Mixed_6b = _MixedC(768, 128)
        self.Mixed_6c = _MixedC(768, 160)
        self.Mixed_6d = _MixedC(768, 160)
        self.Mixed_6e = _MixedC(768, 192)
        self.Mixed_7a = _ReduceD(768)
        self.Mixed_7b = _MixedE(1280, max_pool=False)
        self.Mixed_7c = _MixedE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, images: Tensor) -> Tensor:
        """Pool3 features [N, 2048]."""
        return self._pool3(images)

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Pool3 features [N, 2048] and logits [N, 1008].

        The logits are `features @ fc.weight.T` without the bias, as in the original Inception
        Score code (improved-GAN) and torch-fidelity's `logits_unbiased`; `fc.bias` is only
        kept so the published state_dict loads strictly.
        """
        features = self._pool3(images)
        return features, features @ self.fc.weight.T

    def _pool3(self, images: Tensor) -> Tensor:
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
            self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
            self.Mixed_7c,
        ):  # fmt: skip
            x = block(x)
        return x.mean(dim=(2, 3))


def load_fid_inception(path: str | Path) -> FIDInceptionV3:
    """The FID Inception network with the published weights read from `path` (eval mode).

    The file is read with `weights_only=True`, so a pickle that would run code is refused.
    Raises `DataNotFoundError` when the file is missing and `PluginError` when it is not the
    reference state_dict (first missing, unexpected or mis-shaped key).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"FID Inception weights {path} not found: download {WEIGHTS_NAME} "
            f"(pytorch-fid GitHub release, {WEIGHTS_URL}) and pass its path"
        )
    raw = path.read_bytes()
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a non-tensor object
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        what = f"it references {found.group(1)}" if found else "it holds more than tensors"
        raise PluginError(
            f"{path.name} is not a plain state_dict (expected {WEIGHTS_NAME}): {what}; "
            "refused without running it"
        ) from None
    except Exception as e:  # not a torch file at all
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PluginError(
            f"{path.name} is not a plain state_dict (expected {WEIGHTS_NAME}): {reason}"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PluginError(f"{path.name} is not a state_dict of tensors (expected {WEIGHTS_NAME})")

    model = FIDInceptionV3()
    expected = model.state_dict()
    state = dict(state)
    for key, ref in expected.items():
        if key not in state:
            if not key.endswith("num_batches_tracked"):  # absent from pre-2018 checkpoints
                raise PluginError(f"{path.name} is not {WEIGHTS_NAME}: missing key {key!r}")
            state[key] = ref
        elif state[key].shape != ref.shape:
            raise PluginError(
                f"{path.name} is not {WEIGHTS_NAME}: {key!r} has shape "
                f"{tuple(state[key].shape)}, expected {tuple(ref.shape)}"
            )
    unexpected = next((k for k in state if k not in expected), None)
    if unexpected is not None:
        raise PluginError(f"{path.name} is not {WEIGHTS_NAME}: unexpected key {unexpected!r}")
    model.load_state_dict(state, strict=True)
    model.weights_sha256 = hashlib.sha256(raw).hexdigest()
    return model.eval()


def _to_chw(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise PluginError(
            f"inception_features needs uint8 (H, W, 1|3) images, got {image.dtype} {image.shape}"
        )
    if image.shape != shape:
        raise PluginError(f"inception_features needs equal image shapes: {image.shape} vs {shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image.transpose(2, 0, 1)


def inception_features(
    model: FIDInceptionV3, images: Sequence[np.ndarray], batch_size: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """Pool3 features float64 [N, 2048] and class probabilities float64 [N, 1008].

    `images`: uint8 (H, W, C) arrays of one shape, C = 1 (repeated to RGB) or 3. The network
    resizes them to 299×299 itself. Runs in eval mode without gradients on the model's device.
    """
    if batch_size < 1:
        raise PluginError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0:
        return np.zeros((0, FEATURE_DIM)), np.zeros((0, NUM_CLASSES))
    device = next(model.parameters()).device
    shape = np.asarray(images[0]).shape
    was_training = model.training
    model.eval()
    out_f, out_p = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = np.stack(
                    [_to_chw(np.asarray(im), shape) for im in images[start : start + batch_size]]
                )
                f, logits = model.features_and_logits(torch.from_numpy(batch).to(device))
                out_f.append(f.double().cpu().numpy())
                out_p.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out_f), np.concatenate(out_p)
