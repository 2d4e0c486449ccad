"""The class map as polygons for GIS users: ``<stem>_polygons.gpkg``, one GeoPackage layer of
4-connected class regions (GDAL's polygonize through :func:`rasterio.features.shapes`), written
by GDAL's OGR through pyogrio (the optional ``vector`` extra: ``pip install raygym[vector]``).

Fields: ``class_id`` (int), ``class_name`` (text), ``pixels`` (the region's pixel count) and
``area_m2`` (``pixels`` times the pixel area, for a projected CRS; null otherwise). Nodata pixels
(label 255) make no polygon. Polygon coordinates are in the label raster's CRS (pixel
coordinates, y down, for PNG inputs). Memory grows with the number of polygons, not pixels:
a noisy map of a large scene can make millions (``min_area`` drops small ones as they come)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import temp_beside
from raygym.errors import RaygymError
from raygym.predict.tiling import NODATA

BATCH = 20_000
"""Polygons per append to the GeoPackage."""


def require_pyogrio() -> None:
    """Refuse ``--polygons`` early when the vector writer is not installed."""
    try:
        import pyogrio  # noqa: F401
    except ImportError:
        raise RaygymError("--polygons needs pyogrio (GDAL's vector formats), which is not "
                          "installed", key="--polygons",
                          fix="pip install 'raygym[vector]' (or pip install pyogrio)") from None


def ring_area(ring: Sequence[Sequence[float]]) -> float:
    """Signed shoelace area of a closed ring ``[(x, y), ...]`` in squared CRS units."""
    xy = np.asarray(ring, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))


def polygon_area(rings: Sequence[Sequence[Sequence[float]]]) -> float:
    """Area of a polygon (exterior ring then holes), whatever the rings' orientation."""
    return abs(ring_area(rings[0])) - sum(abs(ring_area(r)) for r in rings[1:])


def polygon_wkb(rings: Sequence[Sequence[Sequence[float]]]) -> bytes:
    """ISO WKB (little endian) of a 2-D polygon given as GeoJSON rings."""
    out = [struct.pack("<BII", 1, 3, len(rings))]
    for ring in rings:
        xy = np.asarray(ring, dtype="<f8")
        out.append(struct.pack("<I", len(xy)))
        out.append(xy.tobytes())
    return b"".join(out)


def class_polygons(labels: Any, transform: Any, num_classes: int, pixel_area_m2: float | None,
                   min_area: float = 0.0) -> Iterator[tuple[bytes, int, int, float]]:
    """``(WKB, class id, pixels, area m2 or NaN)`` of every class region of ``labels``.

    Args:
        labels: ``(H, W)`` uint8 array or a :func:`rasterio.band` of a label raster (read by
            GDAL itself, so the label need not be in memory).
        transform: pixel -> CRS affine (identity: pixel coordinates).
        num_classes: K (values >= K, i.e. nodata, make no polygon).
        pixel_area_m2: m2 per pixel (None: not projected, no ``area_m2``).
        min_area: drop regions smaller than this, in m2 when ``pixel_area_m2`` is known, else
            in pixels.
    """
    from rasterio.features import shapes

    px = abs(transform.a * transform.e - transform.b * transform.d)
    for geom, value in shapes(labels, connectivity=4, transform=transform):
        cls = int(value)
        if cls >= num_classes or cls == NODATA:
            continue
        pixels = int(round(polygon_area(geom["coordinates"]) / px))
        area = pixels * pixel_area_m2 if pixel_area_m2 is not None else float("nan")
        if (area if pixel_area_m2 is not None else pixels) < min_area:
            continue
        yield polygon_wkb(geom["coordinates"]), cls, pixels, area


def _batches(rows: Iterable[tuple[bytes, int, int, float]]
             ) -> Iterator[list[tuple[bytes, int, int, float]]]:
    batch: list[tuple[bytes, int, int, float]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    yield batch  # possibly empty: the layer is created even when no polygon is kept


def write_polygons(path: Path, labels: Any, *, transform: Any, crs: Any,
                   classes: Sequence[str], pixel_area_m2: float | None, min_area: float = 0.0
                   ) -> Path:
    """Write the class regions of ``labels`` (see :func:`class_polygons`) as a GeoPackage
    layer named after ``path``'s stem, atomically (temp file beside, then rename).

    Returns:
        ``path``.
    """
    import pyogrio.raw
    from affine import Affine

    transform = transform if transform is not None else Affine.identity()
    tmp = temp_beside(path)
    fields = ["class_id", "class_name", "pixels", "area_m2"]
    try:
        rows = class_polygons(labels, transform, len(classes), pixel_area_m2, min_area)
        for n, batch in enumerate(_batches(rows)):
            if n and not batch:
                break
            ids = np.array([r[1] for r in batch], np.int32)
            field_data = [ids, np.array([classes[i] for i in ids], dtype=object),
                          np.array([r[2] for r in batch], np.int64),
                          np.array([r[3] for r in batch], np.float64)]
            pyogrio.raw.write(str(tmp), np.array([r[0] for r in batch], dtype=object),
                              field_data, fields, layer=path.stem, driver="GPKG",
                              geometry_type="Polygon", append=n > 0,
                              crs=crs.to_wkt() if crs is not None else None)
        tmp.replace(path)
    finally:
        for leftover in (tmp, *tmp.parent.glob(f"{tmp.name}-*")):  # SQLite journal files
            leftover.unlink(missing_ok=True)
    return path
