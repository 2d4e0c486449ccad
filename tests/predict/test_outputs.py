"""``raygym.predict.outputs``: one image's label / probability rasters keep the input's
georeferencing and nodata, probabilities carry GDAL scale / offset, the QGIS style and the
overlay legend are written, and its ``summary.csv`` row counts pixels and areas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from . import (
    S2_CLASSES,
    UTM,
    aerial_crop,
    read_summary,
    run_cli,
    s2_stack,
    utm_transform,
    write_tiff,
)

AERIAL_CLASSES = ["deep_water", "shallow_water", "land"]


def test_geotiff_keeps_crs_transform_and_areas(s2_models: dict[str, Path], tmp_path: Path
                                               ) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from raygym.predict import PredictOptions, predict_files

    stack = s2_stack(0)
    transform = from_origin(545_000.0, 4_180_000.0, 10.0, 10.0)
    src = write_tiff(tmp_path / "scene.tif", stack, "EPSG:32610", transform)
    out = tmp_path / "out"
    result = predict_files(s2_models["artifact"], [src],
                           PredictOptions(out=out, probabilities=True))
    assert result.exit_code == 0 and not result.skipped and not result.warnings
    with rasterio.open(out / "scene_label.tif") as lab:
        assert lab.crs.to_epsg() == 32610
        assert lab.transform == transform
        assert (lab.height, lab.width) == stack.shape[:2]
        assert lab.profile["compress"].lower() == "deflate" and lab.profile["tiled"]
        labels = lab.read(1)
    assert labels.max() < 4
    with rasterio.open(out / "scene_probs.tif") as prob:
        assert prob.count == 4 and prob.transform == transform and prob.crs == lab.crs
        assert list(prob.descriptions) == S2_CLASSES
        assert prob.scales == (1 / 255,) * 4 and prob.offsets == (0.0,) * 4
        total = prob.read().astype(int).sum(axis=0)
    assert np.abs(total - 255).max() <= 2  # uint8-rounded probabilities sum to 1
    (row,) = read_summary(out / "summary.csv")
    assert float(row["pixel_area_m2"]) == 100.0
    for k, name in enumerate(S2_CLASSES):
        n = int((labels == k).sum())
        assert int(row[f"{name}_pixels"]) == n
        assert float(row[f"{name}_m2"]) == pytest.approx(n * 100.0)
    assert (out / "scene_overlay.png").is_file()


def test_geotiff_without_crs_is_written_without_and_warns(s2_models: dict[str, Path],
                                                           tmp_path: Path) -> None:
    import rasterio

    from raygym.predict import PredictOptions, predict_files

    src = write_tiff(tmp_path / "nocrs.tif", s2_stack(1), None, None)
    result = predict_files(s2_models["artifact"], [src], PredictOptions(out=tmp_path / "out"))
    assert result.exit_code == 0
    assert any("no CRS" in w and "nocrs.tif" in w for w in result.warnings)
    with rasterio.open(tmp_path / "out" / "nocrs_label.tif") as lab:
        assert lab.crs is None
    (row,) = read_summary(tmp_path / "out" / "summary.csv")
    assert row["pixel_area_m2"] == "" and row["water_m2"] == ""


def test_nodata_is_honoured_and_probabilities_carry_gdal_scale(aerial_model: Path,
                                                              tmp_path: Path) -> None:
    """A GeoTIFF with nodata 0 in a corner: no prediction there (label 255, the label's
    nodata; probabilities masked), left out of the counts; probabilities unscale to [0, 1]."""
    import rasterio

    from raygym.predict import PredictOptions, predict_files

    image = aerial_crop(150, 200).copy()
    image[:40, :60] = 0
    src = write_tiff(tmp_path / "nd.tif", image, UTM, utm_transform(), nodata=0)
    out = tmp_path / "out"
    result = predict_files(aerial_model, [src], PredictOptions(out=out, probabilities=True))
    assert result.exit_code == 0 and not result.skipped
    with rasterio.open(out / "nd_label.tif") as lab:
        assert lab.nodata == 255 and lab.crs.to_string() == UTM
        assert lab.transform == utm_transform()
        labels = lab.read(1)
        assert np.array_equal(lab.read_masks(1) == 0, labels == 255)
    assert (labels[:40, :60] == 255).all() and (np.delete(labels.ravel(), np.ravel_multi_index(
        np.nonzero(image.max(axis=2) == 0), labels.shape)) < 3).all()
    with rasterio.open(out / "nd_probs.tif") as prob:
        assert prob.scales == (1 / 255,) * 3 and prob.offsets == (0.0,) * 3
        assert "scale" not in prob.tags()  # the former private tag
        probs = prob.read().astype(np.float64) * np.array(prob.scales)[:, None, None]
        mask = prob.dataset_mask()
    assert (mask[:40, :60] == 0).all() and (mask[labels != 255] == 255).all()
    assert np.abs(probs[:, labels != 255].sum(axis=0) - 1.0).max() <= 3 / 255
    (row,) = read_summary(out / "summary.csv")
    assert int(row["nodata_pixels"]) == 40 * 60 == int((labels == 255).sum())
    assert sum(int(row[f"{c}_pixels"]) for c in AERIAL_CLASSES) == 150 * 200 - 40 * 60


def test_qml_and_overlay_legend_are_written(aerial_model: Path, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from PIL import Image

    from raygym.predict import PredictOptions, predict_files

    src = write_tiff(tmp_path / "s.tif", aerial_crop(60, 80), UTM, utm_transform())
    out = tmp_path / "out"
    result = predict_files(aerial_model, [src], PredictOptions(out=out))
    assert {f.name for f in result.files} == {"s_label.tif", "s_label.qml", "s_overlay.png"}
    entries = ET.parse(out / "s_label.qml").getroot().iter("paletteEntry")
    assert [e.get("label") for e in entries] == AERIAL_CLASSES
    shown = np.asarray(Image.open(out / "s_overlay.png"))
    assert shown.shape[0] > 60 and shown.shape[1] >= 80  # the legend below the image


def test_an_all_nodata_input_fails_with_one_line(aerial_model: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = write_tiff(tmp_path / "empty.tif", np.zeros((30, 40, 3), np.uint8), UTM,
                     utm_transform(), nodata=0)
    code = run_cli(["predict", str(aerial_model), str(src), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert code == 1 and "all images failed" in text
    # one reason line per failed image, its path whole on it (however long: a user copies it)
    assert f"  {src}: every pixel is nodata" in text.splitlines()[-1]
    assert not (tmp_path / "out" / "empty_label.tif").exists()
