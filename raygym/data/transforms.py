"""Pure array transforms of the data stage: label remapping, resize + pad, standardisation,
augmentation.

Conventions used throughout (no Ray, no torch here, so every function runs the same in a
driver, a Ray worker or a test):

- image: numpy ``(H, W, C)``, ``C`` = number of bands, dtype ``uint8`` or ``uint16`` (float
  accepted where noted); pixel values are raw digital numbers, no unit assumed.
- label: numpy ``(H, W)`` integer class ids ``0..K-1``; :data:`IGNORE_INDEX` (255) marks pixels
  that the loss and the metrics skip (padding, unlabelled, rejected values).
- sizes are ``(height, width)`` in pixels, always in that order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import albumentations as A
import cv2
import numpy as np

IGNORE_INDEX: int = 255
"""Label value skipped by losses and metrics. Must stay 255: labels are stored as uint8."""

# cv2.resize with INTER_AREA at a non-integer scale accepts at most 4 channels (OpenCV 5.0:
# "cn <= 4" assertion; integer factors and INTER_LINEAR take more, and any call fails above 128
# channels), so band stacks are resized 4 bands at a time.
_CV2_MAX_CHANNELS: int = 4

UnknownRule = Literal["error", "ignore", "clip"]


class LabelValueError(ValueError):
    """A label holds values that the class mapping does not cover.

    Attributes:
        values: the offending label values, ascending (for colour palettes: ``r<<16 | g<<8 | b``).
        counts: number of pixels holding each value, aligned with ``values``.
    """

    def __init__(self, message: str, values: Sequence[int], counts: Sequence[int]) -> None:
        super().__init__(message)
        self.values: list[int] = [int(v) for v in values]
        self.counts: list[int] = [int(c) for c in counts]

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray ships exceptions between processes by pickling; the default reduce would call
        # LabelValueError(message) and lose values/counts (or fail on the missing arguments).
        return (type(self), (str(self), self.values, self.counts))


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def _validate_class_targets(mapping: Mapping[int, int], num_classes: int, ignore_index: int) -> None:
    if not 1 <= num_classes <= 255:
        raise ValueError(f"num_classes must be in 1..255 (uint8 labels), got {num_classes}")
    if not num_classes <= ignore_index <= 255:
        raise ValueError(
            f"ignore_index must be in {num_classes}..255 (not a class id, fits uint8), got {ignore_index}"
        )
    for key, value in mapping.items():
        if int(key) < 0:
            raise ValueError(f"label mapping key {key} is negative")
        if not (0 <= int(value) < num_classes or int(value) == ignore_index):
            raise ValueError(
                f"label mapping sends {key} -> {value}, outside classes 0..{num_classes - 1} "
                f"(or {ignore_index} = ignore)"
            )


def _as_lut_index(label: np.ndarray) -> np.ndarray:
    """Return ``label`` as uint8/uint16 so it can index a lookup table of 256/65536 entries."""
    if label.dtype in (np.uint8, np.uint16):
        return label
    if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"label must hold integers, got dtype {label.dtype}")
    if label.size and (int(label.min()) < 0 or int(label.max()) > 65535):
        raise LabelValueError(
            f"label values must lie in 0..65535, found {int(label.min())}..{int(label.max())}",
            [int(label.min()), int(label.max())],
            [int((label == label.min()).sum()), int((label == label.max()).sum())],
        )
    return label.astype(np.uint16)


def apply_remap(
    label: np.ndarray,
    mapping: Mapping[int, int] | None,
    num_classes: int,
    unknown: UnknownRule = "error",
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, dict[int, int]]:
    """Map raw label values to class ids ``0..num_classes-1``.

    Args:
        label: ``(H, W)`` integer array of raw label values (any integer dtype, values 0..65535).
        mapping: ``{raw_value: class_id}``; a class id may also be ``ignore_index``. ``None`` means
            identity over ``0..num_classes-1``: the file already holds class ids.
        num_classes: ``K``, number of classes.
        unknown: what to do with values the mapping does not cover:
            ``"error"`` raise :class:`LabelValueError` (values + pixel counts);
            ``"ignore"`` set them to ``ignore_index``;
            ``"clip"`` clip the *raw* value into ``[min key, max key]`` of the mapping (``[0, K-1]``
            for identity) and map that; e.g. mapping ``{1: 0, 2: 1, 3: 2, 4: 3}`` sends the JPEG
            artefacts 0 -> 1 -> 0 and 5 -> 4 -> 3. Requires contiguous integer keys.
        ignore_index: value of pixels the loss skips (255).

    Returns:
        ``(remapped, changed)``: ``remapped`` is ``(H, W)`` uint8; ``changed`` is
        ``{raw_value: pixel_count}`` of the pixels the ``unknown`` rule altered (empty when every
        value was covered).

    Precedence: a mapping key wins; then a raw ``ignore_index`` value not listed as a key stays
    ignore (pre-marked unlabelled pixels) -- but only with an explicit mapping. With the identity
    (``mapping=None``) ``ignore_index`` is an unknown value like any other, because the common
    case is a binary 0/255 mask in which 255 *is* the positive class: passing it through as
    "ignore" would silently drop that class (Gym's fault). Remap it explicitly
    (``{0: 0, 255: 1}``).
    """
    if label.ndim != 2:
        raise ValueError(f"label must be (H, W), got shape {label.shape}")
    if unknown not in ("error", "ignore", "clip"):
        raise ValueError(f"unknown must be 'error', 'ignore' or 'clip', got {unknown!r}")
    explicit = mapping is not None
    table: dict[int, int] = (
        {int(k): int(v) for k, v in mapping.items()} if mapping is not None
        else {k: k for k in range(num_classes)}
    )
    _validate_class_targets(table, num_classes, ignore_index)
    if not table:
        raise ValueError("label mapping is empty")
    lo, hi = min(table), max(table)
    if unknown == "clip" and sorted(table) != list(range(lo, hi + 1)):
        raise ValueError(
            f"unknown='clip' needs contiguous mapping keys {lo}..{hi}, got {sorted(table)}"
        )

    idx = _as_lut_index(label)
    size = 256 if idx.dtype == np.uint8 else 65536
    if hi >= size:
        # A mapping key above 255 with a uint8 label can simply never match; widen the table.
        idx = idx.astype(np.uint16)
        size = 65536
    counts = np.bincount(idx.ravel(), minlength=size)

    # Lookup table raw value -> class id, filled for covered values; `covered` tracks which
    # raw values need no rule.
    lut = np.full(size, ignore_index, dtype=np.uint8)
    covered = np.zeros(size, dtype=bool)
    keys = np.fromiter(table.keys(), dtype=np.int64)
    vals = np.fromiter(table.values(), dtype=np.int64)
    in_range = keys < size
    lut[keys[in_range]] = vals[in_range]
    covered[keys[in_range]] = True
    if explicit and ignore_index < size and not covered[ignore_index]:
        covered[ignore_index] = True  # pre-marked unlabelled pixels stay ignore (lut default)

    bad = np.flatnonzero(~covered & (counts > 0))
    changed = {int(v): int(counts[v]) for v in bad}
    if bad.size:
        if unknown == "error":
            hint = ""
            if not explicit and num_classes == 2 and ignore_index in changed:
                hint = f" (a 0/255 binary mask? remap it: {{0: 0, {ignore_index}: 1}})"
            raise LabelValueError(
                f"label values {list(changed)} (pixel counts {list(changed.values())}) are not "
                f"in the class mapping {sorted(table)}{hint}; set a remap or an unknown-value rule",
                list(changed), list(changed.values()),
            )
        if unknown == "clip":
            clipped = np.clip(bad, lo, hi)
            lut[bad] = np.array([table[int(c)] for c in clipped], dtype=np.uint8)
        # "ignore": lut already holds ignore_index for these values
    return lut[idx], changed


def _rgb_codes(rgb: np.ndarray) -> np.ndarray:
    return (
        (rgb[..., 0].astype(np.uint32) << 16)
        | (rgb[..., 1].astype(np.uint32) << 8)
        | rgb[..., 2].astype(np.uint32)
    )


def _code_to_rgb(code: int) -> tuple[int, int, int]:
    return ((code >> 16) & 255, (code >> 8) & 255, code & 255)


def decode_palette(
    rgb: np.ndarray,
    palette: Mapping[tuple[int, int, int], int],
    unknown: Literal["error", "ignore"] = "error",
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, dict[tuple[int, int, int], int]]:
    """Turn a colour-coded label image into class ids.

    Args:
        rgb: ``(H, W, 3)`` uint8 colour label.
        palette: ``{(r, g, b): class_id}``; class ids in 0..255 (``ignore_index`` allowed).
        unknown: colours not in the palette: ``"error"`` raises :class:`LabelValueError` whose
            ``values`` are the colours encoded as ``r<<16 | g<<8 | b``; ``"ignore"`` maps them to
            ``ignore_index``.
        ignore_index: class id given to ignored colours.

    Returns:
        ``(label, changed)``: ``(H, W)`` uint8 class ids and ``{(r, g, b): pixel_count}`` of the
        colours set to ignore.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"colour label must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if unknown not in ("error", "ignore"):
        raise ValueError(f"unknown must be 'error' or 'ignore', got {unknown!r}")
    if not palette:
        raise ValueError("palette is empty")
    for colour, cls in palette.items():
        if len(colour) != 3 or not all(0 <= int(c) <= 255 for c in colour):
            raise ValueError(f"palette colour {colour} is not an (r, g, b) triple of 0..255")
        if not 0 <= int(cls) <= 255:
            raise ValueError(f"palette class id {cls} for {colour} does not fit uint8")

    pal_codes = np.array(
        [(int(r) << 16) | (int(g) << 8) | int(b) for r, g, b in palette], dtype=np.uint32
    )
    pal_ids = np.array([int(v) for v in palette.values()], dtype=np.uint8)
    order = np.argsort(pal_codes)
    pal_codes, pal_ids = pal_codes[order], pal_ids[order]

    codes = _rgb_codes(rgb)
    # Binary search of every pixel's colour in the sorted palette: O(N log P), no 2^24 table.
    pos = np.clip(np.searchsorted(pal_codes, codes), 0, len(pal_codes) - 1)
    found = pal_codes[pos] == codes
    out = np.where(found, pal_ids[pos], np.uint8(ignore_index)).astype(np.uint8)

    changed: dict[tuple[int, int, int], int] = {}
    if not found.all():
        bad_codes, bad_counts = np.unique(codes[~found], return_counts=True)
        changed = {_code_to_rgb(int(c)): int(n) for c, n in zip(bad_codes, bad_counts, strict=True)}
        if unknown == "error":
            raise LabelValueError(
                f"label colours {list(changed)} (pixel counts {list(changed.values())}) are not "
                "in the palette",
                [int(c) for c in bad_codes], [int(n) for n in bad_counts],
            )
    return out, changed


# --------------------------------------------------------------------------------------------
# Geometry: aspect-preserving resize + pad
# --------------------------------------------------------------------------------------------


def _resize_image(image: np.ndarray, hw: tuple[int, int], interpolation: int) -> np.ndarray:
    """cv2.resize for ``(H, W, C)`` with any C: keeps the channel axis (cv2 drops it for C == 1)
    and resizes band stacks in chunks cv2 accepts (see _CV2_MAX_CHANNELS)."""
    h, w = hw
    chunks = []
    for start in range(0, image.shape[2], _CV2_MAX_CHANNELS):
        part = np.ascontiguousarray(image[:, :, start:start + _CV2_MAX_CHANNELS])
        out = cv2.resize(part, (w, h), interpolation=interpolation)  # cv2 takes (width, height)
        chunks.append(out.reshape(h, w, part.shape[2]))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=2)


