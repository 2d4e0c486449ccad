"""Tests of raygym.data.augment: real arrays, each assertion can fail."""

from __future__ import annotations

import numpy as np
import pytest

from raygym.data.augment import augment_pair, build_augmenter
from raygym.data.labels import IGNORE_INDEX


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


def test_scene_copies_augments_only_train_scenes_reproducibly_per_key() -> None:
    """prepare's copies of one scene: copy 0 is the scene; a train scene adds ``copies``
    augmented ones, the same for the same (dataset seed, key), different for another key."""
    from raygym.config import AugmentConfig, DataConfig
    from raygym.data.scenes import scene_copies

    image, mask = _pair()
    data = DataConfig(images="images", labels="labels", classes=["a", "b", "c", "d"],
                      augment=AugmentConfig(copies=2, rotation=20.0, hflip=True))
    val = scene_copies(data, "scene1", "val", image, mask)
    assert [c for c, _, _ in val] == [0] and val[0][1] is image and val[0][2] is mask
    train = scene_copies(data, "scene1", "train", image, mask)
    assert [c for c, _, _ in train] == [0, 1, 2]
    assert not np.array_equal(train[1][1], image) and not np.array_equal(train[1][1], train[2][1])
    again = scene_copies(data, "scene1", "train", image, mask)
    assert all(np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
               for a, b in zip(train, again, strict=True))
    other = scene_copies(data, "scene2", "train", image, mask)
    assert not np.array_equal(other[1][1], train[1][1])
