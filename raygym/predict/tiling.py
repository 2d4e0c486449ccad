"""Whole images of any size through a fixed-size model: sliding windows at native resolution,
softmax blended with edge-ramped weights, optional resampling by ``scale`` and back.

Everything here takes a ``forward`` callable (``(B, C, tH, tW)`` tensor -> ``(B, K, tH, tW)``
probabilities), so it runs without a model file (see :class:`raygym.predict.Predictor`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from raygym.data.transforms import standardize
from raygym.errors import RaygymError

Forward = Callable[[torch.Tensor], torch.Tensor]
"""``(B, C, tH, tW)`` float32 standardized tiles -> ``(B, K, tH, tW)`` probabilities."""


def window_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Top (or left) offsets of the windows covering ``length`` pixels with ``tile``-pixel
    windows overlapping by about ``overlap * tile``; the last window ends at ``length``.
    ``[0]`` when ``length <= tile`` (the image is padded instead)."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def blend_weights(tile_hw: tuple[int, int], overlap: float) -> np.ndarray:
    """``(tH, tW)`` float32 blending window: 1 in the middle, falling linearly towards the tile
    edges over ``overlap * tile`` pixels (to ``0.5 / ramp`` at the edge pixel, never 0, so image
    borders covered by a single window are still defined). All ones when ``overlap == 0``."""
    def ramp(n: int) -> np.ndarray:
        width = overlap * n
        if width < 1.0:
            return np.ones(n, np.float32)
        i = np.arange(n, dtype=np.float64) + 0.5
        return np.minimum(1.0, np.minimum(i, n - i) / width).astype(np.float32)

    return np.outer(ramp(tile_hw[0]), ramp(tile_hw[1]))


def sliding_window_probs(forward: Forward, image: np.ndarray, *, tile_hw: tuple[int, int],
                         overlap: float, num_classes: int, batch_size: int = 8) -> np.ndarray:
    """Blended class probabilities of a standardized image of any size.

    Args:
        forward: ``(B, C, tH, tW)`` float32 tensor -> ``(B, K, tH, tW)`` probabilities.
        image: ``(H, W, C)`` float32, already standardized (padding value 0 = the mean).
        tile_hw: window size ``(tH, tW)``; an image smaller than it is zero-padded bottom/right.
        overlap: ``0 <= overlap < 1``, fraction of a window shared with its neighbour.
        num_classes: K.
        batch_size: windows per ``forward`` call.

    Returns:
        ``(K, H, W)`` float32 probabilities (each pixel's weighted mean over its windows).
    """
    if not 0.0 <= overlap < 1.0:
        raise RaygymError(f"overlap must be in [0, 1) (got {overlap})", key="--overlap")
    h, w, c = image.shape
    th, tw = tile_hw
    ph, pw = max(h, th), max(w, tw)
    if (ph, pw) != (h, w):
        padded = np.zeros((ph, pw, c), np.float32)
        padded[:h, :w] = image
        image = padded
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    weight = blend_weights((th, tw), overlap)
    acc = np.zeros((num_classes, ph, pw), np.float32)
    norm = np.zeros((ph, pw), np.float32)
    windows = [(y, x) for y in window_starts(ph, th, overlap) for x in window_starts(pw, tw, overlap)]
    for start in range(0, len(windows), batch_size):
        part = windows[start:start + batch_size]
        x = torch.from_numpy(np.stack([chw[:, y:y + th, x0:x0 + tw] for y, x0 in part]))
        probs = forward(x).numpy()
        for (y, x0), p in zip(part, probs, strict=True):
            acc[:, y:y + th, x0:x0 + tw] += p * weight
            norm[y:y + th, x0:x0 + tw] += weight
    acc /= norm
    return acc[:, :h, :w]


def _resize_chw(arr: np.ndarray, hw: tuple[int, int], *, linear: bool) -> np.ndarray:
    """Resize ``(K, H, W)`` (probabilities) or ``(H, W, C)`` images via transforms' cv2 helper."""
    import cv2

    from raygym.data.transforms import _resize_image  # the same band-chunked cv2 resize

    hwc = np.ascontiguousarray(arr.transpose(1, 2, 0))
    interp = cv2.INTER_LINEAR if linear else cv2.INTER_AREA
    return np.ascontiguousarray(_resize_image(hwc, hw, interp).transpose(2, 0, 1))


def predict_image(forward: Forward, image: np.ndarray, *, tile_hw: tuple[int, int],
                  overlap: float, num_classes: int, scale: float = 1.0, batch_size: int = 8
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Standardize once, (optionally) resample, slide, blend, and map back to the input grid.

    Args:
        forward: ``(B, C, tH, tW)`` -> ``(B, K, tH, tW)`` probabilities (see :class:`Predictor`).
        image: ``(H, W, C)`` raw image.
        tile_hw: window size; overlap: window overlap fraction; num_classes: K.
        scale: resample factor before prediction (1 = native resolution).
        batch_size: windows per forward call.

    Returns:
        ``(labels (H, W) uint8, probs (K, H, W) float32)``. With ``scale != 1`` the labels are
        the argmax at the model's resolution resampled nearest to ``(H, W)`` and the
        probabilities are resampled linearly.
    """
    import cv2

    from raygym.data.transforms import _resize_image, _resize_nearest

    if not scale > 0:
        raise RaygymError(f"scale must be > 0 (got {scale})", key="--scale")
    h, w = image.shape[:2]
    work = image
    if scale != 1.0:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        work = _resize_image(image, (sh, sw), interp)
    probs = sliding_window_probs(forward, standardize(work), tile_hw=tile_hw, overlap=overlap,
                                 num_classes=num_classes, batch_size=batch_size)
    labels = probs.argmax(axis=0).astype(np.uint8)
    if scale != 1.0:
        labels = _resize_nearest(labels, (h, w))
        probs = _resize_chw(probs, (h, w), linear=True)
    return labels, probs
