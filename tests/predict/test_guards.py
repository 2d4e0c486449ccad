"""``raygym.predict.guards``: outputs never replace inputs, existing outputs only with
``overwrite``, ``--out`` must be a folder, an image too large for memory is refused (a GeoTIFF
at scale 1 only by its width), and ``--polygons`` needs pyogrio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygym.errors import DataError, RaygymError
from raygym.predict.guards import (
    check_memory,
    check_out_is_a_folder,
    check_overwrites,
    planned_bytes,
    planned_strip_bytes,
)
from raygym.predict.inputs import InputItem
from raygym.predict.options import PredictOptions


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> InputItem:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)
    return InputItem(path=path, bands=[], name=path.stem)


def test_existing_outputs_need_overwrite(tmp_path: Path) -> None:
    item = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    check_overwrites([item], PredictOptions(out=out))  # nothing there yet
    out.mkdir()
    (out / "a_overlay.png").write_bytes(b"old")
    with pytest.raises(RaygymError, match=r"overwrite 1 existing.*a_overlay.png.*--overwrite"):
        check_overwrites([item], PredictOptions(out=out))
    check_overwrites([item], PredictOptions(out=out, overwrite=True))
    assert (out / "a_overlay.png").read_bytes() == b"old"


def test_an_output_never_replaces_an_input(tmp_path: Path) -> None:
    item = _image(tmp_path / "a_label.png")  # named like the output of an image 'a'
    renamed = InputItem(path=item.path, bands=[], name="a")
    with pytest.raises(RaygymError, match="overwrite this input"):
        check_overwrites([renamed], PredictOptions(out=tmp_path, overwrite=True))


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    check_out_is_a_folder(tmp_path / "new")
    (tmp_path / "f").write_text("x")
    with pytest.raises(RaygymError, match="existing file"):
        check_out_is_a_folder(tmp_path / "f")


def test_an_image_too_large_for_memory_is_refused(tmp_path: Path) -> None:
    item = _image(tmp_path / "a.png", (400, 300))
    need = planned_bytes(300, 400, 3, 4, 1.0)
    check_memory([item], 4, PredictOptions(out=tmp_path, scale=1.0), available=need * 2)
    with pytest.raises(DataError, match=r"400 x 300 px.*GiB.*GeoTIFF"):
        check_memory([item], 4, PredictOptions(out=tmp_path, scale=1.0), available=need)
    # a 50,000 px square 3-band scene at --scale 2 would need far more than 24 GiB
    assert planned_bytes(50_000, 50_000, 3, 4, 2.0) > 100 * 2**30


def test_a_large_geotiff_is_limited_by_its_width_only(tmp_path: Path) -> None:
    """60,000 x 60,000 px (a sparse file: only the header is read): read by windows, it fits
    in a few GiB at scale 1 and at a model's training scale; only a window as wide as memory
    is refused."""
    import rasterio

    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", height=60_000, width=60_000, count=3,
                       dtype="uint8", tiled=True, compress="deflate", sparse_ok=True):
        pass
    item = InputItem(path=path, bands=[], name="big")
    strip = planned_strip_bytes(60_000, 3, 4, 256)
    assert strip < 4 * 2**30 < planned_bytes(60_000, 60_000, 3, 4, 1.0) / 10
    for scale in (1.0, 0.5, 0.14):
        assert planned_strip_bytes(60_000, 3, 4, 256, scale) < 8 * 2**30, scale
        check_memory([item], 4, PredictOptions(out=tmp_path, scale=scale),
                     available=16 * 2**30, tile_rows=256)
    with pytest.raises(DataError, match=r"60000 x 60000 px at scale 0.14.*gdal_retile"):
        check_memory([item], 4, PredictOptions(out=tmp_path, scale=0.14),
                     available=1 * 2**30, tile_rows=256)


def test_polygons_need_pyogrio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from raygym.predict.guards import check_vector_writer

    check_vector_writer(PredictOptions(out=tmp_path))  # not asked for: nothing to check
    monkeypatch.setitem(sys.modules, "pyogrio", None)  # as if not installed
    with pytest.raises(RaygymError, match=r"pyogrio.*raygym\[vector\]") as err:
        check_vector_writer(PredictOptions(out=tmp_path, polygons=True))
    assert err.value.key == "--polygons"
