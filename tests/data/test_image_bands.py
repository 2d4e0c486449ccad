"""``data.image_bands``: the bands of a multi-band image file a model reads (e.g. 4, 3, 2, 8
of a Sentinel-2 stack), at prepare and again, from the model card, at predict; a band the
file lacks is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasterio.transform import Affine

from raygym.config import DataConfig
from raygym.data.dataset import PreparedDataset
from raygym.data.io import read_image
from raygym.data.prepare import data_fingerprint, prepare_dataset
from raygym.errors import ConfigError, DataError
from raygym.predict.inputs import InputItem, check_band_counts
from raygym.predict.sources import open_source
from raygym.search.space_config import load_experiment

GEO = Affine(10.0, 0.0, 545000.0, 0.0, -10.0, 4180000.0)
PICKED = [3, 2, 1, 4]  # R, G, B, NIR of a B, G, R, NIR, SWIR, junk stack


def _write(path: Path, bands: np.ndarray, nodata: float | None = None) -> Path:
    """``(C, H, W)`` uint16 as a GeoTIFF."""
    import rasterio

    c, h, w = bands.shape
    with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=c, dtype="uint16",
                       crs="EPSG:32610", transform=GEO, nodata=nodata) as dst:
        dst.write(bands)
    return path


def _scenes(root: Path, n: int = 6) -> None:
    """``n`` 6-band stacks (``stacks/``), the same scenes as 4-band files holding bands
    3, 2, 1, 4 (``picked/``), and labels (``masks/``)."""
    rng = np.random.default_rng(0)
    for sub in ("stacks", "picked", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stack = rng.integers(0, 4000, size=(6, 40, 56)).astype(np.uint16)
        _write(root / "stacks" / f"s{i}.tif", stack)
        _write(root / "picked" / f"s{i}.tif", stack[[b - 1 for b in PICKED]])
        label = (stack[0] // 1000).clip(0, 1).astype(np.uint16)[None]
        _write(root / "masks" / f"s{i}.tif", label)


def test_a_tiff_reads_the_named_bands_in_their_order(tmp_path: Path) -> None:
    stack = np.arange(6 * 8 * 10, dtype=np.uint16).reshape(6, 8, 10)
    stack[:, 0, 0] = 0  # nodata in every band: nodata
    stack[3, 1, 1] = 0  # in one band only: data
    path = _write(tmp_path / "stack.tif", stack, nodata=0)
    out = read_image(path, bands=PICKED, nodata_to_nan=True)
    assert out.shape == (8, 10, 4)
    np.testing.assert_array_equal(out[1:, 1:], np.moveaxis(stack[[2, 1, 0, 3]], 0, -1)[1:, 1:])
    assert np.isnan(out[0, 0]).all() and not np.isnan(out[1, 1]).any()
    part = read_image(path, bands=[6, 1], window=(2, 3, 4, 5))
    np.testing.assert_array_equal(part, np.moveaxis(stack[[5, 0], 2:6, 3:8], 0, -1))


def test_a_band_the_file_lacks_is_named(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png)
    np.testing.assert_array_equal(read_image(png, bands=[2]).shape, (8, 8, 1))
    for path in (png, _write(tmp_path / "rgb.tif", np.zeros((3, 8, 8), np.uint16))):
        with pytest.raises(DataError) as err:
            read_image(path, bands=[1, 4])
        text = str(err.value)
        assert str(path) in text and "has 3 bands but data.image_bands [1, 4] reads band 4" \
            in text and "name only bands 1-3" in text


@pytest.mark.parametrize(("bands", "said"), [([0, 1], "numbered from 1"),
                                              ([1, 2, 1], "band 1 is named twice"),
                                              ([], "at least 1")])
def test_band_numbers_are_checked_at_load(tmp_path: Path, write_config: Any,
                                          bands: list[int], said: str) -> None:
    path = write_config(tmp_path / "exp.yaml", data={
        "images": "i", "labels": "l", "classes": ["a", "b"], "image_bands": bands})
    with pytest.raises(ConfigError, match=said) as err:
        load_experiment(path)
    assert "data.image_bands" in str(err.value)


def test_unset_keeps_the_fingerprint_of_existing_datasets() -> None:
    plain = DataConfig(images=Path("/data/i"), labels=Path("/data/l"), classes=["a", "b"])
    # what the same settings hashed to before image_bands existed (commit bf26623)
    assert data_fingerprint(plain) == "d76b8e52b95b1ee7"
    picked = plain.model_copy(update={"image_bands": PICKED})
    assert data_fingerprint(picked) != data_fingerprint(plain), "other bands, a new dataset"


def test_prepare_and_predict_read_the_named_bands(tmp_path: Path, write_config: Any,
                                                  ray_session: None) -> None:
    _scenes(tmp_path)
    prepared = {}
    for name, folder, extra in (("stacks", "stacks", {"image_bands": PICKED}),
                                ("picked", "picked", {})):
        path = write_config(tmp_path / f"{name}.yaml", name=name, data={
            "images": str(tmp_path / folder), "labels": str(tmp_path / "masks"),
            "classes": ["a", "b"], "target_size": [32, 48],
            "split": {"val": 0.2, "test": 0.2}, "prepared": str(tmp_path / f"ds_{name}"),
            **extra})
        config, _ = load_experiment(path)
        prepared[name] = PreparedDataset(prepare_dataset(config, log=lambda *a, **k: None).path)
    stacks, picked = prepared["stacks"], prepared["picked"]
    assert stacks.card.bands == 4
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(stacks.load_numpy(split).images,
                                      picked.load_numpy(split).images)
    recorded = stacks.card.model_dataset(stacks.path)
    assert recorded["image_bands"] == PICKED
    assert "image_bands" not in picked.card.model_dataset(picked.path)

    # predict reads a stack as prepare did: by windows (TIFF) and whole alike
    item = InputItem(tmp_path / "stacks" / "s0.tif", [], "s0", tuple(PICKED))
    assert InputItem.from_json(item.to_json()) == item
    with open_source(item, 4) as source:
        rows, _ = source.read_rows(0, 40)
    with open_source(InputItem(tmp_path / "picked" / "s0.tif", [], "s0"), 4) as source:
        np.testing.assert_array_equal(rows, source.read_rows(0, 40)[0])
    ok, skipped = check_band_counts([item], 4)
    assert ok == [item] and not skipped
    too_far = InputItem(item.path, [], "s0", (1, 2, 3, 7))
    with pytest.raises(DataError, match="has 6 bands but data.image_bands"):
        check_band_counts([too_far], 4)
