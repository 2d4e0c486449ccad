"""One input in, its output files and ``summary.csv`` row out (:func:`predict_one`, used by
the plain path and by each Ray actor alike), and ``summary.csv`` itself."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import write_bytes_atomic
from raygym.data.io import RASTER_SUFFIXES
from raygym.predict.inputs import GeoInfo, InputItem, _quiet_rasterio, read_geo
from raygym.predict.options import PredictOptions
from raygym.predict.predictor import Predictor
from raygym.predict.rasters import GeoTiffWriter, class_colormap, write_png
from raygym.predict.sources import open_source
from raygym.predict.styles import add_legend, write_label_qml
from raygym.predict.tiling import NODATA, Strip

PROB_SCALE = 255
"""Probability rasters store ``round(PROB_SCALE * p)`` as uint8, with GDAL scale 1/PROB_SCALE."""
OVERLAY_MAX_SIDE = 2048
"""Overlays of larger images are shrunk to this long side: a full-size PNG of a scene is of no
use (the label GeoTIFF is the map) and the overlay's float copies would dominate the memory."""
SUMMARY_HEAD = ["image", "label", "height", "width", "crs", "pixel_area_m2", "nodata_pixels"]
"""``summary.csv``'s first columns; then ``<class>_{pixels,fraction,m2}``, then ``warning``."""




def output_paths(item: InputItem, options: PredictOptions) -> dict[str, Path]:
    """The files one input's prediction writes: ``label`` (a GeoTIFF for a raster input:
    GeoTIFF, VRT, JPEG 2000, ERDAS; else PNG) and its QGIS style ``qml``, and ``probs`` /
    ``overlay`` / ``polygons`` when asked for."""
    out = options.out
    tiff = item.path.suffix.lower() in RASTER_SUFFIXES
    paths = {"label": out / f"{item.name}_label.{'tif' if tiff else 'png'}",
             "qml": out / f"{item.name}_label.qml"}
    if options.probabilities:
        paths["probs"] = out / f"{item.name}_probs.tif"
    if options.overlay:
        paths["overlay"] = out / f"{item.name}_overlay.png"
    if options.polygons:
        paths["polygons"] = out / f"{item.name}_polygons.gpkg"
    return paths


def _preview_hw(height: int, width: int) -> tuple[int, int]:
    """The overlay's size: the image's, or shrunk to :data:`OVERLAY_MAX_SIDE` (aspect kept)."""
    f = min(1.0, OVERLAY_MAX_SIDE / max(height, width))
    return max(1, round(height * f)), max(1, round(width * f))


