"""``raygym.predict.polygons``: class regions as a GeoPackage whose areas add up to the class
pixel areas, small regions dropped by ``min_area``, and ``--polygons`` end to end. Skipped
when pyogrio (the ``vector`` extra) is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from . import UTM, aerial_crop, read_summary, utm_transform, write_tiff

pyogrio = pytest.importorskip("pyogrio", reason="the vector extra (pyogrio) is not installed")

CLASSES = ["water", "sand", "land"]


def _labels() -> np.ndarray:
    """``(40, 60)`` labels: three classes, a hole, single-pixel islands and a nodata block."""
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 2
    labels[10:20, 5:15] = 1  # a sand patch inside water
    labels[14:16, 9:11] = 0  # with a water hole
    labels[30, 40] = labels[35, 50] = 1  # two one-pixel sand islands on land
    labels[:5, 50:] = 255  # nodata
    return labels


def _read(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], object]:
    meta, _, geometry, fields = pyogrio.raw.read(path)
    return geometry, dict(zip(meta["fields"], fields, strict=True)), meta["crs"]


def _shoelace(wkb: bytes) -> float:
    """Area of an ISO WKB polygon (exterior minus holes)."""
    import struct

    (rings,) = struct.unpack_from("<I", wkb, 5)
    offset, area = 9, 0.0
    for i in range(rings):
        (n,) = struct.unpack_from("<I", wkb, offset)
        xy = np.frombuffer(wkb, "<f8", n * 2, offset + 4).reshape(n, 2)
        offset += 4 + n * 16
        a = abs(0.5 * (np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1])))
        area += a if i == 0 else -a
    return area


def test_polygon_areas_add_up_to_the_class_pixel_areas(tmp_path: Path) -> None:
    from raygym.predict.polygons import write_polygons

    labels = _labels()
    path = write_polygons(tmp_path / "a_polygons.gpkg", labels, transform=utm_transform(2.0),
                          crs=_crs(), classes=CLASSES, pixel_area_m2=4.0)
    geometry, fields, crs = _read(path)
    assert "32610" in str(crs)
    assert list(fields["class_name"]) == [CLASSES[i] for i in fields["class_id"]]
    for k in range(3):
        mine = fields["class_id"] == k
        pixels = int((labels == k).sum())
        assert fields["pixels"][mine].sum() == pixels
        assert fields["area_m2"][mine].sum() == pytest.approx(pixels * 4.0)
        assert sum(_shoelace(g) for g in geometry[mine]) == pytest.approx(pixels * 4.0)
    assert 255 not in fields["class_id"]
    assert [p.name for p in tmp_path.iterdir()] == ["a_polygons.gpkg"]  # no temp file left


def test_min_area_drops_small_polygons(tmp_path: Path) -> None:
    from raygym.predict.polygons import write_polygons

    path = write_polygons(tmp_path / "b.gpkg", _labels(), transform=utm_transform(2.0),
                          crs=_crs(), classes=CLASSES, pixel_area_m2=4.0, min_area=8.0)
    _, fields, _ = _read(path)
    assert fields["area_m2"].min() >= 8.0 and 1 not in fields["pixels"]
    # not projected: no area_m2, min_area counts pixels
    path = write_polygons(tmp_path / "c.gpkg", _labels(), transform=None, crs=None,
                          classes=CLASSES, pixel_area_m2=None, min_area=5)
    _, fields, crs = _read(path)
    assert crs is None and np.isnan(fields["area_m2"]).all() and fields["pixels"].min() >= 5


def test_predict_writes_polygons(aerial_model: Path, tmp_path: Path) -> None:
    from raygym.predict import PredictOptions, predict_files

    src = write_tiff(tmp_path / "s.tif", aerial_crop(60, 80), UTM, utm_transform())
    out = tmp_path / "out"
    result = predict_files(aerial_model, [src], PredictOptions(out=out, polygons=True,
                                                               overlay=False))
    assert "s_polygons.gpkg" in {f.name for f in result.files}
    _, fields, _ = _read(out / "s_polygons.gpkg")
    (row,) = read_summary(out / "summary.csv")
    names = ["deep_water", "shallow_water", "land"]
    for k, name in enumerate(names):
        assert fields["area_m2"][fields["class_id"] == k].sum() == pytest.approx(
            float(row[f"{name}_m2"]))


def _crs() -> object:
    from rasterio.crs import CRS

    return CRS.from_string(UTM)
