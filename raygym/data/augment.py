"""Training augmentation of the data stage: geometry applied alike to image and mask (Gym's
AUG_* keys) plus photometric effects on the first 3 bands only, seeded per call so that every
augmented copy is reproducible.

Conventions: image ``(H, W, C)`` uint8/uint16 (C bands), label ``(H, W)`` integer class ids;
pixels moved in from outside the image get :data:`~raygym.data.labels.IGNORE_INDEX`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np

from raygym.data.labels import IGNORE_INDEX


class RGBPhotometric(A.ImageOnlyTransform):
    """Apply photometric transforms (brightness/contrast, fog, sun glare) to the first 3 bands.

    albumentations' fog and sun-flare need exactly 3 channels and uint8 or float in [0, 1];
    multispectral stacks are neither. Rule:

    - ``C >= 3``: the transforms see bands 0..2 (taken as RGB); further bands (NIR, ...) pass
      unchanged -- fog and glare have no defined effect on them, and altering NIR with an RGB
      model of haze would teach a wrong band relation.
    - uint8: applied directly. Other dtypes (uint16, float): bands 0..2 are scaled by their
      per-image maximum into [0, 1] float32, transformed, clipped and scaled back to the input
      dtype (rounded for integers); so glare saturates at the image's brightest value, not at
      65535 which a 12-bit sensor in a uint16 container never reaches. A black image is left as is.
    - ``C < 3``: only brightness/contrast applies (channel-agnostic); fog/glare are skipped.

    Being an ImageOnlyTransform it never sees the mask. Its randomness comes from one seed drawn
    from its own generator per call, so a seeded Compose stays deterministic.
    """

    def __init__(self, transforms: Sequence[A.BasicTransform], p: float = 1.0) -> None:
        super().__init__(p=p)
        self.transforms = list(transforms)
        self._rgb = A.Compose(self.transforms)
        # Channel-agnostic subset for 1- and 2-band images.
        self._any = A.Compose([t for t in self.transforms if isinstance(t, A.RandomBrightnessContrast)])

    def get_params(self) -> dict[str, Any]:
        return {"inner_seed": int(self.random_generator.integers(0, 2**31 - 1))}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("transforms",)

    def _run(self, compose: A.Compose, part: np.ndarray, seed: int) -> np.ndarray:
        if not compose.transforms:
            return part
        compose.set_random_seed(seed)
        if part.dtype == np.uint8:
            return compose(image=np.ascontiguousarray(part))["image"]
        peak = float(part.max())
        if peak <= 0:
            return part
        scaled = (part.astype(np.float32) / peak).clip(0.0, 1.0)
        out = np.clip(compose(image=np.ascontiguousarray(scaled))["image"], 0.0, 1.0) * peak
        if np.issubdtype(part.dtype, np.integer):
            out = np.rint(out)
        return out.astype(part.dtype)

    def apply(self, img: np.ndarray, inner_seed: int = 0, **params: Any) -> np.ndarray:
        channels = img.shape[2] if img.ndim == 3 else 1
        if channels < 3:
            was_2d = img.ndim == 2
            part = img[..., None] if was_2d else img
            out = self._run(self._any, part, inner_seed)
            return out[..., 0] if was_2d else out
        rgb = self._run(self._rgb, img[:, :, :3], inner_seed)
        if channels == 3:
            return rgb
        return np.concatenate([rgb, img[:, :, 3:]], axis=2)


def build_augmenter(
    *,
    rotation: float = 0.0,
    zoom: float = 0.0,
    width_shift: float = 0.0,
    height_shift: float = 0.0,
    hflip: bool = False,
    vflip: bool = False,
    brightness_contrast: float = 0.0,
    fog: float = 0.0,
    sun_glare: float = 0.0,
    ignore_index: int = IGNORE_INDEX,
    image_interpolation: int = cv2.INTER_LINEAR,
) -> A.Compose:
    """Build the training augmentation (Gym's AUG_* keys plus the Albumentations extras).

    Args:
        rotation: maximum rotation, degrees (uniform in ``±rotation``); Gym's AUG_ROT.
        zoom: scale in ``1 ± zoom`` (fraction); AUG_ZOOM.
        width_shift: horizontal translation in ``±width_shift`` of the width (fraction).
        height_shift: vertical translation in ``±height_shift`` of the height (fraction).
        hflip: horizontal flip with probability 0.5; vflip: vertical flip, 0.5.
        brightness_contrast: brightness and contrast limit (fraction; 0 = off), p = 0.5.
        fog: probability of synthetic fog (0 = off).
        sun_glare: probability of a sun flare / glint (0 = off).
        ignore_index: mask value for pixels moved in from outside the image.
        image_interpolation: cv2 flag for the image warp (masks are always nearest).

    Returns:
        An ``A.Compose`` taking ``image=(H, W, C)`` and ``mask=(H, W)``; geometry applies to both
        (image fill 0, mask fill ``ignore_index``, mask nearest), photometric transforms only to
        the image's first 3 bands (see :class:`RGBPhotometric`). Seed it per call with
        :func:`augment_pair`.
    """
    for name, value in (("rotation", rotation), ("zoom", zoom), ("width_shift", width_shift),
                        ("height_shift", height_shift), ("brightness_contrast", brightness_contrast)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    for name, value in (("fog", fog), ("sun_glare", sun_glare)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {value}")
    if zoom >= 1.0:
        raise ValueError(f"zoom must be < 1 (scale 1 ± zoom), got {zoom}")

    transforms: list[A.BasicTransform] = []
    if rotation or zoom or width_shift or height_shift:
        transforms.append(
            A.Affine(
                rotate=(-rotation, rotation),
                scale=(1.0 - zoom, 1.0 + zoom),
                translate_percent={"x": (-width_shift, width_shift), "y": (-height_shift, height_shift)},
                interpolation=image_interpolation,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
                p=1.0,
            )
        )
    if hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    if vflip:
        transforms.append(A.VerticalFlip(p=0.5))

    photometric: list[A.BasicTransform] = []
    if brightness_contrast > 0:
        photometric.append(
            A.RandomBrightnessContrast(
                brightness_limit=brightness_contrast, contrast_limit=brightness_contrast, p=0.5
            )
        )
    if fog > 0:
        photometric.append(A.RandomFog(fog_coef_range=(0.1, 0.4), alpha_coef=0.08, p=fog))
    if sun_glare > 0:
        # src_radius is in pixels; albumentations' default (400) assumes large photographs,
        # 64 suits the 128-768 px tiles this pipeline trains on.
        photometric.append(A.RandomSunFlare(flare_roi=(0.0, 0.0, 1.0, 1.0), src_radius=64, p=sun_glare))
    if photometric:
        transforms.append(RGBPhotometric(photometric, p=1.0))

    # mask_interpolation on the Compose too: belt and braces so no mask is ever interpolated.
    return A.Compose(transforms, mask_interpolation=cv2.INTER_NEAREST)


def augment_pair(
    augmenter: A.Compose, image: np.ndarray, label: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one image/label pair, deterministically for a given ``seed``.

    Args:
        augmenter: from :func:`build_augmenter`.
        image: ``(H, W, C)`` uint8/uint16 image.
        label: ``(H, W)`` integer label.
        seed: any int; the same seed gives the same geometry and photometry.

    Returns:
        ``(image, label)`` with the input shapes and dtypes; label values are a subset of the
        input's values plus ``ignore_index`` (for pixels moved in from outside).

    Reseeds ``augmenter`` (albumentations 2.x ``Compose.set_random_seed``, which resets the numpy
    and python generators of every contained transform): do not share one augmenter between
    threads.
    """
    if image.ndim != 3 or label.shape != image.shape[:2]:
        raise ValueError(f"need image (H, W, C) and label (H, W), got {image.shape} and {label.shape}")
    augmenter.set_random_seed(int(seed) % (2**32))
    out = augmenter(image=np.ascontiguousarray(image), mask=np.ascontiguousarray(label))
    out_img = np.asarray(out["image"])
    out_lbl = np.asarray(out["mask"])
    if out_img.ndim == 2:  # some cv2 paths drop a single channel axis
        out_img = out_img[:, :, None]
    return out_img.astype(image.dtype, copy=False), out_lbl.astype(label.dtype, copy=False)
