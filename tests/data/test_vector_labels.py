"""``data.label_vector``: polygons drawn in a GIS (here a GeoPackage in WGS 84) burnt onto each
GeoTIFF scene's grid (UTM), class names or numbers, uncovered pixels ignored or background."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyogrio", reason="the vector extra (pyogrio) is not installed")
pytest.importorskip("shapely", reason="the vector extra (shapely) is not installed")

import rasterio  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

from raygym.config import validate_experiment  # noqa: E402
from raygym.data.labels import IGNORE_INDEX  # noqa: E402
from raygym.data.vector_labels import burn_labels  # noqa: E402
from raygym.errors import DataError  # noqa: E402

UTM = "EPSG:32610"
X0, Y0, PX = 500_000.0, 4_100_000.0, 10.0  # top-left corner and pixel size (m)


def _scene(path: Path, x0: float = X0, h: int = 40, w: int = 60) -> Path:
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8",
                       crs=UTM, transform=from_origin(x0, Y0, PX, PX)) as dst:
        dst.write(rng.integers(0, 255, (3, h, w), dtype=np.uint8))
    return path


def _box(col0: int, row0: int, col1: int, row1: int) -> dict[str, Any]:
    """A UTM polygon over the pixels ``[row0, row1) x [col0, col1)`` of the first scene."""
    x_a, x_b = X0 + col0 * PX, X0 + col1 * PX
    y_a, y_b = Y0 - row0 * PX, Y0 - row1 * PX
    return {"type": "Polygon",
            "coordinates": [[(x_a, y_a), (x_b, y_a), (x_b, y_b), (x_a, y_b), (x_a, y_a)]]}


def _layer(path: Path, features: list[tuple[dict[str, Any], Any]]) -> Path:
    """A GeoPackage in WGS 84 (another CRS than the scenes) with a ``class`` column."""
    import pyogrio.raw
    import shapely
    from rasterio.warp import transform_geom

    geoms = [shapely.geometry.shape(transform_geom(UTM, "EPSG:4326", g)) for g, _ in features]
    values = np.array([v for _, v in features], dtype=object if isinstance(
        features[0][1], str) else np.int64)
    pyogrio.raw.write(str(path), np.array(shapely.to_wkb(geoms), dtype=object), [values],
                      fields=["class"], geometry_type="Polygon", crs="EPSG:4326",
                      driver="GPKG")
    return path


def _data(tmp_path: Path, **vector: Any) -> Any:
    return validate_experiment({
        "data": {"images": str(tmp_path / "images"), "classes": ["water", "sand", "dune"],
                 "label_vector": {"file": str(tmp_path / "labels.gpkg"), "column": "class",
                                  **vector}, "target_size": [32, 32],
                 "prepared": str(tmp_path / "ds")}}).data


def test_polygons_are_burnt_onto_the_scene_grid(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    scene = _scene(tmp_path / "images" / "a.tif")
    _layer(tmp_path / "labels.gpkg", [(_box(0, 0, 30, 40), "water"), (_box(40, 10, 50, 20), "sand"),
                                      (_box(45, 10, 55, 20), "dune")])
    label, changed = burn_labels(_data(tmp_path), scene)
    assert label.shape == (40, 60) and label.dtype == np.uint8 and changed == {}
    assert (label[:, :30] == 0).all()
    assert (label[10:20, 40:45] == 1).all() and (label[10:20, 45:55] == 2).all(), (
        "a later feature is drawn over an earlier one")
    covered = np.zeros((40, 60), bool)
    covered[:, :30] = covered[10:20, 40:55] = True
    assert (label[~covered] == IGNORE_INDEX).all(), "no polygon: ignored"
    background, _ = burn_labels(_data(tmp_path, background="dune"), scene)
    assert (background[~covered] == 2).all() and (background[:, :30] == 0).all()
    # a chip's window (how chips of a large GeoTIFF are labelled): the same pixels
    for y, x, h, w in ((5, 25, 20, 30), (0, 0, 40, 60), (30, 50, 10, 10)):
        part, _ = burn_labels(_data(tmp_path), scene, (y, x, h, w))
        np.testing.assert_array_equal(part, label[y:y + h, x:x + w])


def test_numbered_classes_go_through_remap(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    scene = _scene(tmp_path / "images" / "a.tif")
    _layer(tmp_path / "labels.gpkg", [(_box(0, 0, 30, 40), 11), (_box(30, 0, 60, 40), 7)])
    data = _data(tmp_path)
    with pytest.raises(DataError, match="outside the 3 classes"):
        burn_labels(data, scene)
    label, _ = burn_labels(data.model_copy(update={"remap": {11: 0, 7: 2}}), scene)
    assert (label[:, :30] == 0).all() and (label[:, 30:] == 2).all()
    ignored, changed = burn_labels(data.model_copy(update={"remap": {11: 0},
                                                           "unknown_labels": "ignore"}), scene)
    assert (ignored[:, 30:] == IGNORE_INDEX).all() and changed == {"7": 40 * 30}


def test_a_relative_layer_path_is_made_absolute(tmp_path: Path, monkeypatch: Any) -> None:
    """Trials run in other folders: the layer's path is resolved where raygym runs."""
    from raygym.search.space_config import load_experiment

    (tmp_path / "exp.yaml").write_text(
        "data: {images: images, classes: [water, sand],\n"
        "       label_vector: {file: labels.gpkg, column: class}}\n")
    monkeypatch.chdir(tmp_path)
    config, _ = load_experiment(Path("exp.yaml"))
    assert config.data.label_vector is not None
    assert config.data.label_vector.file == tmp_path / "labels.gpkg"


