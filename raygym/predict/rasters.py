"""Raster writers for prediction outputs: PNG and deflate-compressed, cloud-optimised GeoTIFF
(overviews, colour table, nodata, scale / offset, mask, band descriptions, tags), written by
bands of rows (:class:`GeoTiffWriter`) to a temp file beside the output and renamed."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import temp_beside, write_bytes_atomic


def write_png(path: Path, array: np.ndarray) -> Path:
    """``(H, W)`` or ``(H, W, 3)`` uint8 -> PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return write_bytes_atomic(path, buf.getvalue())


def class_colormap(num_classes: int) -> dict[int, tuple[int, int, int, int]]:
    """GeoTIFF colour table ``{class id: (r, g, b, 255)}``, the colours of the overlays."""
    from raygym.data.preview import class_colours

    return {i: (int(r), int(g), int(b), 255)
            for i, (r, g, b) in enumerate(class_colours(num_classes))}


def _cog_available() -> bool:
    import rasterio

    with rasterio.Env() as env:
        return "COG" in env.drivers()


GDAL_CACHE_MB = 256
"""GDAL's block cache (MB) while reading and writing a GeoTIFF by windows (its default, 5 % of
RAM, would hold much of a scene; a row of 256-px input tiles of a 20k-wide RGB is 15 MB)."""
BLOCK = 256
"""Tile size of the output GeoTIFFs, in pixels."""


class GeoTiffWriter:
    """Write ``(N, H, W)`` uint8 bands band-of-rows by band-of-rows into a deflate-compressed,
    tiled, cloud-optimised GeoTIFF, atomically.

    Rows go into a tiled GTiff beside ``path`` (hidden temp name); on a clean exit it becomes a
    COG through GDAL's COG driver (overviews built by GDAL with ``resampling``, the colour
    table, nodata, scales / offsets, descriptions, tags and mask carried over) and is renamed
    to ``path``; without the COG driver the temp file gets internal overviews and is renamed.
    On an exception every temp file is removed and ``path`` is left as it was.

    Args:
        path: the output file.
        count, height, width: bands and size in pixels.
        crs, transform: georeferencing (None: not georeferenced).
        descriptions: one per band; colormap: band 1's colour table ``{value: (r, g, b, a)}``.
        tags: dataset metadata; nodata: the bands' nodata value.
        scale: GDAL scale of every band (offset 0): ``value * scale`` is the physical value.
        mask: write a per-dataset mask (pass ``valid`` to :meth:`write`; 0 = nodata).
        resampling: overview resampling (``nearest`` for classes, ``average`` otherwise).
    """

    def __init__(self, path: Path, *, count: int, height: int, width: int, crs: Any = None,
                 transform: Any = None, descriptions: Sequence[str] = (),
                 colormap: dict[int, tuple[int, ...]] | None = None,
                 tags: dict[str, str] | None = None, nodata: float | None = None,
                 scale: float | None = None, mask: bool = False, resampling: str = "nearest"
                 ) -> None:
        self.path = Path(path)
        self.height, self.width = height, width
        self.mask = mask
        self.resampling = resampling
        self._tmp = temp_beside(self.path)
        self._cog_tmp = temp_beside(self.path.with_name(f"{self.path.stem}-cog.tif"))
        self._profile: dict[str, Any] = {
            "driver": "GTiff", "height": height, "width": width, "count": count,
            "dtype": "uint8", "compress": "deflate", "zlevel": 1, "tiled": True,
            "blockxsize": BLOCK, "blockysize": BLOCK, "bigtiff": "IF_SAFER"}
        if crs is not None:
            self._profile["crs"] = crs
        if transform is not None and not transform.is_identity:
            self._profile["transform"] = transform
        if nodata is not None:
            self._profile["nodata"] = nodata
        self._extras = (list(descriptions), colormap, tags, scale)
        self._stack = contextlib.ExitStack()
        self._dst: Any = None

    def __enter__(self) -> GeoTiffWriter:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        try:
            self._stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB,
                                                   GDAL_TIFF_INTERNAL_MASK=True))
            self._dst = self._stack.enter_context(rasterio.open(self._tmp, "w",
                                                                **self._profile))
            descriptions, colormap, tags, scale = self._extras
            for i, d in enumerate(descriptions, start=1):
                self._dst.set_band_description(i, d)
            if colormap:
                self._dst.write_colormap(1, colormap)
            if tags:
                self._dst.update_tags(**tags)
            if scale is not None:
                self._dst.scales = (scale,) * self._dst.count
                self._dst.offsets = (0.0,) * self._dst.count
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, row: int, bands: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Rows ``[row, row + h)`` of every band: ``(N, h, W)`` uint8; ``valid`` ``(h, W)``
        bool, False where nodata (only with ``mask``; None = all valid)."""
        from rasterio.windows import Window

        window = Window(0, row, self.width, bands.shape[1])
        self._dst.write(bands, window=window)
        if self.mask:
            flags = np.full(bands.shape[1:], 255, np.uint8) if valid is None else \
                np.where(valid, 255, 0).astype(np.uint8)
            self._dst.write_mask(flags, window=window)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        finally:
            self._abort()  # removes whatever temp file is left; path is already in place

    def _finish(self) -> None:
        import rasterio.shutil
        from rasterio.enums import Resampling

        if not _cog_available():
            factors = [f for f in (2, 4, 8, 16, 32, 64, 128)
                       if min(self.height, self.width) // f >= 128]
            if factors:
                self._dst.build_overviews(factors, getattr(Resampling, self.resampling))
            self._stack.close()
            self._tmp.replace(self.path)
            return
        self._dst.close()
        rasterio.shutil.copy(self._tmp, self._cog_tmp, driver="COG", compress="deflate",
                             blocksize=BLOCK, overview_resampling=self.resampling,
                             bigtiff="IF_SAFER")
        self._stack.close()
        self._cog_tmp.replace(self.path)

    def _abort(self) -> None:
        self._stack.close()
        for tmp in (self._tmp, self._cog_tmp):
            tmp.unlink(missing_ok=True)


def write_geotiff(path: Path, bands: np.ndarray, *, crs: Any, transform: Any,
                  descriptions: Sequence[str] = (), colormap: dict[int, tuple[int, ...]] | None
                  = None, tags: dict[str, str] | None = None, resampling: str = "nearest",
                  nodata: float | None = None, scale: float | None = None) -> Path:
    """Write a whole ``(N, H, W)`` uint8 array through :class:`GeoTiffWriter` (one write)."""
    n, h, w = bands.shape
    with GeoTiffWriter(path, count=n, height=h, width=w, crs=crs, transform=transform,
                       descriptions=descriptions, colormap=colormap, tags=tags, nodata=nodata,
                       scale=scale, resampling=resampling) as dst:
        dst.write(0, bands)
    return path