def _resize_nearest(label: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (as cv2.INTER_NEAREST_EXACT), done by
    indexing so it works for every dtype and can only copy existing values."""
    h, w = hw
    src_h, src_w = label.shape[:2]
    rows = np.minimum(((np.arange(h) + 0.5) * (src_h / h)).astype(np.int64), src_h - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (src_w / w)).astype(np.int64), src_w - 1)
    return label[rows[:, None], cols[None, :]]


def fit_size(src_hw: tuple[int, int], target_hw: tuple[int, int], upscale: bool = False) -> tuple[int, int]:
    """Size ``(h, w)`` of an image of size ``src_hw`` fitted inside ``target_hw``, aspect kept.

    Shrinks when the source is larger than the target in either dimension; enlarges only when
    ``upscale`` is true; each side is at least 1 and at most the target.
    """
    src_h, src_w = src_hw
    t_h, t_w = target_hw
    scale = min(t_h / src_h, t_w / src_w)
    if scale >= 1.0 and not upscale:
        scale = 1.0
    h = min(t_h, max(1, round(src_h * scale)))
    w = min(t_w, max(1, round(src_w * scale)))
    return h, w


def resize_pad(
    image: np.ndarray,
    label: np.ndarray | None,
    target_hw: tuple[int, int],
    ignore_index: int = IGNORE_INDEX,
    upscale: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Fit an image (and its label) into ``target_hw`` keeping the aspect ratio, then pad.

    Image shrinking uses ``cv2.INTER_AREA`` (anti-aliased), enlarging (only with ``upscale``)
    ``cv2.INTER_LINEAR``; the dtype (uint8, uint16, float) and every band are kept. The label is
    resized nearest-neighbour, so no value that was not in it can appear (Gym warped masks
    bilinearly and rounded, inventing classes at boundaries). Padding goes to the bottom and
    right: image 0, label ``ignore_index``, so the loss and metrics skip it.

    Args:
        image: ``(H, W, C)`` array.
        label: ``(H, W)`` integer array, or ``None`` (prediction).
        target_hw: ``(tH, tW)`` output size in pixels.
        ignore_index: label value for padding.
        upscale: enlarge images smaller than the target (default: pad only).

    Returns:
        ``(image (tH, tW, C), label (tH, tW) or None, valid_hw)``: ``valid_hw = (h, w)`` is the
        size of the real content at the top-left; :func:`crop_valid` undoes the padding.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    src_h, src_w, channels = image.shape
    if label is not None and label.shape != (src_h, src_w):
        raise ValueError(f"label shape {label.shape} != image size {(src_h, src_w)}")
    t_h, t_w = target_hw
    h, w = fit_size((src_h, src_w), (t_h, t_w), upscale)

    if (h, w) != (src_h, src_w):
        enlarging = h > src_h or w > src_w
        interp = cv2.INTER_LINEAR if enlarging else cv2.INTER_AREA
        image = _resize_image(image, (h, w), interp)
        if label is not None:
            label = _resize_nearest(label, (h, w))

    out_img = np.zeros((t_h, t_w, channels), dtype=image.dtype)
    out_img[:h, :w] = image
    out_lbl: np.ndarray | None = None
    if label is not None:
        if np.issubdtype(label.dtype, np.integer) and ignore_index > np.iinfo(label.dtype).max:
            raise ValueError(f"ignore_index {ignore_index} does not fit label dtype {label.dtype}")
        out_lbl = np.full((t_h, t_w), ignore_index, dtype=label.dtype)
        out_lbl[:h, :w] = label
    return out_img, out_lbl, (h, w)


def crop_valid(arr: np.ndarray, valid_hw: tuple[int, int]) -> np.ndarray:
    """Inverse of the padding of :func:`resize_pad`: ``arr[:h, :w, ...]`` for ``(H, W, ...)``."""
    h, w = valid_hw
    return arr[:h, :w]


# --------------------------------------------------------------------------------------------
# Standardisation
# --------------------------------------------------------------------------------------------


def standardize(image: np.ndarray, valid_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Gym's per-image standardisation over all bands together.

    ``(x - mean) / max(std, 1 / sqrt(h * w))`` with mean and std over the valid region
    ``image[:h, :w]`` (all bands pooled); the ``max`` guards flat images against division by ~0.
    Pixels outside the valid region (padding) are set to 0, i.e. to the mean, so they carry no
    signal. Used identically at training load time and at prediction.

    Args:
        image: ``(H, W, C)`` uint8, uint16 or float array (raw digital numbers).
        valid_hw: ``(h, w)`` of real content at the top-left (from :func:`resize_pad`);
            ``None`` = the whole image.

    Returns:
        ``(H, W, C)`` float32, dimensionless.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    big_h, big_w = image.shape[:2]
    h, w = valid_hw if valid_hw is not None else (big_h, big_w)
    if not (1 <= h <= big_h and 1 <= w <= big_w):
        raise ValueError(f"valid_hw {(h, w)} outside image size {(big_h, big_w)}")
    valid = image[:h, :w].astype(np.float64)  # float64 sums: uint16 images overflow float32 precision
    mean = float(valid.mean())
    std = float(valid.std())
    denom = max(std, 1.0 / math.sqrt(h * w))
    out = np.zeros(image.shape, dtype=np.float32)
    out[:h, :w] = ((valid - mean) / denom).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


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