def test_bad_vector_labels_are_named(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    scene = _scene(tmp_path / "images" / "a.tif")
    _layer(tmp_path / "labels.gpkg", [(_box(0, 0, 30, 40), "lagoon")])
    with pytest.raises(DataError, match=r"class names not in data.classes: \['lagoon'\]"):
        burn_labels(_data(tmp_path), scene)
    with pytest.raises(DataError, match="no column 'kind'") as info:
        burn_labels(_data(tmp_path, column="kind"), scene)
    assert info.value.key == "data.label_vector.column"
    with pytest.raises(Exception, match="not one of data.classes"):
        _data(tmp_path, background="reef")
    from raygym.data.vector_labels import _class_ids

    for mixed in ([0, 1.5], [0, "water"]):  # a fraction, or names beside numbers
        with pytest.raises(DataError, match="names or whole numbers, not both"):
            _class_ids(mixed, _data(tmp_path))


def test_prepare_with_vector_labels(tmp_path: Path, ray_session: None) -> None:
    """Three scenes side by side, one layer over all: each scene gets its own part."""
    from raygym.data.dataset import PreparedDataset
    from raygym.data.prepare import prepare_dataset

    (tmp_path / "images").mkdir()
    for i in range(3):  # scene i lies 60 px (600 m) east of scene i - 1
        _scene(tmp_path / "images" / f"s{i}.tif", x0=X0 + i * 60 * PX)
    # water west of x = 90 px (in scene 1), sand east of it
    _layer(tmp_path / "labels.gpkg", [(_box(0, 0, 90, 40), "water"),
                                      (_box(90, 0, 180, 40), "sand")])
    data = _data(tmp_path)
    config = validate_experiment({"data": {**data.model_dump(mode="json"),
                                           "target_size": [64, 64],
                                           "split": {"val": 0.34, "test": 0.0}}})
    result = prepare_dataset(config, log=lambda *a, **k: None)
    ds = PreparedDataset(result.path)
    labels = {}
    for split in ("train", "val"):
        arrays = ds.load_numpy(split)
        labels.update({k: arrays.labels[i, :40, :60] for i, k in enumerate(arrays.keys)})
    assert (labels["s0"] == 0).all() and (labels["s2"] == 1).all()
    assert (labels["s1"][:, :30] == 0).all() and (labels["s1"][:, 30:] == 1).all()
