"""One input in, its output files and ``summary.csv`` row out (:func:`predict_one`, used by
the plain path and by each Ray actor alike), and ``summary.csv`` itself."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import write_bytes_atomic
from raygym.errors import DataError
from raygym.predict.inputs import GeoInfo, InputItem, read_geo, read_input
from raygym.predict.options import PredictOptions
from raygym.predict.predictor import Predictor
from raygym.predict.rasters import class_colormap, write_geotiff, write_png

PROB_SCALE = 255
"""Probability rasters store ``round(PROB_SCALE * p)`` as uint8."""
SUMMARY_HEAD = ["image", "label", "height", "width", "crs", "pixel_area_m2"]
"""``summary.csv``'s first columns; then ``<class>_{pixels,fraction,m2}``, then ``warning``."""


_TIFF = (".tif", ".tiff")


def output_paths(item: InputItem, options: PredictOptions) -> dict[str, Path]:
    """The files one input's prediction writes: ``label`` (GeoTIFF for TIFF input, else PNG),
    and ``probs`` / ``overlay`` when asked for."""
    out = options.out
    tiff = item.path.suffix.lower() in _TIFF
    paths = {"label": out / f"{item.name}_label.{'tif' if tiff else 'png'}"}
    if options.probabilities:
        paths["probs"] = out / f"{item.name}_probs.tif"
    if options.overlay:
        paths["overlay"] = out / f"{item.name}_overlay.png"
    return paths


def predict_one(predictor: Predictor, item: InputItem, options: PredictOptions
                ) -> dict[str, Any]:
    """Predict one input and write its outputs into ``options.out``; returns its summary row.

    The row: see :func:`summary_row`, plus ``_files``, the names of the files written.

    Raises:
        DataError: the image (or a band file) cannot be read or has the wrong band count.
    """
    image = read_input(item)
    if image.shape[2] != predictor.in_channels:
        raise DataError(f"has {image.shape[2]} bands but the model expects "
                        f"{predictor.in_channels}", file=item.path)
    geo = read_geo(item.path)
    labels, probs = predictor.predict(image, tile=options.tile, overlap=options.overlap,
                                      tta=options.tta, scale=options.scale,
                                      batch_size=options.batch_size)
    k = predictor.num_classes
    classes = predictor.classes
    paths = output_paths(item, options)
    warning = ""
    written: list[str] = []
    if geo.is_tiff:
        if geo.crs is None:
            warning = "GeoTIFF has no CRS: outputs written without georeferencing"
        label_path = write_geotiff(
            paths["label"], labels[None], crs=geo.crs, transform=geo.transform,
            descriptions=["class id"], colormap=class_colormap(k),
            tags={"classes": json.dumps(classes), "source": str(item.path)})
    else:
        label_path = write_png(paths["label"], labels)
    written.append(label_path.name)
    if options.probabilities:
        q = np.rint(np.clip(probs, 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
        p = write_geotiff(paths["probs"], q, crs=geo.crs, transform=geo.transform,
                          descriptions=classes, resampling="average",
                          tags={"classes": json.dumps(classes), "scale": f"1/{PROB_SCALE}",
                                "source": str(item.path)})
        written.append(p.name)
    if options.overlay:
        from raygym.data.preview import overlay

        written.append(write_png(paths["overlay"], overlay(image, labels, k)).name)
    row = summary_row(item, label_path.name, labels, classes, geo, warning)
    row["_files"] = written
    return row


def summary_row(item: InputItem, label_name: str, labels: np.ndarray, classes: Sequence[str],
                geo: GeoInfo, warning: str) -> dict[str, Any]:
    """One image's ``summary.csv`` row.

    Args:
        item: the input; label_name: its label file's name; warning: "" or one line.
        labels: ``(H, W)`` uint8 class ids; classes: the K class names.
        geo: the input's georeferencing (areas only for a projected CRS).

    Returns:
        ``image``, ``label``, ``height``, ``width`` (pixels), ``crs``, ``pixel_area_m2``,
        ``warning``, then per class ``<name>_pixels``, ``<name>_fraction`` and ``<name>_m2``
        (empty when not georeferenced in a projected CRS).
    """
    k = len(classes)
    counts = np.bincount(labels.ravel(), minlength=k)[:k]
    total = max(int(counts.sum()), 1)
    row: dict[str, Any] = {
        "image": str(item.path), "label": label_name,
        "height": int(labels.shape[0]), "width": int(labels.shape[1]),
        "crs": geo.crs.to_string() if geo.crs is not None else "",
        "pixel_area_m2": geo.pixel_area_m2 if geo.pixel_area_m2 is not None else "",
        "warning": warning,
    }
    for name, n in zip(classes, counts, strict=True):
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
