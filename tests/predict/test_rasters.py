"""``raygym.predict.rasters``: PNG and GeoTIFF writers (whole arrays and bands of rows), no
model needed."""

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


def test_block_writes_make_one_cog_with_scale_mask_and_overviews(tmp_path: Path) -> None:
    """Rows written in bands (as the windowed path does) give one tiled, deflate COG with
    overviews, GDAL scale / offset and the dataset mask, and no temp file."""
    import rasterio
    from rasterio.transform import from_origin

    from raygym.predict import GeoTiffWriter

    rng = np.random.default_rng(0)
    bands = rng.integers(0, 256, (2, 600, 300), dtype=np.uint8)
    valid = np.ones((600, 300), bool)
    valid[100:150, :40] = False
    transform = from_origin(545_000.0, 4_180_000.0, 1.0, 1.0)
    path = tmp_path / "p.tif"
    with GeoTiffWriter(path, count=2, height=600, width=300, crs="EPSG:32610",
                       transform=transform, descriptions=["a", "b"], scale=1 / 255,
                       mask=True, resampling="average") as dst:
        for row in (0, 256, 512):
            dst.write(row, bands[:, row:row + 256], valid[row:row + 256])
    with rasterio.open(path) as src:
        assert np.array_equal(src.read(), bands)
        assert np.array_equal(src.dataset_mask() > 0, valid)
        assert src.scales == (1 / 255,) * 2 and src.offsets == (0.0, 0.0)
        assert src.profile["tiled"] and src.profile["compress"].lower() == "deflate"
        assert src.overviews(1) and src.transform == transform
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert [p.name for p in tmp_path.iterdir()] == ["p.tif"]


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    import pytest

    from raygym.predict import GeoTiffWriter

    path = tmp_path / "x.tif"
    with pytest.raises(RuntimeError), GeoTiffWriter(path, count=1, height=64, width=64) as dst:
        dst.write(0, np.zeros((1, 32, 64), np.uint8))
        raise RuntimeError("prediction failed half-way")
    assert list(tmp_path.iterdir()) == []
