"""Labels from one classified raster that covers the site (``data.label_raster``): a land-cover
map, an earlier campaign's classification, a mosaic of hand-made labels. Each scene's labels
are read from it within the scene's bounds and resampled onto the scene's pixel grid (GDAL's
warper, through rasterio's ``WarpedVRT``: only the blocks under the scene are read), so no
label file has to be cut per scene by hand.

- Values are class numbers, mapped by ``data.remap`` and ``data.unknown_labels`` as a label
  raster's are (e.g. ESA WorldCover's 10, 20, ... 100).
- The raster may be in another CRS and at another pixel size than the scenes: ``nearest``
  takes the class under each scene pixel's centre; ``mode`` the most common class under the
  scene pixel, for a map finer than the scenes.
- Pixels the raster does not cover, or where it holds its nodata value, are ignored by losses
  and metrics, or take ``background``'s class.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from raygym.config import RasterLabels
from raygym.data.io import Window
from raygym.errors import DataError

KEY = "data.label_raster"


def no_crs(image: Path, key: str) -> DataError:
    """The refusal of an image without a CRS under labels read onto its grid
    (``data.label_vector`` / ``data.label_raster``): prepare's header check and the readers
    say it alike."""
    return DataError("these labels are read onto each image's georeferenced grid, and this "
                     "image has no CRS", file=image, key=key,
                     fix="use GeoTIFFs with a CRS, or label files per image (data.labels)")


def check_raster(spec: RasterLabels) -> None:
    """Refuse, with one line, a label raster that is not there, cannot be read, has no CRS or
    lacks ``spec.band`` (or whose band holds complex numbers), before any scene is read; its
    values are checked as each scene reads them (:func:`read_on_grid`)."""
    _raster_facts(spec.file, spec.band)


@functools.lru_cache(maxsize=8)
def _raster_facts(file: Path, band: int) -> tuple[Any, str]:
    """(CRS, dtype) of a label raster, checked; once per process and file (reading runs per
    scene, and per row of chips of a large one); a failure is not cached."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    if not file.exists():
        raise DataError("file not found", file=file, key=f"{KEY}.file")
    try:
        with warnings.catch_warnings():
            # a map without a CRS is refused below, in one line
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(file) as src:
                crs, count, dtypes = src.crs, src.count, src.dtypes
    except rasterio.errors.RasterioIOError as err:
        raise DataError(f"cannot read the raster: {err}", file=file, key=f"{KEY}.file",
                        fix="give a GeoTIFF (or another raster GDAL reads) of class numbers"
                        ) from None
    if crs is None:
        raise DataError("the label raster has no CRS", file=file, key=KEY,
                        fix="assign it its CRS (gdal_edit.py -a_srs EPSG:...) and try again")
    if band > count:
        raise DataError(f"the raster has {count} band(s), not band {band}", file=file,
                        key=f"{KEY}.band", fix=f"a band of 1-{count}")
    if np.dtype(dtypes[band - 1]).kind == "c":
        raise DataError(f"band {band} holds complex numbers, not classes", file=file,
                        key=f"{KEY}.band", fix="the band of class numbers")
    return crs, dtypes[band - 1]


def read_on_grid(spec: RasterLabels, image: Path, window: Window | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The label raster's class numbers on ``image``'s pixel grid (or its ``window``):
    ``(raw, covered)``, both ``(H, W)``: ``raw`` int64 (0 where not covered), ``covered``
    bool, False where the raster has no pixel there or holds its nodata value.

    Raises:
        DataError: an image without a CRS, a raster that is not usable
            (:func:`check_raster`), values that are not whole numbers in 0-65535.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    _raster_facts(spec.file, spec.band)
    with rasterio.open(image) as src:
        if src.crs is None:
            raise no_crs(image, KEY)
        (h, w), transform, crs = (src.height, src.width), src.transform, src.crs
        if window is not None:
            from rasterio.windows import Window as RioWindow

            (h, w) = (window[2], window[3])
            transform = src.window_transform(RioWindow(window[1], window[0], w, h))
    with rasterio.open(spec.file) as labels:
        nodata = labels.nodatavals[spec.band - 1]
        # no nodata value: an alpha band tells the pixels outside the raster
        with WarpedVRT(labels, crs=crs, transform=transform, width=w, height=h,
                       resampling=Resampling[spec.resampling],
                       add_alpha=nodata is None) as vrt:
            raw = vrt.read(spec.band)
            covered = vrt.read_masks(spec.band) > 0
    if raw.dtype.kind == "f":
        covered &= np.isfinite(raw)
    values = raw[covered]
    if values.size and (values.dtype.kind == "f" and not np.all(values == np.round(values))
                        or values.min() < 0 or values.max() > 65535):
        odd = values[(values != np.round(values)) | (values < 0) | (values > 65535)][:3]
        raise DataError(f"class numbers must be whole numbers 0-65535, not {odd.tolist()}",
                        file=spec.file, key=KEY, fix="give a raster of class numbers (and its "
                        "nodata value: gdal_edit.py -a_nodata)")
    out = np.zeros((h, w), np.int64)
    out[covered] = values.astype(np.int64)
    return out, covered
