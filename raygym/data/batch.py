"""Prepared samples -> the tensors a model takes: one function for training, scoring and
evaluation, so every path standardises exactly as training did."""

from __future__ import annotations

import numpy as np
import torch

from raygym.data.transforms import standardize

Batch = tuple[torch.Tensor, torch.Tensor]  # (B, C, H, W) float32, (B, H, W) int64


def to_batch(images: np.ndarray, labels: np.ndarray, valid_hw: np.ndarray) -> Batch:
    """Raw ``(B, H, W, C)`` uint images + ``(B, H, W)`` labels -> standardized tensors.

    Standardisation is per image over its valid (unpadded) region ``valid_hw`` (``(B, 2)``
    int; ``0`` = the whole image), the same function used at prediction time.
    """
    x = np.stack([standardize(img, tuple(int(v) for v in hw) if hw[0] > 0 else None)
                  for img, hw in zip(images, valid_hw, strict=True)])
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(labels.astype(np.int64))
    return xt, yt
