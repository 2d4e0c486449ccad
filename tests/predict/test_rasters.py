"""``raygym.predict.rasters``: PNG and GeoTIFF writers, no model needed (32 x 48 rasters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def test_png_round_trips(tmp_path: Path) -> None:
    from raygym.predict import write_png

    labels = np.arange(32 * 48, dtype=np.uint8).reshape(32, 48) % 4
    path = write_png(tmp_path / "a_label.png", labels)
    assert np.array_equal(np.asarray(Image.open(path)), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["a_label.png"]  # no temp file left


def test_geotiff_has_colour_table_descriptions_and_tags(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from raygym.predict.rasters import class_colormap, write_geotiff

    labels = (np.arange(32 * 48, dtype=np.uint8).reshape(1, 32, 48) % 3)
    transform = from_origin(545_000.0, 4_180_000.0, 10.0, 10.0)
    colours = class_colormap(3)
    path = write_geotiff(tmp_path / "a_label.tif", labels, crs="EPSG:32610",
                         transform=transform, descriptions=["class id"], colormap=colours,
                         tags={"classes": '["a", "b", "c"]'})
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 32610 and src.transform == transform
        assert np.array_equal(src.read(), labels)
        assert list(src.descriptions) == ["class id"]
        assert src.tags()["classes"] == '["a", "b", "c"]'
        table = src.colormap(1)
    assert all(table[i] == colours[i] for i in range(3))
    assert [p.name for p in tmp_path.iterdir()] == ["a_label.tif"]  # no temp file left
