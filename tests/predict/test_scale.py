"""``--scale auto`` (the default): new images are resampled by the factor prepare resized the
training scenes by (the model card's ``dataset.train_scale``), so a model trained on shrunk
scenes sees new imagery at the ground sample distance it learnt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygym.errors import RaygymError

from . import AERIAL, aerial_crop, export_untrained, need, write_tiff

SHRUNK = {"median": 0.25, "min": 0.2, "max": 0.3}


def _config(root: Path) -> object:
    from raygym.config import validate_experiment

    aerial = need(AERIAL)
    return validate_experiment({
        "name": "aerial", "data": {
            "images": str(aerial / "images"), "labels": str(aerial / "labels"),
            "classes": ["deep_water", "shallow_water", "land"], "target_size": [64, 64],
            "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3},
    })


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained 64 x 64 models: trained (per their cards) on scenes shrunk by 0.25, by 0.5,
    and one whose card does not say (made before raygym recorded it)."""
    root = tmp_path_factory.mktemp("scale")
    config = _config(root)
    return {"shrunk": export_untrained(config, root / "shrunk", 3, seed=0, train_scale=SHRUNK),
            "half": export_untrained(config, root / "half", 3, seed=1,
                                     train_scale={"median": 0.5, "min": 0.5, "max": 0.5}),
            "unknown": export_untrained(config, root / "unknown", 3, seed=0)}


def test_auto_is_the_training_scale_and_a_number_is_kept(models: dict[str, Path]) -> None:
    from raygym.predict import Predictor

    shrunk = Predictor([models["shrunk"]], device="cpu")
    assert shrunk.resolve_scale("auto") == 0.25 and shrunk.resolve_scale(0.5) == 0.5
    line = shrunk.scale_line("auto")
    assert "scale 0.25 (auto)" in line and "0.2-0.3" in line and "--scale 1" in line
    assert shrunk.scale_line(1.0) == "scale 1 (--scale)"
    for bad in ("Auto", "native", 0, -1, float("inf")):  # one line, never a traceback
        with pytest.raises(RaygymError, match="'auto' or a number > 0"):
            shrunk.resolve_scale(bad)
    unknown = Predictor([models["unknown"]], device="cpu")
    assert unknown.resolve_scale("auto") == 1.0
    assert "does not say" in unknown.scale_line("auto")
    # an ensemble of models trained at different scales: no one factor suits both
    mixed = Predictor([models["shrunk"], models["half"]], device="cpu")
    with pytest.raises(RaygymError, match=r"shrunk 0.25, half 0.5") as info:
        mixed.resolve_scale("auto")
    assert info.value.key == "--scale"
    assert mixed.resolve_scale(0.5) == 0.5


def test_a_georeferenced_image_is_brought_to_the_ground_distance_the_model_learnt(
        tmp_path: Path) -> None:
    """A model that learnt 2 m pixels (1 m GeoTIFFs shrunk by 0.5): a 0.5 m GeoTIFF is
    resampled by 0.25, a 2 m one not at all, a PNG by the training factor."""
    import rasterio
    from rasterio.transform import from_origin

    from raygym.predict import PredictOptions, Predictor, predict_files

    model = export_untrained(_config(tmp_path), tmp_path / "m", 3, seed=0,
                             train_scale={"median": 0.5, "min": 0.5, "max": 0.5},
                             train_gsd_m={"median": 2.0, "min": 2.0, "max": 2.0})
    predictor = Predictor([model], device="cpu")
    assert predictor.scale_for("auto", 0.5) == 0.25 and predictor.scale_for("auto", 2.0) == 1
    assert predictor.scale_for("auto", None) == 0.5 and predictor.scale_for(1.0, 0.5) == 1.0
    assert "2 m pixels the model learnt" in predictor.scale_line("auto")
    image = aerial_crop(128, 160)
    (tmp_path / "in").mkdir()
    for name, pixel in (("fine", 0.5), ("coarse", 2.0)):
        write_tiff(tmp_path / "in" / f"{name}.tif", image, "EPSG:32610",
                   from_origin(500000, 4000000, pixel, pixel))
    Image.fromarray(image).save(tmp_path / "in" / "plain.png")
    result = predict_files(model, [tmp_path / "in"], PredictOptions(out=tmp_path / "out"))
    assert result.exit_code == 0 and len(result.rows) == 3
    for name, factor in (("fine", "0.25"), ("coarse", "1")):
        with rasterio.open(tmp_path / "out" / f"{name}_label.tif") as label:
            assert label.tags()["resample_factor"] == factor
            assert np.array_equal(label.read(1), predictor.predict(image, scale=float(factor))[0])


def test_predict_resamples_by_the_training_scale_by_default(models: dict[str, Path],
                                                            tmp_path: Path) -> None:
    import rasterio

    from raygym.predict import PredictOptions, Predictor, predict_files

    image = aerial_crop(240, 320)
    shrunk = Predictor([models["shrunk"]], device="cpu")
    auto, probs_auto = shrunk.predict(image)
    at_quarter, probs_quarter = shrunk.predict(image, scale=0.25)
    _, probs_native = shrunk.predict(image, scale=1.0)
    assert auto.shape == image.shape[:2]  # always on the input grid
    assert np.array_equal(probs_auto, probs_quarter) and np.array_equal(auto, at_quarter)
    assert not np.allclose(probs_auto, probs_native, atol=1e-3)

    # the command: the factor used is printed and written in the GeoTIFF
    src = write_tiff(tmp_path / "scene.tif", image, None, None)
    result = predict_files(models["shrunk"], [src], PredictOptions(out=tmp_path / "out"))
    assert result.exit_code == 0 and "scale 0.25 (auto)" in result.scale_line
    with rasterio.open(tmp_path / "out" / "scene_label.tif") as label:
        assert label.tags()["resample_factor"] == "0.25"
        assert np.array_equal(label.read(1), auto)
