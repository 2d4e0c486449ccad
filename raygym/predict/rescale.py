"""Prediction at another resolution than the input's (``scale != 1``, e.g. ``--scale auto`` for
a model trained on shrunk scenes), streamed a band of rows at a time at both resolutions.

A :class:`ScaledSource` resamples the rows it is asked for from the native rows they cover;
the sliding windows run on it (:func:`~.tiling.blend_strips`); :func:`upsample_strips` maps the
finished rows back to the input grid (labels nearest, probabilities linear). Memory stays
bounded by a band of rows whatever the image's height, so a GeoTIFF is read by windows at any
scale. The resampling follows the whole-image conventions of :mod:`raygym.data.transforms` (OpenCV's
area when shrinking, linear when enlarging; nearest at pixel centres for masks and labels),
written as separable row weights, so a band of
rows equals those rows of a whole-image ``cv2.resize`` to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from raygym.predict.sources import RasterSource, band_stats
from raygym.predict.tiling import FLUSH_ROWS, NODATA, Forward, Strip, blend_strips


def scaled_size(length: int, scale: float) -> int:
    """Pixels along an axis of ``length`` pixels resampled by ``scale`` (at least 1)."""
    return max(1, round(length * scale))


def _area_weights(out0: int, out1: int, ratio: float, length: int) -> tuple[int, np.ndarray]:
    """Output rows ``[out0, out1)`` of an area shrink by ``1 / ratio`` (``ratio`` native px per
    output px, > 1): ``(first native row, (out1 - out0, n) weights)``; row i averages native
    ``[i * ratio, (i + 1) * ratio)``, partial rows by their overlap."""
    first = int(math.floor(out0 * ratio))
    last = min(length, int(math.ceil(out1 * ratio)))
    edges = np.arange(first, last + 1, dtype=np.float64)
    weights = np.empty((out1 - out0, last - first))
    for k, i in enumerate(range(out0, out1)):
        lo, hi = i * ratio, min((i + 1) * ratio, length)
        weights[k] = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
    weights /= weights.sum(axis=1, keepdims=True)
    return first, weights


def _linear_taps(out: np.ndarray, ratio: float, length: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of output positions ``out`` (``ratio`` source px per output px,
    half-pixel centres, clamped at the edges as OpenCV): ``(i0, i1, weight of i1)``."""
    pos = np.clip((out + 0.5) * ratio - 0.5, 0.0, length - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, length - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _nearest(out: np.ndarray, ratio: float, length: int) -> np.ndarray:
    """Nearest neighbour at pixel centres (raygym's ``_resize_nearest``, as
    ``cv2.INTER_NEAREST_EXACT``): source index ``floor((i + 0.5) * ratio)``."""
    return np.minimum(((out + 0.5) * ratio).astype(np.int64), length - 1)


class ScaledSource:
    """``source`` resampled by ``scale``, read a band of rows at a time (a
    :class:`~.sources.RasterSource`). Pixels come back float32; the validity mask nearest."""

    def __init__(self, source: RasterSource, scale: float) -> None:
        self.source, self.scale = source, scale
        self.height = scaled_size(source.height, scale)
        self.width = scaled_size(source.width, scale)
        self.bands, self.masked = source.bands, source.masked
        self.ratio_y = source.height / self.height  # native px per scaled px
        self.ratio_x = source.width / self.width

    def read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        from raygym.data.transforms import _resize_image

        h = self.source.height
        if self.ratio_y > 1.0:  # shrinking: area weights
            first, weights = _area_weights(r0, r1, self.ratio_y, h)
            pixels, valid = self.source.read_rows(first, first + weights.shape[1])
            rows = _clean(pixels, valid)
            vertical = np.tensordot(weights.astype(np.float32), rows, axes=(1, 0))
        else:  # enlarging (or same height): linear taps
            i0, i1, w1 = _linear_taps(np.arange(r0, r1), self.ratio_y, h)
            first, last = int(i0.min()), int(i1.max()) + 1
            pixels, valid = self.source.read_rows(first, last)
            rows = _clean(pixels, valid)
            w1 = w1[:, None, None]
            vertical = rows[i0 - first] * (1 - w1) + rows[i1 - first] * w1
        if self.width != self.source.width:
            import cv2

            interp = cv2.INTER_AREA if self.ratio_x > 1.0 else cv2.INTER_LINEAR
            vertical = _resize_image(np.ascontiguousarray(vertical, np.float32),
                                     (r1 - r0, self.width), interp)
        mask = None
        if valid is not None:
            ys = _nearest(np.arange(r0, r1), self.ratio_y, h) - first
            xs = _nearest(np.arange(self.width), self.ratio_x, self.source.width)
            mask = valid[ys][:, xs]
        return np.asarray(vertical, np.float32), mask

    def preview(self, hw: tuple[int, int]) -> np.ndarray:
        return self.source.preview(hw)


def _clean(pixels: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """float32 rows; nodata pixels 0 so that NaN cannot smear into their neighbours."""
    rows = pixels.astype(np.float32, copy=False)
    if valid is not None:
        rows = np.where(valid[..., None], rows, 0.0).astype(np.float32)
    return rows


def upsample_strips(strips: Iterator[Strip], scaled: ScaledSource,
                    flush_rows: int = FLUSH_ROWS) -> Iterator[Strip]:
    """Strips of ``scaled``'s grid -> strips of its source's grid, ``flush_rows`` at a time:
    labels nearest, probabilities linear (as the whole-image resize), NODATA where the source's own
    mask says so (its rows are read again for it)."""
    source = scaled.source
    h, w, sh, sw = source.height, source.width, scaled.height, scaled.width
    ry, rx = sh / h, sw / w  # scaled px per native px
    col_near = _nearest(np.arange(w), rx, sw)
    c0, c1, cw = _linear_taps(np.arange(w), rx, sw)
    labels: np.ndarray | None = None
    probs: np.ndarray | None = None
    top = 0  # scaled row held at buffer row 0
    pending = iter(strips)
    exhausted = False
    for a in range(0, h, flush_rows):
        rows = np.arange(a, min(h, a + flush_rows))
        near = _nearest(rows, ry, sh)
        y0, y1, wy = _linear_taps(rows, ry, sh)
        need = int(max(near.max(), y1.max())) + 1
        while not exhausted and (labels is None or top + labels.shape[0] < need):
            strip = next(pending, None)
            if strip is None:
                exhausted = True
                break
            labels = strip.labels if labels is None else np.concatenate([labels, strip.labels])
            probs = strip.probs if probs is None else np.concatenate([probs, strip.probs], 1)
        assert labels is not None and probs is not None
        out_labels = labels[near - top][:, col_near]
        wy3 = wy[None, :, None]
        vertical = probs[:, y0 - top] * (1 - wy3) + probs[:, y1 - top] * wy3
        out_probs = vertical[:, :, c0] * (1 - cw) + vertical[:, :, c1] * cw
        if source.masked:
            _, valid = source.read_rows(int(rows[0]), int(rows[-1]) + 1)
            if valid is not None:
                out_labels[~valid] = NODATA
                out_probs[:, ~valid] = 0.0
        yield Strip(a, out_labels, out_probs.astype(np.float32))
        # the first scaled row the next band needs; never past what the buffer holds (when
        # enlarging it can be the next strip's first row, which must stay at its place)
        first_needed = int(min(_nearest(np.array([rows[-1] + 1]), ry, sh)[0],
                               _linear_taps(np.array([rows[-1] + 1]), ry, sh)[0][0]))
        drop = min(first_needed, top + labels.shape[0]) - top
        if drop > 0:
            labels, probs, top = labels[drop:], probs[:, drop:], top + drop


def rescaled_strips(forward: Forward, source: RasterSource, scale: float, *,
                    tile_hw: tuple[int, int], overlap: float, num_classes: int,
                    batch_size: int = 8, flush_rows: int = FLUSH_ROWS) -> Iterator[Strip]:
    """Predict ``source`` at ``scale`` times its resolution, on its own grid, in strips of
    ``flush_rows`` rows (the arguments as :func:`~.tiling.blend_strips`'). Standardised with
    the resampled image's statistics, as training standardised its resized scenes."""
    from raygym.predict.sources import STATS_PIXELS

    scaled = ScaledSource(source, scale)
    # each statistics read: about STATS_PIXELS pixels at the larger of the two resolutions
    per_row = max(scaled.width, source.width * scaled.ratio_y)
    stats = band_stats(scaled, rows=max(1, int(STATS_PIXELS // per_row)))
    strips = blend_strips(forward, scaled, stats, tile_hw=tile_hw,
                          overlap=overlap, num_classes=num_classes, batch_size=batch_size,
                          flush_rows=flush_rows)
    yield from upsample_strips(strips, scaled, flush_rows)
