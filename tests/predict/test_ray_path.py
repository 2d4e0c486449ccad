"""``raygym.predict.ray_path``: the Ray Data batch job writes what the plain path writes, and
the plain path never imports Ray."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from . import S2, need, s2_scene


@pytest.mark.slow
def test_ray_path_equals_plain_path(s2_models: dict[str, Path], tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    from raygym.predict import PredictOptions, predict_files

    request.getfixturevalue("ray_session")  # the session's local Ray (tests/conftest.py)
    images = tmp_path / "img"
    images.mkdir()
    for n in range(4):
        shutil.copy(s2_scene(n)[0], images)
    bands = [need(S2) / "nir"]
    plain = predict_files(s2_models["artifact"], [images],
                          PredictOptions(out=tmp_path / "plain", extra_bands=bands, tta=True,
                                         probabilities=True))
    ray_run = predict_files(s2_models["artifact"], [images],
                            PredictOptions(out=tmp_path / "ray", extra_bands=bands, tta=True,
                                           probabilities=True, use_ray=True))
    assert len(plain.rows) == len(ray_run.rows) == 4
    assert (tmp_path / "plain" / "summary.csv").read_text() == (
        tmp_path / "ray" / "summary.csv").read_text()
    import rasterio

    for png in sorted((tmp_path / "plain").glob("*_label.png")):
        a = np.asarray(Image.open(png))
        b = np.asarray(Image.open(tmp_path / "ray" / png.name))
        assert np.array_equal(a, b)
        name = png.name.replace("_label.png", "_probs.tif")
        with rasterio.open(tmp_path / "plain" / name) as pa, \
                rasterio.open(tmp_path / "ray" / name) as pb:
            # 1 vs 2 torch threads may round a probability to the neighbouring uint8 level
            assert np.abs(pa.read().astype(int) - pb.read().astype(int)).max() <= 1


def test_predict_needs_no_ray(s2_models: dict[str, Path], tmp_path: Path) -> None:
    image, nir = s2_scene(0)
    code = (
        "import sys; from pathlib import Path\n"
        "from raygym.predict import PredictOptions, predict_files\n"
        f"options = PredictOptions(out=Path({str(tmp_path / 'o')!r}), "
        f"extra_bands=[Path({str(nir.parent)!r})])\n"
        f"r = predict_files(Path({str(s2_models['artifact'])!r}), [Path({str(image)!r})], "
        "options)\n"
        "assert len(r.rows) == 1, r.skipped\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
