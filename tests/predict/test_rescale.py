"""``raygym.predict.rescale``: prediction at another resolution, streamed a band of rows at a
time, equals the whole-image resample -> blend -> resample back, and never reads more than a
window's rows."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from raygym.data.transforms import _resize_image, _resize_nearest
from raygym.predict.rescale import ScaledSource, rescaled_strips
from raygym.predict.sources import ArraySource, band_stats
from raygym.predict.tiling import NODATA, blend_strips, join_strips

from . import aerial_crop

TILE, CLASSES = (64, 96), 3


def _forward() -> object:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, CLASSES, 5, padding=2)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(conv(x) * 3, 1)

    return forward


class _CountingSource(ArraySource):
    """An in-memory source that records the most pixels asked for at once."""

    most_pixels = 0

    def read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        self.most_pixels = max(self.most_pixels, (r1 - r0) * self.width)
        return super().read_rows(r0, r1)


def _image() -> np.ndarray:
    """A real aerial crop as float32 (no uint8 rounding in the whole-image reference)."""
    return aerial_crop(300, 400).astype(np.float32)


@pytest.mark.parametrize("scale", [0.3, 1.7])
def test_rows_read_in_bands_equal_the_whole_image_resize(scale: float) -> None:
    image = _image()
    scaled = ScaledSource(ArraySource(image), scale)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    whole = _resize_image(image, (scaled.height, scaled.width), interp)
    for r0 in range(0, scaled.height, 7):
        r1 = min(scaled.height, r0 + 7)
        rows, mask = scaled.read_rows(r0, r1)
        assert mask is None
        np.testing.assert_allclose(rows, whole[r0:r1], atol=1e-3)


@pytest.mark.parametrize("scale", [0.3, 1.7, 3.0])  # 3: a band's last row ends a strip
def test_streamed_prediction_equals_the_whole_image_one(scale: float) -> None:
    image = _image()
    valid = np.ones(image.shape[:2], bool)
    valid[:40, :60] = False  # nodata stays nodata on the input grid
    forward = _forward()
    source = ArraySource(image, valid)
    streamed = list(rescaled_strips(forward, source, scale, tile_hw=TILE, overlap=0.25,
                                    num_classes=CLASSES, flush_rows=32))
    assert [s.row for s in streamed] == list(range(0, 300, 32))  # bands of the input grid
    got = join_strips(iter(streamed))
    # the reference: the whole image resampled, blended, resampled back
    h, w = image.shape[:2]
    sh, sw = round(h * scale), round(w * scale)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = ArraySource(_resize_image(np.where(valid[..., None], image, 0), (sh, sw), interp),
                        _resize_nearest(valid, (sh, sw)))
    ref = join_strips(blend_strips(forward, small, band_stats(small), tile_hw=TILE,
                                   overlap=0.25, num_classes=CLASSES))
    labels = _resize_nearest(ref.labels, (h, w))
    labels[~valid] = NODATA
    probs = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in ref.probs])
    probs[:, ~valid] = 0.0
    assert got.labels.shape == (h, w) and (got.labels[~valid] == NODATA).all()
    assert (got.labels == labels).mean() > 0.999
    np.testing.assert_allclose(got.probs, probs, atol=2e-3)


def test_reads_stay_a_band_of_rows_whatever_the_height() -> None:
    """A 12,000-row image at scale 0.3: no read asks for more than a window's native rows or
    the statistics pass's share, far less than the image."""
    from raygym.predict.sources import STATS_PIXELS

    image = np.tile(aerial_crop(300, 400), (40, 1, 1))
    source = _CountingSource(image)
    rows = sum(s.labels.shape[0] for s in rescaled_strips(
        _forward(), source, 0.3, tile_hw=TILE, overlap=0.25, num_classes=CLASSES))
    assert rows == image.shape[0]
    window = (TILE[0] / 0.3 + 3) * image.shape[1]
    # (the statistics pass: about STATS_PIXELS a read, give or take a row)
    assert source.most_pixels <= max(window, STATS_PIXELS + image.shape[1]) < image.size / 6
