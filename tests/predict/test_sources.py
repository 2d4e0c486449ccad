"""``raygym.predict.sources``: pixels by bands of rows from GeoTIFFs and memory, nodata from
the nodata value / alpha band / NaN / PNG alpha, and streamed statistics equal to the
whole-image ones. No model needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygym.errors import DataError

from . import UTM, aerial_crop, utm_transform, write_tiff


def _source_rows(path: Path, in_channels: int = 3, bands: tuple[Path, ...] = ()
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Every row of ``path`` (plus band files) as its source reads them: pixels, validity."""
    from raygym.predict import InputItem, open_source

    with open_source(InputItem(path, list(bands), path.stem), in_channels) as source:
        return source.read_rows(0, source.height)


def test_streamed_statistics_equal_the_whole_image(tmp_path: Path) -> None:
    from raygym.data.transforms import standardize
    from raygym.predict import InputItem, band_stats, open_source

    image = aerial_crop(300, 400)
    tif = write_tiff(tmp_path / "scene.tif", image, UTM, utm_transform(), tiled=True,
                     blockxsize=64, blockysize=64)
    with open_source(InputItem(tif, [], "scene"), 3) as source:
        assert not source.masked
        stats = band_stats(source, rows=7)  # 43 reads, the last one short
        pixels, valid = source.read_rows(0, 300)
    values = image.astype(np.float64)
    assert stats.mean == pytest.approx(values.mean(), rel=1e-12)
    assert stats.std == pytest.approx(values.std(), rel=1e-12)
    assert stats.valid_pixels == 300 * 400 and valid is None
    np.testing.assert_allclose(stats.standardize(pixels, valid), standardize(image), atol=1e-6)


def test_nodata_value_is_masked_and_left_out_of_the_statistics(tmp_path: Path) -> None:
    from raygym.predict import InputItem, band_stats, open_source

    image = aerial_crop(120, 90).copy()
    image[:30, :40] = 0  # a mosaic's empty corner
    image[50, 50, 0] = 0  # one dark band of a real pixel: still valid (GDAL's rule)
    tif = write_tiff(tmp_path / "nd.tif", image, UTM, utm_transform(), nodata=0)
    with open_source(InputItem(tif, [], "nd"), 3) as source:
        assert source.masked
        stats = band_stats(source, rows=16)
        _, valid = source.read_rows(0, 120)
    assert valid is not None and not valid[:30, :40].any() and valid[50, 50]
    assert valid.sum() == 120 * 90 - 30 * 40 == stats.valid_pixels
    kept = image[valid].astype(np.float64)
    assert stats.mean == pytest.approx(kept.mean(), rel=1e-12)
    assert stats.std == pytest.approx(kept.std(), rel=1e-12)


def test_alpha_band_and_nan_are_nodata(tmp_path: Path) -> None:
    image = aerial_crop(40, 50)
    alpha = np.full((40, 50, 1), 255, np.uint8)
    alpha[:10] = 0
    rgba = write_tiff(tmp_path / "rgba.tif", np.concatenate([image, alpha], axis=2), UTM,
                      utm_transform(), photometric="RGB", alpha="YES")
    pixels, valid = _source_rows(rgba)
    assert pixels.shape == (40, 50, 3)  # the alpha band is a mask, not data
    assert valid is not None and not valid[:10].any() and valid[10:].all()
    pixels, valid = _source_rows(rgba, in_channels=4)  # RGB + NIR (GDAL's default alpha)
    assert pixels.shape == (40, 50, 4) and valid is None  # NIR zeros are data, not nodata

    floats = image.astype(np.float32)
    floats[5:8, 5:9, 1] = np.nan
    pixels, valid = _source_rows(write_tiff(tmp_path / "nan.tif", floats, UTM, utm_transform()))
    assert pixels.dtype == np.float32
    assert valid is not None and (~valid).sum() == 12 and not valid[5:8, 5:9].any()

    png = tmp_path / "rgba.png"
    Image.fromarray(np.concatenate([image, alpha], axis=2)).save(png)
    pixels, valid = _source_rows(png)  # a 3-band model: the alpha is a mask
    assert pixels.shape == (40, 50, 3) and valid is not None and not valid[:10].any()
    pixels, valid = _source_rows(png, in_channels=4)  # a 4-band model: the alpha is data
    assert pixels.shape == (40, 50, 4) and valid is None


def test_all_nodata_is_refused_in_one_line(tmp_path: Path) -> None:
    from raygym.predict import InputItem, band_stats, open_source

    for name, hwc, nodata in [("zeros.tif", np.zeros((20, 30, 3), np.uint8), 0),
                              ("nan.tif", np.full((20, 30, 3), np.nan, np.float32), None)]:
        tif = write_tiff(tmp_path / name, hwc, UTM, utm_transform(), nodata=nodata)
        with open_source(InputItem(tif, [], "x"), 3) as source, \
                pytest.raises(DataError) as err:
            band_stats(source)
        assert "every pixel is nodata" in err.value.message
        assert "\n" not in err.value.message


def test_a_band_file_of_another_size_is_refused(tmp_path: Path) -> None:
    from raygym.predict import InputItem, open_source

    tif = write_tiff(tmp_path / "a.tif", aerial_crop(20, 30), UTM, utm_transform())
    nir = write_tiff(tmp_path / "a_nir.tif", np.zeros((20, 31, 1), np.uint8), UTM,
                     utm_transform())
    with pytest.raises(DataError, match="differs from its image"), \
            open_source(InputItem(tif, [nir], "a"), 4):
        pass
    nir = write_tiff(tmp_path / "a_nir.tif", np.full((20, 30, 1), 7, np.uint8), UTM,
                     utm_transform())
    pixels, _ = _source_rows(tif, 4, (nir,))
    assert pixels.shape == (20, 30, 4) and (pixels[..., 3] == 7).all()

