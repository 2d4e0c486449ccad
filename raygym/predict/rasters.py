"""Raster writers for prediction outputs: PNG and deflate-compressed, cloud-optimised GeoTIFF
(overviews, colour table, band descriptions, tags), each written to a temp file and renamed."""

from __future__ import annotations

import io
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


def write_geotiff(path: Path, bands: np.ndarray, *, crs: Any, transform: Any,
                  descriptions: Sequence[str] = (), colormap: dict[int, tuple[int, ...]] | None
                  = None, tags: dict[str, str] | None = None, resampling: str = "nearest"
                  ) -> Path:
    """Write ``(N, H, W)`` uint8 bands as a deflate-compressed, tiled, cloud-optimised GeoTIFF.

    GDAL's COG driver when rasterio's GDAL has it (overviews built with ``resampling``), else a
    tiled GTiff with internal overviews. ``crs`` / ``transform`` may be None (not georeferenced).
    Written to a temp file and renamed.
    """
    import warnings

    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning

    n, h, w = bands.shape
    profile: dict[str, Any] = {"height": h, "width": w, "count": n, "dtype": "uint8",
                               "compress": "deflate"}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None and not transform.is_identity:
        profile["transform"] = transform
    cog = _cog_available()
    if cog:
        profile.update(driver="COG", blocksize=256, overview_resampling=resampling,
                       bigtiff="IF_SAFER")
    else:
        profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
    tmp = temp_beside(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(bands)
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
                if colormap:
                    dst.write_colormap(1, colormap)
                if tags:
                    dst.update_tags(**tags)
                if not cog:
                    # overview levels while the short side stays >= 128 px
                    factors = [f for f in (2, 4, 8, 16, 32) if min(h, w) // f >= 128]
                    if factors:
                        dst.build_overviews(factors, getattr(Resampling, resampling))
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