def _label_preview(label: Path | np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` labels for the overlay: nearest from the array or the label GeoTIFF (whose
    overviews make this cheap)."""
    if isinstance(label, np.ndarray):
        from raygym.data.transforms import _resize_nearest

        return label if label.shape == hw else _resize_nearest(label, hw)
    import rasterio
    from rasterio.enums import Resampling

    with _quiet_rasterio(), rasterio.open(label) as src:
        return src.read(1, out_shape=hw, resampling=Resampling.nearest)


def _write_strips(strips: Iterator[Strip], writers: dict[str, GeoTiffWriter],
                  labels: np.ndarray | None) -> np.ndarray:
    """Every strip into the GeoTIFF ``writers`` (``label``, ``probs``) and / or the in-memory
    ``labels``; returns the label value counts ``(256,)`` int64."""
    counts = np.zeros(256, np.int64)
    for strip in strips:
        counts += np.bincount(strip.labels.ravel(), minlength=256)
        if labels is not None:
            labels[strip.row:strip.row + strip.labels.shape[0]] = strip.labels
        if "label" in writers:
            writers["label"].write(strip.row, strip.labels[None])
        if "probs" in writers:
            q = np.rint(np.clip(strip.probs, 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
            writers["probs"].write(strip.row, q, strip.valid)
    return counts


def predict_one(predictor: Predictor, item: InputItem, options: PredictOptions
                ) -> dict[str, Any]:
    """Predict one input and write its outputs into ``options.out``; returns its summary row.

    A TIFF input is read and its GeoTIFFs written by bands of rows (see
    :mod:`raygym.predict.tiling`); a PNG / JPEG input and its PNG label are held in memory.
    The row: see :func:`summary_row`, plus ``_files``, the names of the files written.

    Raises:
        DataError: the image (or a band file) cannot be read, has the wrong band count, or is
            nodata everywhere.
    """
    geo = read_geo(item.path)
    k, classes = predictor.num_classes, predictor.classes
    # under auto, a GeoTIFF's own pixel size decides (see Predictor.scale_for)
    scale = predictor.scale_for(options.scale, geo.pixel_m)
    paths = output_paths(item, options)
    warning = ""
    if geo.is_raster and geo.crs is None:
        warning = "GeoTIFF has no CRS: outputs written without georeferencing"
    with open_source(item, predictor.in_channels) as source, contextlib.ExitStack() as stack:
        h, w = source.height, source.width
        common = {"height": h, "width": w, "crs": geo.crs, "transform": geo.transform}
        tags = {"classes": json.dumps(classes), "source": str(item.path),
                "models": json.dumps(predictor.plan.to_json()),
                "resample_factor": f"{scale:g}"}
        writers: dict[str, GeoTiffWriter] = {}
        if geo.is_raster:
            writers["label"] = stack.enter_context(GeoTiffWriter(
                paths["label"], count=1, descriptions=["class id"], colormap=class_colormap(k),
                tags=tags, nodata=NODATA, **common))
        if options.probabilities:
            writers["probs"] = stack.enter_context(GeoTiffWriter(
                paths["probs"], count=k, descriptions=classes, resampling="average",
                tags=tags, scale=1.0 / PROB_SCALE, mask=source.masked, **common))
        labels = None if geo.is_raster else np.empty((h, w), np.uint8)
        strips = predictor.predict_strips(source, tile=options.tile, overlap=options.overlap,
                                          tta=options.tta, scale=scale,
                                          batch_size=options.batch_size)
        counts = _write_strips(strips, writers, labels)
        stack.close()  # the GeoTIFFs are complete (COGs in place) from here on
        if labels is not None:
            write_png(paths["label"], labels)
        written = [paths[n].name for n in ("label", "probs") if n in paths]
        written.append(write_label_qml(paths["qml"], classes).name)
        if options.overlay:
            from raygym.data.preview import overlay

            hw = _preview_hw(h, w)
            shown = overlay(source.preview(hw), _label_preview(
                labels if labels is not None else paths["label"], hw), k)
            written.append(write_png(paths["overlay"], add_legend(shown, classes)).name)
    if options.polygons:
        written.append(_write_polygons(paths, labels, geo, classes, options).name)
    row = summary_row(item, paths["label"].name, counts, (h, w), classes, geo, warning)
    row["_files"] = written
    return row


def _write_polygons(paths: dict[str, Path], labels: np.ndarray | None, geo: GeoInfo,
                    classes: Sequence[str], options: PredictOptions) -> Path:
    """``<stem>_polygons.gpkg`` from the in-memory labels or, for TIFFs, the label GeoTIFF
    itself (GDAL polygonizes it without loading it whole)."""
    from raygym.predict.polygons import write_polygons

    kwargs = {"transform": geo.transform, "crs": geo.crs, "classes": classes,
              "pixel_area_m2": geo.pixel_area_m2, "min_area": options.min_area}
    if labels is not None:
        return write_polygons(paths["polygons"], labels, **kwargs)
    import rasterio

    with _quiet_rasterio(), rasterio.open(paths["label"]) as src:
        return write_polygons(paths["polygons"], rasterio.band(src, 1), **kwargs)


def summary_row(item: InputItem, label_name: str, counts: np.ndarray, hw: tuple[int, int],
                classes: Sequence[str], geo: GeoInfo, warning: str) -> dict[str, Any]:
    """One image's ``summary.csv`` row.

    Args:
        item: the input; label_name: its label file's name; warning: "" or one line.
        counts: ``(256,)`` pixel count of each label value (class ids, then nodata 255).
        hw: the image's ``(H, W)`` in pixels; classes: the K class names.
        geo: the input's georeferencing (areas only for a projected CRS).

    Returns:
        ``image``, ``label``, ``height``, ``width`` (pixels), ``crs``, ``pixel_area_m2``,
        ``nodata_pixels``, ``warning``, then per class ``<name>_pixels``, ``<name>_fraction``
        (of the pixels with a prediction) and ``<name>_m2`` (empty when not georeferenced in
        a projected CRS).
    """
    k = len(classes)
    total = max(int(counts[:k].sum()), 1)
    row: dict[str, Any] = {
        "image": str(item.path), "label": label_name, "height": int(hw[0]),
        "width": int(hw[1]), "crs": geo.crs.to_string() if geo.crs is not None else "",
        "pixel_area_m2": geo.pixel_area_m2 if geo.pixel_area_m2 is not None else "",
        "nodata_pixels": int(counts[NODATA]), "warning": warning,
    }
    for name, n in zip(classes, counts[:k], strict=True):
        row[f"{name}_pixels"] = int(n)
        row[f"{name}_fraction"] = round(int(n) / total, 6)
        row[f"{name}_m2"] = (float(n) * geo.pixel_area_m2 if geo.pixel_area_m2 is not None
                             else "")
    return row


def write_summary(path: Path, rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> Path:
    """``summary.csv``, one row per image (see :func:`summary_row`), written atomically."""
    columns = list(SUMMARY_HEAD)
    columns += [f"{c}_{s}" for c in classes for s in ("pixels", "fraction", "m2")]
    columns.append("warning")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return write_bytes_atomic(path, buf.getvalue().encode())
