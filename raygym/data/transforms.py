"""Image geometry and standardisation of the data stage: aspect-preserving resize + pad into the
training size (and its inverse), and Gym's per-image standardisation.

Conventions: an image is a numpy ``(H, W, C)`` array, ``C`` = number of bands, dtype ``uint8``
or ``uint16`` (float accepted where noted), raw digital numbers with no unit assumed; a label
is ``(H, W)`` integers; sizes are ``(height, width)`` in pixels, always in that order. No Ray
and no torch here, so prediction and training transform an image alike.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from raygym.data.labels import IGNORE_INDEX

# cv2.resize with INTER_AREA at a non-integer scale accepts at most 4 channels (OpenCV 5.0:
# "cn <= 4" assertion; integer factors and INTER_LINEAR take more, and any call fails above 128
# channels), so band stacks are resized 4 bands at a time.
_CV2_MAX_CHANNELS: int = 4


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


def window_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Top (or left) offsets of the windows covering ``length`` pixels with ``tile``-pixel
    windows overlapping by about ``overlap * tile``; the last window ends at ``length``.
    ``[0]`` when ``length <= tile`` (the image is padded instead). Prediction's sliding
    windows and prepare's chips (:func:`scene_chips`) both come from here."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def chip_windows(hw: tuple[int, int], size: tuple[int, int], overlap: float
                 ) -> list[tuple[int, int, int, int]]:
    """The chips of a scene of ``hw`` px: ``(row, col, height, width)`` windows of ``size``,
    placed as prediction places its windows (:func:`window_starts`: the last row and column
    end at the scene's edge; a scene smaller than ``size`` is one chip, padded later)."""
    (h, w), (th, tw) = hw, size
    return [(y, x, min(th, h - y), min(tw, w - x)) for y in window_starts(h, th, overlap)
            for x in window_starts(w, tw, overlap)]


def labelled_enough(label: np.ndarray, min_labelled: float) -> bool:
    """A chip is kept when at least ``min_labelled`` of its pixels are labelled (not
    ``IGNORE_INDEX``: nodata, ignored values, no polygon)."""
    return float(np.mean(label != IGNORE_INDEX)) >= min_labelled


def scene_chips(image: np.ndarray, label: np.ndarray, size: tuple[int, int], overlap: float,
                min_labelled: float) -> tuple[list[tuple[int, int, np.ndarray, np.ndarray]], int]:
    """Cut a scene held in memory into chips (:func:`chip_windows`): ``([(y, x, image chip,
    label chip), ...], chips dropped)``; a chip not :func:`labelled_enough` is dropped.
    Views, not copies."""
    kept, dropped = [], 0
    for y, x, h, w in chip_windows(label.shape, size, overlap):
        lab = label[y:y + h, x:x + w]
        if not labelled_enough(lab, min_labelled):
            dropped += 1
            continue
        kept.append((y, x, image[y:y + h, x:x + w], lab))
    return kept, dropped


def fit_scale(src_hw: tuple[int, int], target_hw: tuple[int, int], upscale: bool = False
              ) -> float:
    """The factor (output px per source px, per side) that fits ``src_hw`` inside
    ``target_hw`` with the aspect kept: < 1 shrinks; > 1 only with ``upscale``."""
    scale = min(target_hw[0] / src_hw[0], target_hw[1] / src_hw[1])
    return scale if scale < 1.0 or upscale else 1.0


def fit_size(src_hw: tuple[int, int], target_hw: tuple[int, int], upscale: bool = False) -> tuple[int, int]:
    """Size ``(h, w)`` of an image of size ``src_hw`` fitted inside ``target_hw``, aspect kept.

    Shrinks when the source is larger than the target in either dimension; enlarges only when
    ``upscale`` is true; each side is at least 1 and at most the target.
    """
    src_h, src_w = src_hw
    t_h, t_w = target_hw
    scale = fit_scale(src_hw, target_hw, upscale)
    h = min(t_h, max(1, round(src_h * scale)))
    w = min(t_w, max(1, round(src_w * scale)))
    return h, w


def padding_share(sizes: list[tuple[int, int]], target_hw: tuple[int, int],
                  upscale: bool = False) -> float:
    """Median share (0-1) of a ``target_hw`` tile that padding fills once scenes of ``sizes``
    (``(h, w)`` px) are fitted inside it; 0.0 for no scene."""
    if not sizes:
        return 0.0
    area = target_hw[0] * target_hw[1]
    return float(np.median([1.0 - math.prod(fit_size(hw, target_hw, upscale)) / area
                            for hw in sizes]))


def target_size_like(sizes: list[tuple[int, int]], target_hw: tuple[int, int],
                     multiple: int = 32) -> tuple[int, int]:
    """A target size of about ``target_hw``'s pixel count with the scenes' median aspect
    (``h / w``), each side a multiple of ``multiple`` (every model raygym builds accepts 32)."""
    aspect = float(np.median([h / w for h, w in sizes]))
    area = target_hw[0] * target_hw[1]

    def side(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return side(math.sqrt(area * aspect)), side(math.sqrt(area / aspect))


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
    signal. Nodata pixels of a float image (NaN or inf in any band: prepare writes a raster's
    nodata as NaN, see :func:`raygym.data.io.read_image`) are left out of the statistics (h * w
    becomes their count) and set to 0 too; their labels are the ignore index. Used identically
    at training load time and at prediction.

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
    out = np.zeros(image.shape, dtype=np.float32)
    data = np.isfinite(valid).all(axis=2) if image.dtype.kind == "f" else None
    if data is None or data.all():
        pixels, count = valid, h * w
    else:
        pixels, count = valid[data], int(data.sum())
        if not count:  # an augmented copy cut from nodata alone: nothing to standardise
            return out
    mean = float(pixels.mean())
    std = float(pixels.std())
    denom = max(std, 1.0 / math.sqrt(count))
    scaled = ((valid - mean) / denom).astype(np.float32)
    if data is not None:
        scaled[~data] = 0.0
    out[:h, :w] = scaled
    return out
