"""``raygym.predict.command``: unreadable images are skipped and listed; the command fails
only when every image failed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raygym.errors import DataError, RaygymError

from . import S2, need, read_summary, s2_scene, string_console


def test_unreadable_files_are_skipped_and_listed(s2_models: dict[str, Path], tmp_path: Path
                                                 ) -> None:
    from raygym.predict import PredictOptions, predict_and_print

    images = tmp_path / "img"
    images.mkdir()
    for n in range(2):
        shutil.copy(s2_scene(n)[0], images)
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    bands = [need(S2) / "nir"]
    console = string_console()
    code = predict_and_print(s2_models["artifact"], [images],
                             PredictOptions(out=tmp_path / "out", extra_bands=bands),
                             console=console)
    text = console.file.getvalue()
    assert code == 0
    assert "skipped 1 files" in text and "broken.jpg" in text
    assert len(read_summary(tmp_path / "out" / "summary.csv")) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    for n in range(2):  # named as S2's images, so that each finds its band file
        (bad / s2_scene(n)[0].name).write_bytes(b"garbage")
    console = string_console()
    code = predict_and_print(s2_models["artifact"], [bad],
                             PredictOptions(out=tmp_path / "out2", extra_bands=bands),
                             console=console)
    assert code == 1
    assert "all images failed" in console.file.getvalue()
    assert not (tmp_path / "out2").exists()  # the empty --out it created is removed again


def test_an_interrupted_prediction_leaves_no_empty_out_it_created(
        s2_models: dict[str, Path], tmp_path: Path) -> None:
    """Ctrl-C before the first map is written removes the --out (and parents) the run
    created; after one map, the folder and that map are kept; a folder the user made stays."""
    import pytest

    from raygym.predict import PredictOptions, predict_files

    images = tmp_path / "img"
    images.mkdir()
    for n in range(2):
        shutil.copy(s2_scene(n)[0], images)
    bands = [need(S2) / "nir"]

    def stop_at(k: int):
        def progress(n: int, total: int, name: str) -> None:
            if n == k:
                raise KeyboardInterrupt
        return progress

    out = tmp_path / "new" / "maps"
    with pytest.raises(KeyboardInterrupt):
        predict_files(s2_models["artifact"], [images],
                      PredictOptions(out=out, extra_bands=bands), progress=stop_at(0))
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt):
        predict_files(s2_models["artifact"], [images],
                      PredictOptions(out=out, extra_bands=bands), progress=stop_at(1))
    assert any(out.glob("*_label.png"))
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(KeyboardInterrupt):
        predict_files(s2_models["artifact"], [images],
                      PredictOptions(out=mine, extra_bands=bands), progress=stop_at(0))
    assert mine.is_dir()


def test_predict_reads_the_bands_the_model_names(tmp_path: Path) -> None:
    """A model of image bands 3, 2, 1 of a 5-band stack maps the stack as another maps the
    3-band file of those bands, and ``--image-bands`` reads a stack ordered otherwise."""
    import numpy as np
    import rasterio
    from rasterio.transform import Affine

    from raygym.config import validate_experiment
    from raygym.predict import PredictOptions, predict_and_print

    from . import export_untrained

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, size=(5, 48, 64)).astype(np.uint8)
    geo = {"driver": "GTiff", "height": 48, "width": 64, "crs": "EPSG:32610",
           "transform": Affine(10, 0, 500000, 0, -10, 4200000)}
    files = {"stack": stack, "rgb": stack[[2, 1, 0]], "reordered": stack[[4, 3, 0, 1, 2]]}
    for name, bands in files.items():
        (tmp_path / name).mkdir()
        with rasterio.open(tmp_path / name / "s.tif", "w", count=len(bands), dtype="uint8",
                           **geo) as dst:
            dst.write(bands)
    config = validate_experiment({"name": "m", "data": {
        "images": str(tmp_path), "labels": str(tmp_path), "classes": ["a", "b", "c"],
        "target_size": [32, 32], "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    picked = export_untrained(config, tmp_path / "picked", 3, seed=0, image_bands=[3, 2, 1])
    plain = export_untrained(config, tmp_path / "plain", 3, seed=0)
    runs = {"stack": (picked, {}), "rgb": (plain, {}),
            "reordered": (picked, {"image_bands": [5, 4, 3]})}
    labels = {}
    for name, (model, extra) in runs.items():
        console = string_console()
        code = predict_and_print(model, [tmp_path / name / "s.tif"],
                                 PredictOptions(out=tmp_path / f"out_{name}", scale=1, **extra),
                                 console=console)
        assert code == 0, name
        said = {"stack": "bands 3, 2, 1 of each image file (the model's data.image_bands",
                "reordered": "bands 5, 4, 3 of each image file (--image-bands)"}.get(name)
        assert said in console.file.getvalue() if said else "of each image file" not in \
            console.file.getvalue()
        with rasterio.open(tmp_path / f"out_{name}" / "s_label.tif") as src:
            labels[name] = src.read(1)
    assert len(np.unique(labels["rgb"])) > 1  # a map, not one class everywhere
    np.testing.assert_array_equal(labels["stack"], labels["rgb"])
    np.testing.assert_array_equal(labels["reordered"], labels["rgb"])
    with pytest.raises(DataError, match=r"s\.tif: has 3 bands but data\.image_bands \[5, 4, 3\] "
                       "reads band 5"):
        predict_and_print(picked, [tmp_path / "rgb" / "s.tif"],
                          PredictOptions(out=tmp_path / "out_short", scale=1,
                                         image_bands=[5, 4, 3]), console=string_console())
    with pytest.raises(RaygymError, match="--image-bands"):
        predict_and_print(picked, [tmp_path / "rgb" / "s.tif"],
                          PredictOptions(out=tmp_path / "out_twice", image_bands=[1, 1, 2]),
                          console=string_console())
