"""Tests of raygym.data.transforms: real arrays, each assertion can fail."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raygym.data.transforms import (
    IGNORE_INDEX,
    LabelValueError,
    apply_remap,
    augment_pair,
    build_augmenter,
    crop_valid,
    decode_palette,
    resize_pad,
    standardize,
)

S2_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "s2_ocean_beach_4class"
S2_MAP = {1: 0, 2: 1, 3: 2, 4: 3}


def test_ignore_index_is_255() -> None:
    assert IGNORE_INDEX == 255


# ---------------------------------------------------------------- remap


def test_remap_mapping_covers_all() -> None:
    label = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    out, changed = apply_remap(label, S2_MAP, 4)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[0, 1], [2, 3]])
    assert changed == {}


def test_remap_identity() -> None:
    label = np.array([[0, 1, 2]], dtype=np.uint8)
    out, changed = apply_remap(label, None, 3)
    np.testing.assert_array_equal(out, label)
    assert changed == {}


def test_remap_error_reports_values_and_counts() -> None:
    label = np.array([[0, 1, 5, 5], [2, 3, 4, 0]], dtype=np.uint8)
    with pytest.raises(LabelValueError) as info:
        apply_remap(label, S2_MAP, 4, unknown="error")
    assert info.value.values == [0, 5]
    assert info.value.counts == [2, 2]


def test_remap_ignore_counts() -> None:
    label = np.array([[0, 1, 5, 5], [2, 3, 4, 0]], dtype=np.uint8)
    out, changed = apply_remap(label, S2_MAP, 4, unknown="ignore")
    np.testing.assert_array_equal(out, [[255, 0, 255, 255], [1, 2, 3, 255]])
    assert changed == {0: 2, 5: 2}


def test_remap_clip_reproduces_s2_rule() -> None:
    # The S2 set's own rule: 0 -> 1 and > 4 -> 4, then 1..4 -> 0..3.
    label = np.array([[0, 1, 2, 3, 4, 5, 9]], dtype=np.uint8)
    out, changed = apply_remap(label, S2_MAP, 4, unknown="clip")
    np.testing.assert_array_equal(out, [[0, 0, 1, 2, 3, 3, 3]])
    assert changed == {0: 1, 5: 1, 9: 1}


def test_remap_identity_clip() -> None:
    label = np.array([[0, 3, 7, 200]], dtype=np.uint8)
    out, changed = apply_remap(label, None, 4, unknown="clip")
    np.testing.assert_array_equal(out, [[0, 3, 3, 3]])
    assert changed == {7: 1, 200: 1}


def test_binary_0_255_mask_is_refused_not_lost() -> None:
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:5, 2:6] = 255
    with pytest.raises(LabelValueError) as info:
        apply_remap(mask, None, 2)
    assert info.value.values == [255]
    assert info.value.counts == [12]
    assert "{0: 0, 255: 1}" in str(info.value)
    out, changed = apply_remap(mask, {0: 0, 255: 1}, 2)
    assert int(out.sum()) == 12 and set(np.unique(out)) == {0, 1}
    assert changed == {}


def test_remap_explicit_mapping_keeps_preexisting_ignore() -> None:
    label = np.array([[0, 1, 255]], dtype=np.uint8)
    out, changed = apply_remap(label, {0: 0, 1: 1}, 2)
    np.testing.assert_array_equal(out, [[0, 1, 255]])
    assert changed == {}


def test_remap_uint16_and_wide_int_labels() -> None:
    label = np.array([[0, 1000, 40000]], dtype=np.uint16)
    out, _ = apply_remap(label, {0: 0, 1000: 1, 40000: 2}, 3)
    np.testing.assert_array_equal(out, [[0, 1, 2]])
    out64, _ = apply_remap(label.astype(np.int64), {0: 0, 1000: 1, 40000: 2}, 3)
    np.testing.assert_array_equal(out64, [[0, 1, 2]])


def test_remap_validates_mapping() -> None:
    label = np.zeros((2, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="outside classes"):
        apply_remap(label, {0: 5}, 4)
    with pytest.raises(ValueError, match="contiguous"):
        apply_remap(label, {0: 0, 255: 1}, 2, unknown="clip")
    with pytest.raises(TypeError):
        apply_remap(label.astype(np.float32), None, 2)


def test_label_value_error_survives_pickle() -> None:
    # Ray moves exceptions between processes by pickling them.
    err = pickle.loads(pickle.dumps(LabelValueError("bad", [5], [13])))
    assert isinstance(err, LabelValueError) and isinstance(err, ValueError)
    assert err.values == [5] and err.counts == [13] and str(err) == "bad"


@pytest.mark.skipif(not S2_DIR.is_dir(), reason="shared S2 data not present")
def test_remap_real_s2_labels_with_clip() -> None:
    with Image.open(sorted((S2_DIR / "labels").glob("*.jpg"))[0]) as im:
        label = np.asarray(im)
    with pytest.raises(LabelValueError):
        apply_remap(label, S2_MAP, 4)  # JPEG artefacts 0 and 5 are present
    out, changed = apply_remap(label, S2_MAP, 4, unknown="clip")
    assert set(np.unique(out)) <= {0, 1, 2, 3}
    assert set(changed) <= {0, 5} and sum(changed.values()) > 0
    assert sum(changed.values()) < 0.01 * label.size


# ---------------------------------------------------------------- palette


PALETTE = {(0, 0, 255): 0, (255, 255, 255): 1, (230, 200, 120): 2}


def test_decode_palette() -> None:
    rgb = np.array([[[0, 0, 255], [255, 255, 255]], [[230, 200, 120], [0, 0, 255]]], dtype=np.uint8)
    out, changed = decode_palette(rgb, PALETTE)
    np.testing.assert_array_equal(out, [[0, 1], [2, 0]])
    assert out.dtype == np.uint8 and changed == {}


def test_decode_palette_unknown_colours() -> None:
    rgb = np.array([[[0, 0, 255], [1, 2, 3], [1, 2, 3]]], dtype=np.uint8)
    with pytest.raises(LabelValueError) as info:
        decode_palette(rgb, PALETTE)
    assert info.value.values == [(1 << 16) | (2 << 8) | 3]
    assert info.value.counts == [2]
    out, changed = decode_palette(rgb, PALETTE, unknown="ignore")
    np.testing.assert_array_equal(out, [[0, 255, 255]])
    assert changed == {(1, 2, 3): 2}


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


# ---------------------------------------------------------------- augmentation


def _pair(bands: int = 4, dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """Blocky 4-class mask and an image whose LAST band is mask * 40 (photometric transforms
    touch only bands 0..2, so the last band of a 4-band image keeps the mask exactly)."""
    rng = np.random.default_rng(5)
    coarse = rng.integers(0, 4, size=(8, 12), dtype=np.uint8)
    mask = np.kron(coarse, np.ones((8, 8), dtype=np.uint8))  # (64, 96)
    image = rng.integers(0, 200, size=(64, 96, bands)).astype(dtype)
    image[..., -1] = mask * 40
    return image, mask


FULL = dict(rotation=20.0, zoom=0.2, width_shift=0.1, height_shift=0.1, hflip=True, vflip=True)


def test_augment_deterministic_per_seed_and_varies_across_seeds() -> None:
    image, mask = _pair()
    aug = build_augmenter(**FULL, brightness_contrast=0.2, fog=0.5, sun_glare=0.5)
    a_img, a_lbl = augment_pair(aug, image, mask, seed=11)
    _ = augment_pair(aug, image, mask, seed=99)  # state in between must not matter
    b_img, b_lbl = augment_pair(aug, image, mask, seed=11)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lbl, b_lbl)
    c_img, c_lbl = augment_pair(build_augmenter(**FULL, brightness_contrast=0.2, fog=0.5, sun_glare=0.5),
                                image, mask, seed=11)
    np.testing.assert_array_equal(a_img, c_img)  # a fresh augmenter, same seed: same output
    outs = {augment_pair(aug, image, mask, seed=s)[1].tobytes() for s in range(6)}
    assert len(outs) == 6


def test_augment_geometry_identical_for_image_and_mask() -> None:
    image, mask = _pair()
    aug = build_augmenter(**FULL, fog=1.0, sun_glare=1.0, brightness_contrast=0.3,
                          image_interpolation=0)  # nearest for the image too: exact check
    for seed in range(10):
        img, lbl = augment_pair(aug, image, mask, seed)
        assert img.shape == image.shape and img.dtype == image.dtype
        assert lbl.shape == mask.shape and lbl.dtype == mask.dtype
        known = lbl != IGNORE_INDEX
        assert known.mean() > 0.3
        np.testing.assert_array_equal(img[..., -1][known], lbl[known].astype(np.uint8) * 40)
        assert (img[..., -1][~known] == 0).all()  # image fill 0 where the mask is filled ignore
        assert set(np.unique(lbl)) <= set(np.unique(mask)) | {IGNORE_INDEX}


def test_augment_linear_image_agrees_away_from_borders() -> None:
    image, mask = _pair()
    aug = build_augmenter(**FULL)  # default linear image interpolation
    img, lbl = augment_pair(aug, image, mask, seed=3)
    known = lbl != IGNORE_INDEX
    agree = img[..., -1][known] == lbl[known] * 40
    assert agree.mean() > 0.8  # only class-boundary pixels may blend
    assert set(np.unique(lbl)) <= set(np.unique(mask)) | {IGNORE_INDEX}


def test_photometric_never_touches_mask_or_extra_bands() -> None:
    image, mask = _pair()
    aug = build_augmenter(fog=1.0, sun_glare=1.0, brightness_contrast=0.5)
    img, lbl = augment_pair(aug, image, mask, seed=0)
    np.testing.assert_array_equal(lbl, mask)
    np.testing.assert_array_equal(img[..., 3], image[..., 3])
    assert not np.array_equal(img[..., :3], image[..., :3])


def test_augment_uint16_multiband_and_one_band() -> None:
    image, mask = _pair(bands=5, dtype=np.uint16)
    image[..., :3] *= 20  # a 12-bit-like range
    aug = build_augmenter(**FULL, fog=1.0, sun_glare=1.0, brightness_contrast=0.2)
    img, lbl = augment_pair(aug, image, mask, seed=4)
    assert img.dtype == np.uint16 and img.shape == image.shape
    # Photometry is scaled to the image's own range, not to 65535.
    assert int(img[..., :3].max()) <= int(image[..., :3].max())
    one = image[..., :1].astype(np.uint8)
    img1, lbl1 = augment_pair(aug, one, mask, seed=4)
    assert img1.shape == one.shape and img1.dtype == np.uint8
    np.testing.assert_array_equal(lbl1, lbl)  # same seed, same geometry, whatever the bands


def test_build_augmenter_validates() -> None:
    with pytest.raises(ValueError):
        build_augmenter(fog=1.5)
    with pytest.raises(ValueError):
        build_augmenter(rotation=-1.0)
    with pytest.raises(ValueError):
        build_augmenter(zoom=1.0)
