"""Checked conversion of image items (uint8 arrays (H, W, C)) to a float batch for a codec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lcmd_core.plugins import PluginError


def image_batch(
    items: Sequence[Any], shape: tuple[int, int, int], codec: str, hint: str = ""
) -> torch.Tensor:
    """uint8 images of exactly `shape` (H, W, C) → float [N, C, H, W] in [0, 255].

    Anything else is refused with one line naming the item, what it is and what was expected.
    """
    for i, item in enumerate(items):
        if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.shape != shape:
            got = (
                f"{item.dtype} array of shape {item.shape}"
                if isinstance(item, np.ndarray)
                else type(item).__name__
            )
            raise PluginError(
                f"{codec} codec: item {i} is a {got}; expected uint8 arrays of shape {shape}{hint}"
            )
    if not items:
        return torch.zeros(0, shape[2], shape[0], shape[1])
    array = np.ascontiguousarray(np.stack(items).transpose(0, 3, 1, 2))
    return torch.from_numpy(array).float()
