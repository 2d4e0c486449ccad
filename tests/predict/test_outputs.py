"""``raygym.predict.outputs``: one image's label / probability rasters keep the input's
georeferencing, and its ``summary.csv`` row counts pixels and areas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from . import S2_CLASSES, read_summary, s2_stack, write_tiff


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
