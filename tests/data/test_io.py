"""Reading imagery and labels: PNG, JPEG, (Geo)TIFF; every failure names the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from rasterio.transform import Affine

from raygym.data.io import (
    is_image,
    read_geo_profile,
    read_header,
    read_image,
    read_label,
    read_single_band,
    sha256_file,
)
from raygym.errors import DataError

GEO = Affine(10.0, 0.0, 545000.0, 0.0, -10.0, 4180000.0)


def _ramp(h: int, w: int, c: int, top: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, top, size=(h, w, c), endpoint=True)


def test_png_8bit_rgb_and_grey(tmp_path) -> None:
    rgb = _ramp(20, 30, 3, 255).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0], mode="L").save(tmp_path / "grey.png")
    out = read_image(tmp_path / "rgb.png")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (20, 30, 1)
    np.testing.assert_array_equal(grey[..., 0], rgb[..., 0])
    head = read_header(tmp_path / "rgb.png")
    assert (head.height, head.width, head.bands, head.dtype) == (20, 30, 3, "uint8")


def test_png_16bit_grey(tmp_path) -> None:
    data = _ramp(20, 30, 1, 65535).astype(np.uint16)[..., 0]
    Image.fromarray(data).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert out.shape == (20, 30, 1) and out.dtype == np.uint16
    np.testing.assert_array_equal(out[..., 0], data)
    assert read_header(tmp_path / "g16.png").dtype == "uint16"


@pytest.mark.parametrize("channels", [3, 4])
def test_png_16bit_colour_keeps_all_bits(tmp_path, channels) -> None:
    # Pillow alone opens 48/64-bit PNGs as 8-bit RGB(A)
    data = _ramp(20, 30, channels, 65535).astype(np.uint16)
    bgr = data[..., [2, 1, 0, 3][:channels]]
    assert cv2.imwrite(str(tmp_path / "c16.png"), bgr)
    out = read_image(tmp_path / "c16.png")
    assert out.dtype == np.uint16 and out.shape == (20, 30, channels)
    np.testing.assert_array_equal(out, data)
    head = read_header(tmp_path / "c16.png")
    assert (head.bands, head.dtype) == (channels, "uint16")


def test_jpeg(s2_data) -> None:
    path = next((s2_data / "images").glob("*.jpg"))
    out = read_image(path)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    head = read_header(path)
    assert (head.height, head.width, head.bands) == (out.shape[0], out.shape[1], 3)
    with Image.open(path) as im:
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))


def test_geotiff_uint16(tmp_path) -> None:
    import rasterio

    data = _ramp(24, 40, 3, 4095).astype(np.uint16)  # a 12-bit sensor in a uint16 container
    path = tmp_path / "scene.tif"
    transform = GEO  # 10 m pixels, UTM 10N
    with rasterio.open(path, "w", driver="GTiff", height=24, width=40, count=3, dtype="uint16",
                       crs="EPSG:32610", transform=transform) as dst:
        dst.write(np.moveaxis(data, -1, 0))
    out = read_image(path)
    assert out.shape == (24, 40, 3) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, data)
    head = read_header(path)
    assert (head.height, head.width, head.bands, head.dtype) == (24, 40, 3, "uint16")
    geo = read_geo_profile(path)
    assert geo is not None and geo["crs"].to_epsg() == 32610
    assert geo["pixel_area"] == pytest.approx(100.0)
    assert read_geo_profile(tmp_path / "x.png") is None


def test_a_label_georeferenced_off_its_image_is_refused(tmp_path) -> None:
    """Same size, other ground: a label half a pixel east of its image, in another pixel
    size or another CRS is refused naming the label and how far off it lies; the same grid,
    or a plain PNG label, passes."""
    import rasterio

    from raygym.data.pairing import Pair
    from raygym.data.prepare import check_headers

    def tif(name: str, transform: Affine = GEO, crs: str = "EPSG:32610") -> Path:
        with rasterio.open(tmp_path / name, "w", driver="GTiff", height=8, width=8, count=1,
                           dtype="uint8", crs=crs, transform=transform) as dst:
            dst.write(np.zeros((1, 8, 8), np.uint8))
        return tmp_path / name

    image = tif("scene.tif")
    png = tmp_path / "png_label.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    for label in (tif("same.tif"), tif("near.tif", GEO * Affine.translation(0.001, 0)), png):
        assert check_headers([Pair("scene", (image,), label)])[0] == 1
    refused = {
        "east.tif": (GEO * Affine.translation(0.5, 0), "EPSG:32610",
                     "top-left corner (545005.000, 4180000.000) is not its image's "
                     "(545000.000, 4180000.000): +0.50, +0.00 pixels off"),
        "coarse.tif": (GEO * Affine.scale(2), "EPSG:32610",
                       "pixel size (20, -20) is not its image's (10, -10)"),
        "zone11.tif": (GEO, "EPSG:32611", "CRS (EPSG:32611) is not its image's (EPSG:32610)"),
    }
    for name, (transform, crs, says) in refused.items():
        label = tif(name, transform, crs)
        with pytest.raises(DataError, match=r"georeferenced off its image scene\.tif") as err:
            check_headers([Pair("scene", (image,), label)])
        assert err.value.file == str(label) and says in err.value.message
        assert "gdalwarp" in (err.value.fix or "")
        assert "as data.label_raster" in (err.value.fix or "")  # a label: read onto the grid
    # an extra band on another grid: no label_raster to offer
    with pytest.raises(DataError, match="georeferenced off") as err:
        check_headers([Pair("scene", (image, tif("band.tif", GEO * Affine.scale(2))), png)])
    assert "label_raster" not in (err.value.fix or "")


def test_signed_tiff_is_not_wrapped(tmp_path) -> None:
    import rasterio

    data = np.array([[-5, 0], [300, 32000]], dtype=np.int16)[:, :, None]
    path = tmp_path / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", height=2, width=2, count=1, dtype="int16",
                       crs="EPSG:32610", transform=GEO) as dst:
        dst.write(np.moveaxis(data, -1, 0))
    out = read_image(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data.astype(np.float32))
    # non-negative ints (e.g. class ids in an int32 label) stay integers
    label = np.array([[0, 1], [2, 3]], dtype=np.int32)
    lpath = tmp_path / "label.tif"
    with rasterio.open(lpath, "w", driver="GTiff", height=2, width=2, count=1, dtype="int32",
                       crs="EPSG:32610", transform=GEO) as dst:
        dst.write(label[None])
    out_label = read_label(lpath)
    assert np.issubdtype(out_label.dtype, np.integer)
    np.testing.assert_array_equal(out_label, label)


def test_truncated_jpeg_names_the_file(tmp_path, s2_data) -> None:
    src = next((s2_data / "images").glob("*.jpg"))
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataError) as info:
        read_image(bad)
    assert info.value.file == str(bad)
    assert "truncated" in info.value.message


def test_garbage_file_names_the_file(tmp_path) -> None:
    bad = tmp_path / "noise.png"
    bad.write_bytes(b"not an image at all")
    for reader in (read_image, read_header):
        with pytest.raises(DataError) as info:
            reader(bad)
        assert info.value.file == str(bad)
    tif = tmp_path / "noise.tif"
    tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError) as info:
        read_image(tif)
    assert info.value.file == str(tif)


def test_label_grey_and_grey_as_rgb(tmp_path) -> None:
    label = np.array([[0, 1, 2], [3, 1, 0]], dtype=np.uint8)
    Image.fromarray(label, mode="L").save(tmp_path / "l.png")
    Image.fromarray(np.repeat(label[..., None], 3, axis=2), mode="RGB").save(tmp_path / "l3.png")
    for name in ("l.png", "l3.png"):
        out = read_label(tmp_path / name)
        assert out.shape == (2, 3)
        np.testing.assert_array_equal(out, label)


def test_colour_label_without_palette(tmp_path) -> None:
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[:2] = (255, 0, 0)
    colour[2:] = (0, 0, 255)
    path = tmp_path / "colour.png"
    Image.fromarray(colour, mode="RGB").save(path)
    with pytest.raises(DataError) as info:
        read_label(path)
    assert info.value.file == str(path)
    assert "no data.palette" in info.value.message and "palette" in (info.value.fix or "")
    # with a palette configured the colours come back
    np.testing.assert_array_equal(read_label(path, colour=True), colour)


def test_palette_needs_colour_labels(tmp_path) -> None:
    path = tmp_path / "grey.png"
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(path)
    with pytest.raises(DataError, match="greyscale"):
        read_label(path, colour=True)


def test_single_band(tmp_path, s2_data) -> None:
    nir = next((s2_data / "nir").glob("*.jpg"))
    assert read_single_band(nir).shape[2] == 1
    rgb = next((s2_data / "images").glob("*.jpg"))
    with pytest.raises(DataError) as info:
        read_single_band(rgb)
    assert info.value.file == str(rgb) and "one band" in info.value.message


def test_palette_png_is_expanded(tmp_path) -> None:
    im = Image.new("P", (5, 4))
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (4, 5, 3)
    assert tuple(out[1, 1]) == (10, 200, 30) and tuple(out[0, 0]) == (0, 0, 0)


def test_is_image() -> None:
    assert is_image(Path("a.JPG")) and is_image(Path("b.tiff")) and is_image(Path("c.png"))
    assert not is_image(Path("a.txt")) and not is_image(Path(".a.png"))


@pytest.mark.parametrize(("mode", "suffix", "bands"), [
    ("P", ".png", 3), ("LA", ".png", 1), ("CMYK", ".jpg", 3),
    ("1", ".png", 1), ("RGBA", ".png", 4), ("P", ".tif", 1), ("CMYK", ".tif", 4)])
def test_the_header_promises_the_bands_the_decoded_array_has(tmp_path: Path, mode: str,
                                                              suffix: str, bands: int) -> None:
    rgb = Image.fromarray(_ramp(12, 10, 3, 255).astype(np.uint8))
    path = tmp_path / f"img{suffix}"
    rgb.convert(mode).save(path)
    assert Image.open(path).mode == mode
    arr = read_image(path)
    assert read_header(path).bands == arr.shape[2] == bands
    assert arr.dtype == np.uint8


def test_palette_png_decodes_to_its_colours_and_grey_alpha_to_grey(tmp_path: Path) -> None:
    rgb = Image.fromarray(_ramp(12, 10, 3, 255).astype(np.uint8))
    pal = rgb.convert("P")
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    la = rgb.convert("LA")
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[..., 0],
                                  np.asarray(la.convert("L")))
    bilevel = rgb.convert("1")
    bilevel.save(tmp_path / "b.png")
    assert set(np.unique(read_image(tmp_path / "b.png"))) <= {0, 255}


def test_sha256_file_hashes_every_chunk(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(3 * 2**20 + 17)  # three full 1 MiB chunks and a tail
    path = tmp_path / "scene.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # the last byte alone differs
    assert sha256_file(path) != hashlib.sha256(data).hexdigest()


def _vrt_of(bands: list[Path], out: Path) -> Path:
    """A VRT stacking single-band GeoTIFFs as ``gdalbuildvrt -separate`` does (relative
    paths, read in place)."""
    import rasterio

    with rasterio.open(bands[0]) as src:
        h, w, crs, t = src.height, src.width, src.crs, src.transform
    sources = "".join(
        f'<VRTRasterBand dataType="UInt16" band="{i}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{b.name}</SourceFilename><SourceBand>1</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/></SimpleSource></VRTRasterBand>'
        for i, b in enumerate(bands, start=1))
    out.write_text(f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{crs.to_wkt()}</SRS>'
                   f"<GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>"
                   f"{sources}</VRTDataset>")
    return out


def test_vrt_and_jpeg2000_read_as_the_geotiff(tmp_path) -> None:
    """A VRT band stack and a lossless JPEG 2000 are rasters read by windows, with their
    georeferencing, as the GeoTIFF they hold; GDAL's .aux.xml sidecars are not images."""
    import rasterio
    import rasterio.shutil

    from raygym.data.io import is_raster
    from raygym.predict.inputs import collect_inputs

    data = _ramp(3, 40, 24, 4095).astype(np.uint16)  # (bands, H, W)
    profile = {"driver": "GTiff", "height": 40, "width": 24, "dtype": "uint16",
               "crs": "EPSG:32610", "transform": GEO}
    singles = []
    for b in range(3):
        singles.append(tmp_path / f"B{b + 1}.tif")
        with rasterio.open(singles[-1], "w", count=1, **profile) as dst:
            dst.write(data[b:b + 1])
    stack = tmp_path / "stack.tif"
    with rasterio.open(stack, "w", count=3, **profile) as dst:
        dst.write(data)
    vrt = _vrt_of(singles[::-1], tmp_path / "reversed.vrt")
    jp2 = tmp_path / "stack.jp2"
    rasterio.shutil.copy(stack, jp2, driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    whole = read_image(stack)
    for path, bands in ((vrt, [3, 2, 1]), (jp2, None)):
        assert is_raster(path)
        np.testing.assert_array_equal(read_image(path, bands=bands), whole)
        np.testing.assert_array_equal(read_image(path, bands=bands, window=(5, 3, 10, 8)),
                                      whole[5:15, 3:11])
        head = read_header(path)
        assert (head.height, head.width, head.bands, head.pixel_m) == (40, 24, 3, 10.0)
    (tmp_path / "stack.jp2.aux.xml").write_text("<PAMDataset/>")
    items, _ = collect_inputs([tmp_path], [])
    assert sorted(i.path.name for i in items) == ["B1.tif", "B2.tif", "B3.tif",
                                                  "reversed.vrt", "stack.jp2", "stack.tif"]
