"""Tests of raygym.data.transforms (resize + pad, standardisation): real arrays, each
assertion can fail."""

from __future__ import annotations

import numpy as np

from raygym.config import DataConfig
from raygym.data.labels import IGNORE_INDEX
from raygym.data.summary import padding_line
from raygym.data.transforms import (
    crop_valid,
    padding_share,
    resize_pad,
    standardize,
    target_size_like,
)

# ---------------------------------------------------------------- resize / pad


def test_resize_pad_keeps_aspect_and_pads() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(1, 255, size=(153, 72, 3), dtype=np.uint8)  # no zeros: padding is
    label = rng.integers(0, 4, size=(153, 72), dtype=np.uint8)  # distinguishable
    img, lbl, valid = resize_pad(image, label, (64, 64))
    assert valid == (64, 30)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert lbl is not None and lbl.shape == (64, 64)
    assert (img[:, 30:] == 0).all() and (img[:, :30] > 0).all()
    assert (lbl[:, 30:] == IGNORE_INDEX).all() and (lbl[:, :30] != IGNORE_INDEX).all()
    assert crop_valid(img, valid).shape == (64, 30, 3)
    assert crop_valid(lbl, valid).shape == (64, 30)


def test_resize_pad_label_nearest_no_new_values() -> None:
    # Classes 0 and 3 touching: a bilinear warp would invent 1 and 2 at the boundary.
    label = np.zeros((100, 100), dtype=np.uint8)
    label[:, 50:] = 3
    label[30:37, 10:17] = 7
    image = np.repeat(label[..., None], 3, axis=2)
    _, lbl, valid = resize_pad(image, label, (48, 48))
    assert valid == (48, 48)
    assert lbl is not None
    assert set(np.unique(lbl)) == {0, 3, 7}


def test_resize_pad_uint16_one_and_four_bands() -> None:
    rng = np.random.default_rng(1)
    for bands in (1, 4, 200):  # 200 bands: beyond cv2's channel limit in one call
        image = rng.integers(0, 60000, size=(90, 120, bands), dtype=np.uint16)
        img, lbl, valid = resize_pad(image, None, (32, 64))
        assert lbl is None
        assert img.shape == (32, 64, bands) and img.dtype == np.uint16
        assert valid == (32, 43)
        # INTER_AREA averages: values stay inside the input range, and the mean is preserved.
        assert img[:32, :43].max() <= image.max()
        assert abs(float(img[:32, :43].mean()) - float(image.mean())) < 0.02 * float(image.mean())
        assert (img[:, 43:] == 0).all()


def test_resize_pad_small_image_pads_only_unless_upscale() -> None:
    image = np.full((20, 10, 2), 9, dtype=np.uint8)
    label = np.ones((20, 10), dtype=np.uint8)
    img, lbl, valid = resize_pad(image, label, (40, 40))
    assert valid == (20, 10) and img.shape == (40, 40, 2)
    assert lbl is not None and int((lbl == 1).sum()) == 200
    img, lbl, valid = resize_pad(image, label, (40, 40), upscale=True)
    assert valid == (40, 20)
    assert (img[:40, :20] == 9).all() and (img[:, 20:] == 0).all()
    assert lbl is not None and (lbl[:40, :20] == 1).all()


# ---------------------------------------------------------------- standardize


def test_standardize_valid_region_and_padding() -> None:
    rng = np.random.default_rng(2)
    image = np.zeros((64, 64, 4), dtype=np.uint16)
    image[:40, :50] = rng.integers(100, 4000, size=(40, 50, 4))
    out = standardize(image, (40, 50))
    assert out.dtype == np.float32 and out.shape == image.shape
    valid = out[:40, :50]
    assert abs(float(valid.mean())) < 1e-4
    assert abs(float(valid.std()) - 1.0) < 1e-4
    assert (out[40:] == 0).all() and (out[:, 50:] == 0).all()


def test_standardize_whole_image_uint8_and_float() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    a = standardize(image)
    b = standardize(image.astype(np.float32))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert abs(float(a.mean())) < 1e-5 and abs(float(a.std()) - 1.0) < 1e-4


def test_standardize_flat_image_guarded() -> None:
    flat = np.full((16, 16, 3), 77, dtype=np.uint8)
    out = standardize(flat)
    assert np.isfinite(out).all() and (out == 0).all()
    # Nearly flat: std (0.0625) below 1/sqrt(256) (0.0625 exactly) -> divided by the guard.
    almost = flat.astype(np.float32)
    almost[0, 0, 0] += 1.0
    out = standardize(almost)
    assert np.isfinite(out).all() and float(np.abs(out).max()) <= 16.0 + 1e-3


def test_padding_share_and_a_target_in_the_scenes_shape() -> None:
    s2 = [(153, 72)] * 5  # Sentinel-2 crops: portrait
    # into a landscape 64 x 128 tile: 64 x 30 px of content, the rest padding
    assert abs(padding_share(s2, (64, 128)) - (1 - 64 * 30 / (64 * 128))) < 1e-9
    assert target_size_like(s2, (64, 128)) == (128, 64)
    assert padding_share(s2, (128, 64)) < 0.1
    assert padding_share([], (64, 128)) == 0.0


def test_prepare_warns_when_padding_fills_most_of_each_tile() -> None:
    def line(target, sizes, upscale=False):
        data = DataConfig(classes=["a", "b"], manifest="pairs.csv", target_size=target,
                          upscale=upscale)
        return padding_line(sizes, data)

    s2, aerial = [(153, 72)] * 9, [(614, 920)] * 9
    swapped = line((64, 128), s2)
    assert swapped is not None and "77 %" in swapped and "[128, 64]" in swapped
    assert line((128, 64), s2) is None and line((96, 128), aerial) is None
    # a tile larger than the scenes: a smaller tile or upscale, not a reshaped one
    large = line((256, 256), s2)
    assert large is not None and "[160, 96]" in large and "data.upscale: true" in large
    # enlarged into it, the shape is what wastes it
    thin = line((32, 32), [(1000, 10)] * 3)  # no shape helps: said so, not silent
    assert thin is not None and "97 %" in thin and "squarer tiles" in thin
    enlarged = line((256, 256), s2, upscale=True)
    assert enlarged is not None and "53 %" in enlarged and "[384, 160]" in enlarged
