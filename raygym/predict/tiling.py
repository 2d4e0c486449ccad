"""Images of any size through a fixed-size model: sliding windows at native resolution, softmax
blended with edge-ramped weights, streamed as :class:`Strip` s of finished rows.

:func:`blend_strips` is the one blending path: it reads a :class:`~.sources.RasterSource` one
row of windows at a time (``tH`` rows, consecutive reads overlapping by the blending overlap)
and yields rows as soon as no later window can touch them, in bands of ``flush_rows`` (the
output GeoTIFF's tile height, so every output tile is written once). Memory is bounded by
``(tH + flush_rows) x W`` pixels, whatever the image height; an in-memory image is just a
source that happens to be in memory. At another resolution (``scale != 1``) the same runs on
a resampled source (:mod:`raygym.predict.rescale`).

Everything here takes a ``forward`` callable (``(B, C, tH, tW)`` tensor -> ``(B, K, tH, tW)``
probabilities), so it runs without a model file (see :class:`raygym.predict.Predictor`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from raygym.data.labels import IGNORE_INDEX
from raygym.data.transforms import window_starts
from raygym.errors import RaygymError
from raygym.predict.sources import BandStats, RasterSource

Forward = Callable[[torch.Tensor], torch.Tensor]
"""``(B, C, tH, tW)`` float32 standardized tiles -> ``(B, K, tH, tW)`` probabilities."""

NODATA = IGNORE_INDEX
"""Label value of pixels without a prediction (input nodata); the label rasters' nodata."""
FLUSH_ROWS = 256
"""Rows per yielded strip (the output GeoTIFFs' block height)."""


@dataclass
class Strip:
    """Finished rows ``[row, row + h)`` of a prediction, full width ``W``.

    Attributes:
        row: first image row.
        labels: ``(h, W)`` uint8 class ids, :data:`NODATA` where the input is nodata.
        probs: ``(K, h, W)`` float32 blended probabilities (sum 1 over K; 0 at nodata).
    """

    row: int
    labels: np.ndarray
    probs: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """``(h, W)`` bool: pixels with a prediction."""
        return self.labels != NODATA


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


def _finish(acc: np.ndarray, norm: np.ndarray, valid: np.ndarray, row: int) -> Strip:
    """Normalise blended rows into a :class:`Strip` (copies: the buffers are reused)."""
    probs = acc / norm
    labels = probs.argmax(axis=0).astype(np.uint8)
    labels[~valid] = NODATA
    probs[:, ~valid] = 0.0
    return Strip(row, labels, probs)


def blend_strips(forward: Forward, source: RasterSource, stats: BandStats, *,
                 tile_hw: tuple[int, int], overlap: float, num_classes: int,
                 batch_size: int = 8, flush_rows: int = FLUSH_ROWS) -> Iterator[Strip]:
    """Blended class probabilities of ``source``, top to bottom, in strips of finished rows.

    Args:
        forward: ``(B, C, tH, tW)`` float32 tensor -> ``(B, K, tH, tW)`` probabilities.
        source: the raw image; ``stats`` standardise it (nodata pixels become 0, the mean).
        tile_hw: window size ``(tH, tW)``; an image smaller than it is zero-padded bottom/right.
        overlap: ``0 <= overlap < 1``, fraction of a window shared with its neighbour.
        num_classes: K.
        batch_size: windows per ``forward`` call (within one row of windows).
        flush_rows: strips end on multiples of this row (the last one at the image's end).

    Yields:
        :class:`Strip` s covering rows ``0..H`` in order; each pixel's probabilities are the
        weighted mean over its windows.
    """
    if not 0.0 <= overlap < 1.0:
        raise RaygymError(f"overlap must be in [0, 1) (got {overlap})", key="--overlap")
    h, w = source.height, source.width
    th, tw = tile_hw
    ph, pw = max(h, th), max(w, tw)
    ys, xs = window_starts(ph, th, overlap), window_starts(pw, tw, overlap)
    weight = blend_weights(tile_hw, overlap)
    # rows still open never span more than one window plus one unfinished flush band
    cap = th + flush_rows
    acc = np.zeros((num_classes, cap, pw), np.float32)
    norm = np.zeros((cap, pw), np.float32)
    valid = np.ones((cap, pw), bool)
    top = 0  # image row held in buffer row 0
    for i, y in enumerate(ys):
        r1 = min(y + th, h)
        pixels, ok = source.read_rows(y, r1)
        chw = np.zeros((pixels.shape[2], th, pw), np.float32)
        chw[:, :r1 - y, :w] = stats.standardize(pixels, ok).transpose(2, 0, 1)
        if ok is not None:
            valid[y - top:r1 - top, :w] = ok
        for start in range(0, len(xs), batch_size):
            part = xs[start:start + batch_size]
            probs = forward(torch.from_numpy(np.stack([chw[:, :, x:x + tw] for x in part])))
            for x, p in zip(part, probs.numpy(), strict=True):
                acc[:, y - top:y - top + th, x:x + tw] += p * weight
                norm[y - top:y - top + th, x:x + tw] += weight
        last = i + 1 == len(ys)
        end = h if last else (ys[i + 1] // flush_rows) * flush_rows
        if end <= top:
            continue
        n = end - top
        yield _finish(acc[:, :n, :w], norm[:n, :w], valid[:n, :w], top)
        used = y + th - top
        acc[:, :used - n] = acc[:, n:used]
        acc[:, used - n:] = 0.0
        norm[:used - n] = norm[n:used]
        norm[used - n:] = 0.0
        valid[:used - n] = valid[n:used]
        valid[used - n:] = True
        top = end


def join_strips(strips: Iterator[Strip]) -> Strip:
    """One :class:`Strip` of all rows (for images that are held in memory anyway)."""
    parts = list(strips)
    if len(parts) == 1:
        return parts[0]
    return Strip(parts[0].row, np.concatenate([s.labels for s in parts], axis=0),
                 np.concatenate([s.probs for s in parts], axis=1))
