"""Nodata in training imagery: small synthetic float GeoTIFFs with NaN or a declared nodata
value. Nodata pixels are ignored by the loss (label 255), left out of the standardisation
statistics and 0 after it; a scene with no data at all is refused naming its file; the
prediction path (``read_image`` without ``nodata_to_nan``) reads pixels as stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rasterio.transform import Affine

from raygym.config import DataConfig
from raygym.data.batch import to_batch
from raygym.data.io import nodata_mask, read_header, read_image
from raygym.data.labels import IGNORE_INDEX
from raygym.data.prepare import check_headers
from raygym.data.scenes import process_scene, read_scene
from raygym.data.transforms import standardize
from raygym.errors import DataError

GEO = Affine(10.0, 0.0, 545000.0, 0.0, -10.0, 4180000.0)  # 10 m pixels, UTM 10N


def _tif(path: Path, bands: np.ndarray, nodata: float | None = None) -> Path:
    """A GeoTIFF (CRS + transform) of ``(H, W, C)`` ``bands``, with an optional nodata value."""
    import rasterio

    h, w, c = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c,
                       dtype=bands.dtype.name, crs="EPSG:32610", transform=GEO,
                       nodata=nodata) as dst:
        dst.write(np.moveaxis(bands, -1, 0))
    return path


def _reflectance(h: int = 32, w: int = 32, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.02, 0.6, size=(h, w, c)).astype(np.float32)


def _label(path: Path, h: int = 32, w: int = 32) -> Path:
    Image.fromarray((np.arange(h * w).reshape(h, w) % 4).astype(np.uint8)).save(path)
    return path


def _data(tmp_path: Path, **changes: Any) -> DataConfig:
    return DataConfig(images=tmp_path, labels=tmp_path, classes=["a", "b", "c", "d"],
                      target_size=(32, 32), **changes)


def _row(image: Path, label: Path, *extra: Path, split: str = "val") -> dict[str, Any]:
    bands = read_header(image).bands + len(extra)
    return {"key": image.stem, "images": [str(image), *map(str, extra)], "label": str(label),
            "split": split, "bands": bands}


# ------------------------------------------------------------------------------------ reading
def test_nodata_mask_follows_gdal_rule() -> None:
    bands = np.array([[[0, 0], [5, 0]], [[0, 7], [5, 0]], [[0, 0], [5, 0]]], np.uint8)
    # every band 0 -> nodata; one band 0 (dark water in red) keeps the pixel
    assert nodata_mask(bands, (0, 0, 0)).tolist() == [[True, False], [False, True]]
    assert not nodata_mask(bands, (None, None, None)).any()
    floats = np.ones((2, 2, 2), np.float32)
    floats[1, 0, 1] = np.nan
    assert nodata_mask(floats, (None, None)).tolist() == [[False, True], [False, False]]


def test_float_geotiff_nodata_and_nan_become_nan_for_training(tmp_path) -> None:
    bands = _reflectance()
    bands[:4] = -9999.0  # the declared nodata value, every band
    bands[10, 10, 1] = np.nan  # a NaN in one band only
    path = _tif(tmp_path / "scene.tif", bands, nodata=-9999.0)
    assert read_header(path).nodata
    out = read_image(path, nodata_to_nan=True)
    assert out.dtype == np.float32 and np.isnan(out[:4]).all() and np.isnan(out[10, 10]).all()
    assert np.isfinite(out[4:10]).all()
    raw = read_image(path)  # prediction's read: as stored
    assert (raw[:4] == -9999.0).all() and np.isnan(raw[10, 10, 1]) and not np.isnan(raw[10, 10, 0])


def test_integer_geotiff_with_nodata_is_stored_as_float(tmp_path) -> None:
    bands = np.full((32, 32, 3), 120, np.uint8)
    bands[:, :8] = 0
    path = _tif(tmp_path / "ortho.tif", bands, nodata=0)
    out = read_image(path, nodata_to_nan=True)
    assert out.dtype == np.float32 and np.isnan(out[:, :8]).all() and (out[:, 8:] == 120).all()
    label = _label(tmp_path / "ortho_label.png")
    assert check_headers([_Pair([path], label)])[:2] == (3, "float32")  # room for NaN


def test_geotiff_pixel_size_gives_the_ground_sample_distance_the_model_sees(tmp_path) -> None:
    """10 m pixels, 64 x 64 px scenes fitted into 32 x 32: the model sees 20 m pixels."""
    from raygym.data.dataset import gsd_summary

    path = _tif(tmp_path / "s.tif", _reflectance(64, 64))
    label = _label(tmp_path / "s_label.png", 64, 64)
    _, _, heads = check_headers([_Pair([path], label)])
    assert heads["s"].pixel_m == pytest.approx(10.0)
    assert (heads["s"].height, heads["s"].width) == (64, 64)
    assert gsd_summary(list(heads.values()), (32, 32), False) == {
        "median": 20.0, "min": 20.0, "max": 20.0}
    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(png)
    assert read_header(png).pixel_m is None  # no georeferencing: no ground distance
    assert gsd_summary([heads["s"], read_header(png)], (32, 32), False) is None


@pytest.mark.parametrize("fill, nodata", [(np.nan, None), (-9999.0, -9999.0)])
def test_all_nodata_image_is_refused_naming_the_file(tmp_path, fill, nodata) -> None:
    path = _tif(tmp_path / "empty.tif", np.full((16, 16, 2), fill, np.float32), nodata=nodata)
    with pytest.raises(DataError) as info:
        read_image(path, nodata_to_nan=True)
    assert info.value.file == str(path) and "every pixel is nodata" in str(info.value)
    assert "\n" not in str(info.value) and "fix" in str(info.value)


# ---------------------------------------------------------------------------- standardisation
def test_standardize_leaves_nodata_out_and_zero_fills_it() -> None:
    image = _reflectance(16, 16, 3)
    holed = image.copy()
    holed[:5] = np.nan
    out = standardize(holed)
    assert np.isfinite(out).all() and (out[:5] == 0).all()
    data = image[5:].astype(np.float64)
    expected = (data - data.mean()) / data.std()
    np.testing.assert_allclose(out[5:], expected, rtol=1e-5, atol=1e-5)
    # the statistics of the data pixels only: the result does not depend on the fill
    filled = image.copy()
    filled[:5] = 1e6
    assert not np.allclose(standardize(filled)[5:], out[5:])
    assert (standardize(np.full((4, 4, 2), np.nan, np.float32)) == 0).all()


def test_standardize_unchanged_without_nodata() -> None:
    image = (_reflectance(8, 8, 2) * 1000).astype(np.uint16)
    x = image.astype(np.float64)
    np.testing.assert_allclose(standardize(image), (x - x.mean()) / x.std(), rtol=1e-5)


# ---------------------------------------------------------------------------- prepared scenes
class _Pair:
    def __init__(self, images: list[Path], label: Path) -> None:
        self.images, self.label, self.key = images, label, images[0].stem


@pytest.mark.parametrize("split, copies", [("val", 0), ("train", 2)])
def test_prepared_scene_ignores_nodata_and_trains_finite(tmp_path, split, copies) -> None:
    bands = _reflectance()
    bands[:, :10] = -9999.0
    bands[20, 20, 0] = np.nan
    image = _tif(tmp_path / "s.tif", bands, nodata=-9999.0)
    label = _label(tmp_path / "s_label.png")
    data = _data(tmp_path, augment={"copies": copies, "rotation": 10, "hflip": True})
    rows, info = process_scene(_row(image, label, split=split), data, "float32")
    assert len(rows) == 1 + copies and not info["error"], info["error"]
    first = rows[0]
    assert (first["label"][:, :10] == IGNORE_INDEX).all() and first["label"][20, 20] == 255
    assert (first["label"][:, 10:][np.isfinite(first["image"][:, 10:]).all(axis=2)]
            != IGNORE_INDEX).all()
    assert first["counts"][4] == 32 * 10 + 1, "ignored pixels are counted as ignored"
    for row in rows:  # augmented copies too: every NaN pixel (spread by warping) is ignored
        nodata = ~np.isfinite(row["image"]).all(axis=2)
        assert nodata.any() and (row["label"][nodata] == IGNORE_INDEX).all()
    x, _ = to_batch(np.stack([r["image"] for r in rows]), np.stack([r["label"] for r in rows]),
                    np.stack([r["valid_hw"] for r in rows]))
    assert bool(x.isfinite().all())


def test_extra_band_nodata_joins_the_mask(tmp_path) -> None:
    image = _tif(tmp_path / "s.tif", _reflectance())
    nir = _reflectance(c=1)
    nir[:3] = np.nan
    band = _tif(tmp_path / "s_nir.tif", nir)
    label = _label(tmp_path / "s_label.png")
    img, lab, _ = read_scene(_row(image, label, band), _data(tmp_path), "float32")
    assert img.shape == (32, 32, 4) and (lab[:3] == IGNORE_INDEX).all()
    assert (lab[3:] != IGNORE_INDEX).all()


def test_scene_whose_bands_never_overlap_is_refused(tmp_path) -> None:
    rgb = _reflectance()
    rgb[:16] = np.nan
    nir = _reflectance(c=1)
    nir[16:] = np.nan
    image = _tif(tmp_path / "s.tif", rgb)
    row = _row(image, _label(tmp_path / "s_label.png"), _tif(tmp_path / "s_nir.tif", nir))
    with pytest.raises(DataError) as info:
        read_scene(row, _data(tmp_path), "float32")
    assert info.value.file == str(image) and "nodata" in str(info.value)
    # in the Ray task the refusal becomes the scene's one-line error, naming the file
    rows, info = process_scene(row, _data(tmp_path), "float32")
    assert not rows and str(image) in info["error"] and "nodata" in info["error"]
