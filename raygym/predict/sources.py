"""Where prediction pixels come from, a band of rows at a time.

A :class:`RasterSource` returns rows ``[r0, r1)`` of an image's band stack with the validity
mask of those rows: :class:`ArraySource` from memory (PNG / JPEG inputs, a resampled image, an
array given to :meth:`raygym.predict.Predictor.predict`), :class:`TiffSource` by rasterio
windows from GeoTIFFs (the image and any TIFF band files; a non-TIFF band file is decoded whole).
:func:`open_source` picks one for an input, and :func:`band_stats` streams the
standardisation statistics over a source without holding it whole.

Nodata: a pixel is invalid when an internal mask or an alpha band used as a mask (see
:func:`raygym.predict.inputs.image_alpha`) says so, when every band equals the nodata value
(GDAL's rule), when any band is NaN, or when a PNG's alpha is 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from raygym.data.io import RASTER_SUFFIXES, band_missing
from raygym.errors import DataError
from raygym.predict.inputs import InputItem, _quiet_rasterio, image_alpha, read_input

STATS_PIXELS = 2**21
"""Pixels per read of the statistics pass (about 50 MB of float64 for 3 bands)."""


class RasterSource(Protocol):
    """An image read a band of rows at a time."""

    height: int
    width: int
    bands: int
    masked: bool
    """Whether any pixel may be nodata (False: :meth:`read_rows` masks are always None)."""

    def read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(r1 - r0, W, C)`` pixels (uint8 / uint16 / float32) and the ``(r1 - r0, W)`` bool
        validity mask (None: every pixel valid)."""
        ...

    def preview(self, hw: tuple[int, int]) -> np.ndarray:
        """The image (at least its first three bands) shrunk to ``hw``, for display."""
        ...


