"""Reading imagery and labels: PNG / JPEG with Pillow; GeoTIFF, VRT, JPEG 2000 and ERDAS Imagine
rasters (:data:`RASTER_SUFFIXES`) with rasterio.

Images come back as ``(H, W, C)`` uint8 or uint16 arrays, labels as ``(H, W)`` integer arrays.
Every failure is a :class:`~raygym.errors.DataError` that names the file. Training data asks
for nodata as NaN (:func:`read_image` with ``nodata_to_nan``; see :func:`nodata_mask`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from raygym.errors import DataError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
"""Rasters GDAL reads through rasterio, window by window and with their georeferencing:
GeoTIFF, VRT (e.g. a band stack built with ``gdalbuildvrt -separate``, read in place), JPEG
2000 (Sentinel-2's band files), ERDAS Imagine."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *RASTER_SUFFIXES)
_HASH_CHUNK = 1 << 20  # bytes: a multi-GB scene is hashed without holding it in memory


@dataclass(frozen=True)
class ImageHeader:
    """Size and layout of an image file, read without decoding its pixels."""

    path: Path
    height: int
    width: int
    bands: int
    dtype: str
    nodata: bool = False  # a GeoTIFF that declares a nodata value for some band
    pixel_m: float | None = None  # a GeoTIFF in a projected CRS: its pixel size in metres
    # a GeoTIFF with a CRS: (CRS as WKT, affine transform a, b, c, d, e, f), its pixel grid
    grid: tuple[str, tuple[float, ...]] | None = None


def grid_mismatch(a: ImageHeader, b: ImageHeader) -> str | None:
    """How ``b``'s pixel grid differs from ``a``'s when both are georeferenced (another CRS,
    pixel size or origin, beyond a hundredth of a pixel), for messages; None when they agree
    or either has no CRS (a plain PNG label beside a GeoTIFF is taken as aligned)."""
    if a.grid is None or b.grid is None:
        return None
    (crs_a, ta), (crs_b, tb) = a.grid, b.grid
    if crs_a != crs_b:
        from rasterio.crs import CRS

        if CRS.from_wkt(crs_a) != CRS.from_wkt(crs_b):
            return (f"its CRS ({CRS.from_wkt(crs_b).to_string()}) is not its image's "
                    f"({CRS.from_wkt(crs_a).to_string()})")
    pixel = max(abs(ta[0]), abs(ta[4]), abs(ta[1]), abs(ta[3]))
    if any(abs(x - y) > 1e-6 * pixel for x, y in zip(ta[:2] + ta[3:5], tb[:2] + tb[3:5],
                                                      strict=True)):
        return f"its pixel size ({tb[0]:g}, {tb[4]:g}) is not its image's ({ta[0]:g}, {ta[4]:g})"
    if abs(ta[2] - tb[2]) > 0.01 * pixel or abs(ta[5] - tb[5]) > 0.01 * pixel:
        return (f"its top-left corner ({tb[2]:.3f}, {tb[5]:.3f}) is not its image's "
                f"({ta[2]:.3f}, {ta[5]:.3f}): {(tb[2] - ta[2]) / pixel:+.2f}, "
                f"{(tb[5] - ta[5]) / pixel:+.2f} pixels off")
    return None


def pixel_area_m2(crs: Any, transform: Any) -> float | None:
    """Square metres per pixel of a raster in a projected CRS (``|det(transform)|`` times the
    squared metres per CRS unit); None without a CRS, in a geographic one, or without linear
    units."""
    if crs is None or not crs.is_projected:
        return None
    try:
        unit = float(crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - a CRS without linear units
        return None
    area = abs(transform.a * transform.e - transform.b * transform.d) * unit * unit
    return area or None


# Pillow modes decoded to another mode, so that the bands a header promises are the bands
# the decoded array has: a palette image is its colours, an alpha channel beside grey or
# a palette is dropped (as RGBA's is not: 4 bands both ways), CMYK / YCbCr become RGB and a
# bilevel image 0 / 255 (not booleans). Anything not listed decodes in its own mode.
DECODED_MODE = {"P": "RGB", "PA": "RGB", "LA": "L", "La": "L", "CMYK": "RGB", "YCbCr": "RGB",
                "1": "L"}


def decoded_bands(mode: str) -> int:
    """Bands of the array :func:`read_image` returns for a Pillow image of ``mode``."""
    return Image.getmodebands(DECODED_MODE.get(mode, mode))


def _is_16bit_colour_png(im: Image.Image) -> bool:
    """Pillow opens 48/64-bit PNGs as 8-bit RGB(A), silently dropping the low byte."""
    if im.format != "PNG" or im.mode not in ("RGB", "RGBA"):
        return False
    rawmode = getattr(getattr(im, "png", None), "im_rawmode", "") or ""
    return rawmode.endswith(";16B")


def _read_16bit_colour_png(path: Path) -> np.ndarray:
    """(H, W, 3|4) uint16 via OpenCV (which keeps all 16 bits), channels back to RGB(A) order."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3:
        raise OSError("OpenCV could not decode this 16-bit colour PNG")
    return arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_header(path: Path) -> ImageHeader:
    """Height, width, band count and dtype of ``path`` (cheap: no pixel decode)."""
    try:
        if path.suffix.lower() in RASTER_SUFFIXES:
            import rasterio

            with rasterio.open(path) as src:
                area = pixel_area_m2(src.crs, src.transform)
                grid = (None if src.crs is None else
                        (src.crs.to_wkt(), tuple(float(v) for v in src.transform[:6])))
                return ImageHeader(path, src.height, src.width, src.count, src.dtypes[0],
                                   nodata=any(v is not None for v in src.nodatavals),
                                   pixel_m=math.sqrt(area) if area else None, grid=grid)
        with Image.open(path) as im:
            bands = decoded_bands(im.mode)
            wide = im.mode in ("I;16", "I;16B", "I") or _is_16bit_colour_png(im)
            dtype = "uint16" if wide else "uint8"
            return ImageHeader(path, im.height, im.width, bands, dtype)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"cannot read image header: {_short(err)}", file=path,
                        fix="replace or remove the file") from None
    except Exception as err:  # rasterio raises its own error classes
        raise DataError(f"cannot read image header: {_short(err)}", file=path,
                        fix="replace or remove the file") from None


def nodata_mask(bands: np.ndarray, nodatavals: Sequence[float | None]) -> np.ndarray:
    """``(H, W)`` bool, True at nodata pixels of ``(C, H, W)`` ``bands``: NaN in any band, or
    every band that declares a nodata value (rasterio's ``src.nodatavals``) holding it, as
    GDAL's dataset mask reads it (an RGB with nodata 0 keeps its pixels that are 0 in one band
    only, e.g. dark water)."""
    mask = np.zeros(bands.shape[1:], dtype=bool)
    if bands.dtype.kind == "f":
        mask |= np.isnan(bands).any(axis=0)
    declared = [(b, v) for b, v in enumerate(nodatavals) if v is not None]
    if declared:
        same = np.ones(bands.shape[1:], dtype=bool)
        for b, value in declared:
            # a NaN nodata value equals nothing: NaN pixels are masked above
            same &= bands[b] == value
        mask |= same
    return mask


Window = tuple[int, int, int, int]
"""``(row, col, height, width)`` in pixels: a part of a raster (chips of a large GeoTIFF)."""


def is_raster(path: Path) -> bool:
    """A GeoTIFF, VRT, JPEG 2000 or ERDAS Imagine file (:data:`RASTER_SUFFIXES`), which
    rasterio reads a window at a time."""
    return path.suffix.lower() in RASTER_SUFFIXES


def image_band_count(head: ImageHeader, image_bands: Sequence[int] | None) -> int:
    """The bands of the image file ``head`` that a model reads: all, or ``image_bands``
    (``data.image_bands``, numbered from 1), each of which the file must hold."""
    if image_bands is None:
        return head.bands
    if max(image_bands) > head.bands:
        raise band_missing(head.path, head.bands, list(image_bands))
    return len(image_bands)


def read_image(path: Path, *, nodata_to_nan: bool = False, window: Window | None = None,
               bands: Sequence[int] | None = None) -> np.ndarray:
    """Decode ``path`` to ``(H, W, C)`` uint8/uint16 (float rasters are kept as float32).

    ``nodata_to_nan`` (training data): a GeoTIFF's nodata pixels (:func:`nodata_mask`) become
    NaN in every band, the array float32 when it has any; an image with no other pixel is
    refused (a window with none is not: it is one chip of a larger scene). Without it
    (prediction) pixels come back as stored. ``window``: only that part (a TIFF is read by
    the window, another format decoded whole and cut). ``bands``: only these bands, numbered
    from 1, in this order (``data.image_bands``; a TIFF reads no other band, a nodata value
    counts for the bands read).
    """
    mask: np.ndarray | None = None
    nodatavals: Sequence[float | None] = ()
    try:
        if path.suffix.lower() in RASTER_SUFFIXES:
            import rasterio
            from rasterio.windows import Window as RioWindow

            with rasterio.open(path) as src:
                part = None if window is None else RioWindow(window[1], window[0], window[3],
                                                             window[2])
                indexes = list(bands) if bands is not None else None
                if indexes is not None and max(indexes) > src.count:
                    raise band_missing(path, src.count, indexes)
                arr = src.read(indexes, window=part)  # (C, H, W)
                nodatavals = (src.nodatavals if indexes is None else
                              tuple(src.nodatavals[i - 1] for i in indexes))
            if nodata_to_nan:  # on the stored values, before any cast
                mask = nodata_mask(arr, nodatavals)
            arr = np.moveaxis(arr, 0, -1)
            if arr.dtype not in (np.uint8, np.uint16):
                # Signed / 32-bit ints become uint16 only where that is lossless (e.g. class ids
                # in an int32 label); otherwise float32 keeps sign and value (no wrap-around).
                lossless = (np.issubdtype(arr.dtype, np.integer) and arr.size > 0
                            and int(arr.min()) >= 0 and int(arr.max()) <= 65535)
                arr = arr.astype(np.uint16 if lossless else np.float32)
        else:
            with Image.open(path) as im:
                wide_colour = _is_16bit_colour_png(im)  # before load(): it drops im.png
                im.load()
                if wide_colour:
                    arr = _read_16bit_colour_png(path)
                else:
                    if im.mode in DECODED_MODE:
                        im = im.convert(DECODED_MODE[im.mode])
                    arr = np.asarray(im)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            if window is not None:
                y, x, h, w = window
                arr = arr[y:y + h, x:x + w]
            if bands is not None:
                if max(bands) > arr.shape[2]:
                    raise band_missing(path, arr.shape[2], list(bands))
                arr = arr[..., [b - 1 for b in bands]]
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(f"unreadable or truncated image: {_short(err)}", file=path,
                        fix="replace or remove the file") from None
    except Exception as err:  # rasterio.errors.RasterioIOError and friends
        raise DataError(f"unreadable image: {_short(err)}", file=path,
                        fix="replace or remove the file") from None
    if arr.dtype == np.int32 or arr.dtype == np.int16:  # Pillow's 'I' mode for 16-bit PNGs
        arr = arr.astype(np.uint16)
    elif arr.dtype not in (np.uint8, np.uint16):
        arr = arr.astype(np.float32)
    if mask is not None and mask.any():
        arr = _nodata_as_nan(arr, mask, nodatavals, path, refuse_empty=window is None)
    return np.ascontiguousarray(arr)


def band_missing(path: Path, count: int, bands: list[int]) -> DataError:
    """The one-line error for ``data.image_bands`` naming a band ``path`` (of ``count``
    bands) lacks."""
    return DataError(f"has {count} band{'s' * (count != 1)} but data.image_bands {bands} reads "
                     f"band {max(bands)}", file=path, fix="give images that hold every band it "
                     f"names, or name only bands 1-{count}")


def _nodata_as_nan(arr: np.ndarray, mask: np.ndarray, nodatavals: Sequence[float | None],
                   path: Path, refuse_empty: bool = True) -> np.ndarray:
    """Float32 ``(H, W, C)`` ``arr`` with the pixels of the ``(H, W)`` ``mask`` NaN; a mask of
    every pixel is refused (``refuse_empty``)."""
    if mask.all() and refuse_empty:
        declared = sorted({v for v in nodatavals if v is not None})
        what = "NaN" + "".join(f" or {v:g}" for v in declared)
        raise DataError(f"every pixel is nodata ({what}): nothing to train on", file=path,
                        fix="remove this scene, or correct the raster's nodata value")
    out = arr.astype(np.float32)
    out[mask] = np.nan
    return out


def read_single_band(path: Path, *, nodata_to_nan: bool = False, window: Window | None = None
                     ) -> np.ndarray:
    """An extra-band file: ``(H, W, 1)``; a greyscale saved as RGB is accepted (equal channels).
    ``nodata_to_nan``, ``window``: as :func:`read_image`."""
    arr = read_image(path, nodata_to_nan=nodata_to_nan, window=window)
    if arr.shape[2] == 1:
        return arr
    if arr.shape[2] in (3, 4) and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(
        arr[..., 0], arr[..., 2]
    ):
        return arr[..., :1]
    raise DataError(f"an extra-band file must hold one band, found {arr.shape[2]}", file=path,
                    fix="give one folder per band")


def read_label(path: Path, colour: bool = False, window: Window | None = None) -> np.ndarray:
    """A label image: ``(H, W)`` class values, or ``(H, W, 3)`` colours when ``colour``;
    ``window``: as :func:`read_image`."""
    arr = read_image(path, window=window)
    if colour:
        if arr.shape[2] < 3:
            raise DataError("a palette is configured but this label image is greyscale", file=path,
                            fix="remove data.palette or give colour-coded labels")
        return arr[..., :3].astype(np.uint8)
    if arr.shape[2] == 1:
        return arr[..., 0]
    if arr.shape[2] in (3, 4):
        # Greyscale stored as RGB is common; tolerate it, but refuse real colour labels.
        if np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return arr[..., 0]
        raise DataError("label image is in colour but no data.palette is given", file=path,
                        fix="add `palette: {'#rrggbb': class_id, ...}` to the data section")
    raise DataError(f"label image has {arr.shape[2]} bands; expected 1", file=path)


def read_geo_profile(path: Path) -> dict[str, Any] | None:
    """CRS, transform and pixel size of a GeoTIFF (None for non-geo files or no CRS)."""
    if path.suffix.lower() not in RASTER_SUFFIXES:
        return None
    import rasterio

    with rasterio.open(path) as src:
        if src.crs is None:
            return None
        return {"crs": src.crs, "transform": src.transform,
                "pixel_area": abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d)}


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (64 characters), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
