"""``data.label_raster``: one classified raster covering the site (here a map at 5 m or 2 m,
in the scenes' CRS or another) read within each GeoTIFF scene's bounds onto its 10 m grid;
class numbers through ``remap``; pixels it does not cover, or holds nodata at, ignored or
``background``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from raygym.config import validate_experiment
from raygym.data.labels import IGNORE_INDEX
from raygym.data.scenes import read_scene_label
from raygym.errors import ConfigError, DataError

UTM = "EPSG:32610"
X0, Y0, PX = 500_000.0, 4_100_000.0, 10.0  # the first scene's top-left corner, pixel size (m)
H, W = 40, 60  # a scene's pixels


def _scene(path: Path, x0: float = X0, crs: str | None = UTM) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=3, dtype="uint8",
                       crs=crs, transform=from_origin(x0, Y0, PX, PX)) as dst:
        dst.write(rng.integers(0, 255, (3, H, W), dtype=np.uint8))
    return path


def _map(path: Path, values: np.ndarray, x0: float, y0: float, px: float, crs: str = UTM,
         nodata: float | None = None) -> Path:
    """A one-band class map whose top-left corner is ``(x0, y0)`` with ``px`` m pixels."""
    with rasterio.open(path, "w", driver="GTiff", height=values.shape[0],
                       width=values.shape[1], count=1, dtype=values.dtype.name, crs=crs,
                       transform=from_origin(x0, y0, px, px), nodata=nodata) as dst:
        dst.write(values, 1)
    return path


def _site_map(path: Path, **kw: Any) -> Path:
    """5 m pixels from 100 m west of the first scene to 900 m east of its corner (so a second
    scene 600 m east is half covered), 10 west of x = X0 + 300 m, 20 east of it, and 0
    (nodata) in the first scene's top 10 rows."""
    cols = (1000 // 5)
    values = np.full((H * 2, cols), 20, np.uint8)
    values[:, : (100 + 300) // 5] = 10
    values[: 10 * 2, :] = 0
    return _map(path, values, X0 - 100, Y0, 5.0, nodata=0, **kw)


def _data(tmp_path: Path, **raster: Any) -> Any:
    return validate_experiment({
        "data": {"images": str(tmp_path / "images"), "classes": ["water", "sand", "dune"],
                 "remap": {10: 0, 20: 1},
                 "label_raster": {"file": str(tmp_path / "map.tif"), **raster},
                 "target_size": [32, 32], "prepared": str(tmp_path / "ds")}}).data


def test_the_map_is_read_onto_each_scene_grid(tmp_path: Path) -> None:
    first = _scene(tmp_path / "images" / "a.tif")
    second = _scene(tmp_path / "images" / "b.tif", x0=X0 + W * PX)
    _site_map(tmp_path / "map.tif")
    data = _data(tmp_path)
    label, changed = read_scene_label(data.label_raster.file, data, image=first)
    assert label.shape == (H, W) and label.dtype == np.uint8 and changed == {}
    assert (label[:10] == IGNORE_INDEX).all(), "the map's nodata: ignored"
    assert (label[10:, :30] == 0).all() and (label[10:, 30:] == 1).all()
    # the second scene: covered up to 900 m east of the first's corner (its column 30)
    label, _ = read_scene_label(data.label_raster.file, data, image=second)
    assert (label[10:, :30] == 1).all() and (label[:, 30:] == IGNORE_INDEX).all()
    background, _ = read_scene_label(data.label_raster.file,
                                     _data(tmp_path, background="dune"), image=second)
    assert (background[:, 30:] == 2).all() and (background[:10] == 2).all()
    # a chip (a window of the scene) reads what the whole scene reads there
    window = (5, 20, 16, 24)  # (row, col, height, width)
    part, _ = read_scene_label(data.label_raster.file, data, image=first, window=window)
    whole, _ = read_scene_label(data.label_raster.file, data, image=first)
    assert np.array_equal(part, whole[5:21, 20:44])


def test_a_map_in_another_crs_without_nodata(tmp_path: Path) -> None:
    """The same classes in WGS 84 (no nodata value): reprojected onto the UTM scene; the
    pixels it does not reach are told by the warper's alpha band."""
    from rasterio.warp import transform_bounds

    scene = _scene(tmp_path / "images" / "a.tif")
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", X0 - 100, Y0 - H * PX,
                                                X0 + 300, Y0 + 100)  # the west half only
    deg = (east - west) / 400  # ~0.25 m at this latitude: a map finer than the scene
    values = np.full((int((north - south) / deg), 400), 10, np.uint8)
    _map(tmp_path / "map.tif", values, west, north, deg, crs="EPSG:4326")
    for resampling in ("nearest", "mode"):
        data = _data(tmp_path, resampling=resampling)
        label, _ = read_scene_label(data.label_raster.file, data, image=scene)
        assert (label[:, :28] == 0).all(), resampling
        assert (label[:, 32:] == IGNORE_INDEX).all(), resampling


def test_mode_takes_the_most_common_class_under_a_scene_pixel(tmp_path: Path) -> None:
    """A 2 m map where 3 in 5 columns of every 10 m pixel are sand: mode gives sand, nearest
    the class under each pixel's centre (water, the middle column)."""
    scene = _scene(tmp_path / "images" / "a.tif")
    values = np.full((H * 5, W * 5), 20, np.uint8)
    values[:, 2::5] = 10  # the middle column of each scene pixel: water
    _map(tmp_path / "map.tif", values, X0, Y0, 2.0)
    nearest, _ = read_scene_label(tmp_path / "map.tif", _data(tmp_path), image=scene)
    mode, _ = read_scene_label(tmp_path / "map.tif", _data(tmp_path, resampling="mode"),
                               image=scene)
    assert (nearest == 0).all() and (mode == 1).all()


def test_bad_maps_are_named(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "images" / "a.tif")
    values = np.full((H, W), 10, np.uint8)
    values[:, :5] = 30  # not in remap
    _map(tmp_path / "map.tif", values, X0, Y0, PX)
    data = _data(tmp_path)
    with pytest.raises(DataError, match=r"outside the 3 classes: 30 \(200 px\)") as info:
        read_scene_label(data.label_raster.file, data, image=scene)
    assert str(tmp_path / "map.tif") in str(info.value)
    ignored = data.model_copy(update={"unknown_labels": "ignore"})
    label, changed = read_scene_label(data.label_raster.file, ignored, image=scene)
    assert (label[:, :5] == IGNORE_INDEX).all() and changed == {"30": 200}

    from raygym.data.raster_labels import check_raster

    fractions = np.full((H, W), 10.5, np.float32)
    _map(tmp_path / "map.tif", fractions, X0, Y0, PX)
    with pytest.raises(DataError, match=r"whole numbers 0-65535, not \[10.5"):
        read_scene_label(data.label_raster.file, data, image=scene)
    with pytest.raises(DataError, match="has 1 band"):
        check_raster(_data(tmp_path, band=2).label_raster)
    with pytest.raises(DataError, match="file not found"):
        check_raster(_data(tmp_path, file=str(tmp_path / "none.tif")).label_raster)
    plain = _scene(tmp_path / "plain" / "p.tif", crs=None)
    with pytest.raises(DataError, match="has no CRS") as info:
        read_scene_label(data.label_raster.file, _data(tmp_path), image=plain)
    assert info.value.key == "data.label_raster"


@pytest.mark.parametrize(("extra", "said"), [
    ({"labels": "labels"}, "give no labels folder"),
    ({"label_vector": {"file": "l.gpkg", "column": "c"}}, "both label every scene"),
    ({"label_raster": {"file": "map.tif", "background": "reef"}}, "not one of data.classes")])
def test_label_raster_settings_that_do_not_fit(extra: dict[str, Any], said: str,
                                               tmp_path: Path) -> None:
    data = {"images": "images", "classes": ["water", "sand"],
            "label_raster": {"file": "map.tif"}, **extra}
    with pytest.raises(ConfigError, match=said):
        validate_experiment({"data": data})


def test_prepare_with_a_label_raster(tmp_path: Path, ray_session: None) -> None:
    """Three scenes, one map over two (half of the second outside it, the third wholly):
    each scene gets its part, the pixels the map does not cover are ignored, and the scene
    with none labelled is named."""
    from raygym.data.dataset import PreparedDataset
    from raygym.data.prepare import prepare_dataset

    _scene(tmp_path / "images" / "a.tif")
    _scene(tmp_path / "images" / "b.tif", x0=X0 + W * PX)
    _scene(tmp_path / "images" / "c.tif", x0=X0 + 2 * W * PX)
    _site_map(tmp_path / "map.tif")
    data = _data(tmp_path)
    config = validate_experiment({"data": {**data.model_dump(mode="json"),
                                           "target_size": [64, 64],
                                           "split": {"val": 0.34, "test": 0.0}}})
    said: list[str] = []
    result = prepare_dataset(config, log=lambda *a, **k: said.append(" ".join(map(str, a))))
    assert any("1 scene(s) hold no labelled pixel (outside data.label_raster" in line
               and line.endswith(": c") for line in said), said
    ds = PreparedDataset(result.path)
    labels = {}
    for split in ("train", "val"):
        arrays = ds.load_numpy(split)
        labels.update({k: arrays.labels[i, :H, :W] for i, k in enumerate(arrays.keys)})
    assert (labels["a"][10:, :30] == 0).all() and (labels["a"][10:, 30:] == 1).all()
    assert (labels["b"][10:, :30] == 1).all() and (labels["b"][:, 30:] == IGNORE_INDEX).all()
    assert (labels["c"] == IGNORE_INDEX).all()
    files = {Path(f["path"]).name for s in result.card.sources for f in s["files"]}
    assert "map.tif" in files  # the map's checksum is the dataset's provenance