class ArraySource:
    """A whole ``(H, W, C)`` image in memory, with an optional ``(H, W)`` validity mask; a
    pixel with a NaN (or infinite) band is nodata too, as in a TIFF (its values are read as
    0, the mask says where)."""

    def __init__(self, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        if image.ndim != 3:
            raise DataError(f"image must be (H, W, C), got shape {image.shape}")
        if not image.shape[0] or not image.shape[1]:
            raise DataError(f"image is empty, shape {image.shape}: nothing to predict")
        if image.dtype.kind == "f":
            finite = np.isfinite(image).all(axis=2)
            if not finite.all():  # one NaN would otherwise turn the whole image's stats NaN
                valid = finite if valid is None else np.logical_and(valid, finite)
                image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
        self.image = image
        self.valid = None if valid is None or valid.all() else valid.astype(bool)
        self.height, self.width, self.bands = image.shape
        self.masked = self.valid is not None

    def read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        return self.image[r0:r1], None if self.valid is None else self.valid[r0:r1]

    def preview(self, hw: tuple[int, int]) -> np.ndarray:
        if hw == (self.height, self.width):
            return self.image
        import cv2

        from raygym.data.transforms import _resize_image

        return _resize_image(self.image, hw, cv2.INTER_AREA)


def _as_model_dtype(arr: np.ndarray) -> np.ndarray:
    """uint8 / uint16 kept, anything else float32 (as :func:`raygym.data.io.read_image`)."""
    return arr if arr.dtype in (np.uint8, np.uint16) else arr.astype(np.float32)


class _TiffPart:
    """One TIFF of a stack, read by windows: its data bands (a mask alpha left out) and the
    validity of its pixels."""

    def __init__(self, src: Any, alpha: list[int], indexes: tuple[int, ...] | None = None
                 ) -> None:
        from rasterio.enums import MaskFlags

        self.src = src
        # the bands the model reads (data.image_bands), else every band but an alpha mask
        self.indexes = (list(indexes) if indexes else
                        [i + 1 for i in range(src.count) if i not in alpha])
        # GDAL's dataset mask for an internal mask or an alpha used as a mask; an alpha kept as
        # data (see image_alpha) must not mask its own zeros, so nodata values are checked here
        internal = any(MaskFlags.per_dataset in f and MaskFlags.alpha not in f
                       for f in src.mask_flag_enums)
        self.dataset_mask = bool(alpha) or internal
        nodata = src.nodata
        self.nodata = None if nodata is None or math.isnan(nodata) else nodata
        self.floats = np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
        self.masked = self.dataset_mask or self.nodata is not None or self.floats

    def read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        from rasterio.windows import Window

        window = Window(0, r0, self.src.width, r1 - r0)
        data = np.moveaxis(self.src.read(self.indexes, window=window), 0, -1)
        checks = []
        if self.dataset_mask:
            checks.append(self.src.dataset_mask(window=window) > 0)
        if self.nodata is not None:
            checks.append((data != self.nodata).any(axis=2))  # GDAL's rule: all bands nodata
        if self.floats:
            checks.append(~np.isnan(data).any(axis=2))  # NaN nodata included
        valid = np.logical_and.reduce(checks) if checks else None
        return _as_model_dtype(data), valid


class TiffSource:
    """The band stack of a TIFF input (plus its band files), read by rasterio windows.

    Band files that are not TIFFs (or TIFFs of several bands, checked as
    :func:`raygym.data.io.read_single_band` does) are decoded whole: ``(H, W, 1)`` each.
    """

    def __init__(self, item: InputItem, in_channels: int, stack: contextlib.ExitStack) -> None:
        import rasterio

        head = stack.enter_context(rasterio.open(item.path))
        self.height, self.width = head.height, head.width
        alpha = image_alpha(item.path, head.count + len(item.bands), in_channels,
                            item.image_bands)
        if item.image_bands and max(item.image_bands) > head.count:
            raise band_missing(item.path, head.count, list(item.image_bands))
        self.parts: list[_TiffPart | ArraySource] = [_TiffPart(head, alpha, item.image_bands)]
        for band in item.bands:
            src = stack.enter_context(rasterio.open(band)) if band.suffix.lower() in RASTER_SUFFIXES \
                else None
            if src is not None and src.count == 1:
                part: _TiffPart | ArraySource = _TiffPart(src, [])
            else:
                from raygym.data.io import read_single_band

                part = ArraySource(read_single_band(band))
            size = (part.src.height, part.src.width) if isinstance(part, _TiffPart) else \
                (part.height, part.width)
            if size != (self.height, self.width):
                raise DataError(f"size {size[1]}x{size[0]} differs from its image "
                                f"{item.path.name} ({self.width}x{self.height})", file=band)
            self.parts.append(part)
        self.bands = len(self.parts[0].indexes) + len(item.bands)  # type: ignore[union-attr]
        self.masked = any(p.masked for p in self.parts)

    def read_rows(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray | None]:
        pixels, masks = [], []
        for part in self.parts:
            data, valid = part.read_rows(r0, r1)
            pixels.append(data)
            if valid is not None:
                masks.append(valid)
        valid = np.logical_and.reduce(masks) if masks else None
        if len(pixels) == 1:
            return pixels[0], valid
        # e.g. uint8 RGB + uint16 NIR: one common dtype so no band is truncated
        dtype = np.result_type(*[p.dtype for p in pixels])
        return np.concatenate([p.astype(dtype, copy=False) for p in pixels], axis=2), valid

    def preview(self, hw: tuple[int, int]) -> np.ndarray:
        """The image file's first three data bands (GDAL average, overviews used if any)."""
        from rasterio.enums import Resampling

        main = self.parts[0]
        assert isinstance(main, _TiffPart)
        indexes = main.indexes[:3]
        data = main.src.read(indexes, out_shape=(len(indexes), *hw),
                             resampling=Resampling.average)
        return np.nan_to_num(np.moveaxis(data, 0, -1))


@contextlib.contextmanager
def open_source(item: InputItem, in_channels: int) -> Iterator[RasterSource]:
    """The :class:`RasterSource` of one input: windowed for a TIFF, whole otherwise (a PNG's
    alpha, see :func:`raygym.predict.inputs.image_alpha`, becomes the validity mask).

    Raises:
        DataError: the image or a band file cannot be read, or their sizes differ.
    """
    with contextlib.ExitStack() as stack:
        if item.path.suffix.lower() in RASTER_SUFFIXES:
            import rasterio

            from raygym.predict.rasters import GDAL_CACHE_MB

            stack.enter_context(_quiet_rasterio())
            # before the first pixel is read: GDAL's default cache (5 % of RAM) would keep
            # much of a large scene's decoded blocks
            stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
            try:
                source: RasterSource = TiffSource(item, in_channels, stack)
            except DataError:
                raise
            except Exception as err:  # noqa: BLE001 - rasterio's own error classes
                raise DataError(f"unreadable image: {str(err).splitlines()[0]}",
                                file=item.path) from None
        else:
            image = read_input(item)
            alpha = image_alpha(item.path, image.shape[2], in_channels, item.image_bands)
            valid = None
            if alpha:
                valid = image[..., alpha[0]] > 0
                image = np.delete(image, alpha, axis=2)
            source = ArraySource(image, valid)
        yield source


@dataclass(frozen=True)
class BandStats:
    """Standardisation statistics of one image: mean and std of every valid pixel's values,
    all bands pooled (as :func:`raygym.data.transforms.standardize`), in digital numbers."""

    mean: float
    std: float
    valid_pixels: int

    @property
    def denom(self) -> float:
        """``max(std, 1 / sqrt(pixels))``: guards flat images against division by ~0."""
        return max(self.std, 1.0 / math.sqrt(self.valid_pixels))

    def standardize(self, pixels: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        """``(h, w, C)`` raw -> float32 ``(x - mean) / denom``; invalid pixels 0 (the mean)."""
        out = ((pixels.astype(np.float64) - self.mean) / self.denom).astype(np.float32)
        if valid is not None:
            out[~valid] = 0.0
        return out


def band_stats(source: RasterSource, *, rows: int | None = None) -> BandStats:
    """Mean and std over the valid pixels of ``source``, streamed ``rows`` rows at a time.

    Per-read mean and sum of squared deviations (float64) merged with Chan et al.'s pairwise
    update, so the result equals the whole-image statistics within float64 rounding (a
    decimated overview read would be faster but only approximate, and most inputs have none).

    Raises:
        DataError: every pixel is nodata (nodata value, alpha 0 or NaN): nothing to predict.
    """
    step = rows or max(1, STATS_PIXELS // max(source.width, 1))
    count, mean, m2, pixels = 0, 0.0, 0.0, 0
    for r0 in range(0, source.height, step):
        data, valid = source.read_rows(r0, min(source.height, r0 + step))
        values = (data[valid] if valid is not None else data.reshape(-1, data.shape[2]))
        x = values.astype(np.float64).ravel()
        if x.size == 0:
            continue
        part_mean = float(x.mean())
        part_m2 = float(np.square(x - part_mean).sum())
        total = count + x.size
        delta = part_mean - mean
        mean += delta * x.size / total
        m2 += part_m2 + delta * delta * count * x.size / total
        count = total
        pixels += values.shape[0]
    if pixels == 0:
        raise DataError("every pixel is nodata (nodata value, alpha or NaN): nothing to predict")
    return BandStats(mean=mean, std=math.sqrt(m2 / count), valid_pixels=pixels)
