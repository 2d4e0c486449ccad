"""Labels drawn as polygons in a GIS: a GeoPackage / shapefile / GeoJSON layer whose features
carry a class attribute (``data.label_vector``), burnt onto each scene's pixel grid as prepare
reads the scene, so no label raster has to be made by hand.

- The class attribute holds class names (text, as in ``data.classes``) or raw integer values
  (mapped by ``data.remap`` as a label raster's are).
- A pixel takes the class of the last feature (in file order) whose polygon covers its centre
  (GDAL's rasterize); pixels no feature covers are ignored by losses and metrics, or take
  ``background``'s class.
- The layer may be in another CRS than the scenes: each scene's features are read within its
  bounds and reprojected to its CRS.

Reading needs the optional ``vector`` extra (pyogrio for GDAL's formats, shapely for the
geometries): ``pip install 'raygym[vector]'``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from raygym.config import IGNORE_INDEX, DataConfig, VectorLabels
from raygym.data.io import Window
from raygym.data.raster_labels import no_crs
from raygym.errors import DataError, RaygymError

KEY = "data.label_vector"


def check_layer(spec: VectorLabels) -> Any:
    """The layer's CRS, once the reader is installed and the layer holds ``spec.column`` and
    a CRS (prepare checks this before any scene is read).

    Raises:
        RaygymError: pyogrio or shapely missing (the ``vector`` extra).
        DataError: a file, layer or column that is not there, or a layer without a CRS.
    """
    try:
        import pyogrio
        import shapely  # noqa: F401
    except ImportError:
        raise RaygymError("vector labels need pyogrio and shapely, which are not installed",
                          key=KEY, fix="pip install 'raygym[vector]'") from None
    from rasterio.crs import CRS

    if not spec.file.exists():
        raise DataError("file not found", file=spec.file, key=f"{KEY}.file")
    try:
        info = pyogrio.read_info(str(spec.file), layer=spec.layer)
    except Exception as err:  # noqa: BLE001 - GDAL's own message names what is wrong
        raise DataError(f"cannot read the layer: {err}", file=spec.file, key=f"{KEY}.layer",
                        fix="give a GeoPackage / shapefile / GeoJSON and an existing layer"
                        ) from None
    fields = [str(f) for f in info["fields"]]
    if spec.column not in fields:
        raise DataError(f"the layer has no column '{spec.column}' (it has {fields})",
                        file=spec.file, key=f"{KEY}.column",
                        fix="name the column that holds each feature's class")
    if not info.get("crs"):
        raise DataError("the layer has no CRS", file=spec.file, key=KEY,
                        fix="assign the layer its CRS in your GIS and save it again")
    return CRS.from_user_input(info["crs"])


def burn_labels(data: DataConfig, image: Path, window: Window | None = None
                ) -> tuple[np.ndarray, dict[str, int]]:
    """The ``(H, W)`` uint8 class ids of ``image``'s pixel grid (or of its ``window``) from
    ``data.label_vector``'s features, and what ``data.unknown_labels`` changed (value ->
    pixels).

    Raises:
        DataError: an image without a CRS, a layer or column that is not there, or class
            values that are not classes (with ``unknown_labels: error``).
    """
    import rasterio
    import rasterio.features

    spec = data.label_vector
    assert spec is not None
    with rasterio.open(image) as src:
        if src.crs is None:
            raise no_crs(image, KEY)
        hw, transform, crs, bounds = (src.height, src.width), src.transform, src.crs, src.bounds
        if window is not None:
            from rasterio.windows import Window as RioWindow
            from rasterio.windows import bounds as window_bounds

            part = RioWindow(window[1], window[0], window[3], window[2])
            hw, transform = (window[2], window[3]), src.window_transform(part)
            bounds = window_bounds(part, src.transform)
    geoms, values = _features(spec, crs, bounds)
    fill = IGNORE_INDEX if spec.background is None else data.classes.index(spec.background)
    if not geoms:
        return np.full(hw, fill, np.uint8), {}
    ids, unknown = _class_ids(values, data)
    index = rasterio.features.rasterize(
        ((g, i) for i, g in enumerate(geoms)), out_shape=hw, transform=transform, fill=-1,
        dtype="int32")
    lookup = np.append(ids, fill).astype(np.uint8)  # index -1 (no feature) -> the fill
    label = lookup[index]
    changed = {}
    if unknown:
        counts = np.bincount(index[index >= 0], minlength=len(geoms))
        for i, value in unknown.items():
            changed[str(value)] = changed.get(str(value), 0) + int(counts[i])
        changed = {v: n for v, n in changed.items() if n}
    return label, changed


@functools.lru_cache(maxsize=8)
def _layer_crs(file: Path, layer: str | None, column: str) -> Any:
    """:func:`check_layer` once per process and layer (burning runs per scene, and per row of
    chips of a large one); a failure is not cached."""
    return check_layer(VectorLabels(file=file, layer=layer, column=column))


def _features(spec: VectorLabels, crs: Any, bounds: Any) -> tuple[list[Any], list[Any]]:
    """Geometries (in ``crs``) and class values of the features within ``bounds``."""
    import pyogrio.raw
    import shapely
    from rasterio.warp import transform_bounds, transform_geom

    layer_crs = _layer_crs(spec.file, spec.layer, spec.column)
    box = transform_bounds(crs, layer_crs, *bounds) if layer_crs != crs else tuple(bounds)
    _, _, wkb, field_data = pyogrio.raw.read(str(spec.file), layer=spec.layer,
                                             columns=[spec.column], bbox=box)
    geoms, values = [], []
    for g, value in zip(shapely.from_wkb(wkb), field_data[0], strict=True):
        if g is None or g.is_empty or value is None or value != value:  # null, NaN
            continue
        geoms.append(g if layer_crs == crs else
                     transform_geom(layer_crs, crs, shapely.geometry.mapping(g)))
        values.append(value)
    return geoms, values


def _class_ids(values: list[Any], data: DataConfig) -> tuple[np.ndarray, dict[int, Any]]:
    """``(class id per feature, {feature index: value} of those the unknown rule changed)``:
    names looked up in ``data.classes``, integers through ``data.remap`` as a raster's."""
    from raygym.data.labels import LabelValueError, apply_remap

    spec = data.label_vector
    assert spec is not None
    k = len(data.classes)
    rule = data.unknown_labels
    if all(isinstance(v, str) for v in values):  # names: clip has no order, so it ignores
        ids = np.array([data.classes.index(v) if v in data.classes else -1 for v in values])
        bad = sorted({v for v, i in zip(values, ids, strict=True) if i < 0})
        if bad and rule == "error":
            raise DataError(f"class names not in data.classes: {bad[:6]}", file=spec.file,
                            key=f"{KEY}.column", fix="rename them in the layer, add them to "
                            "data.classes, or set data.unknown_labels: ignore")
        unknown = {i: v for i, v in enumerate(values) if ids[i] < 0}
        return np.where(ids < 0, IGNORE_INDEX, ids), unknown
    odd = next((v for v in values if isinstance(v, str) or not float(v).is_integer()), None)
    if odd is not None:
        raise DataError(f"class values must be class names or whole numbers, not both, and "
                        f"not {odd!r}", file=spec.file, key=f"{KEY}.column",
                        fix="one class name or class number per feature")
    raw = np.array([[int(v) for v in values]])
    try:
        mapped, changed = apply_remap(raw, data.remap, k, rule)
    except LabelValueError as err:
        raise DataError(f"class values outside the {k} classes: {list(err.values)[:6]}",
                        file=spec.file, key=f"{KEY}.column", fix="map them in data.remap, or "
                        "set data.unknown_labels: ignore | clip") from None
    unknown = {i: int(v) for i, v in enumerate(raw[0]) if int(v) in changed}
    return mapped[0], unknown
