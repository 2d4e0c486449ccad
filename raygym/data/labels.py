"""Label values -> class ids: remapping raw values with a lookup table and decoding colour-coded
labels, each reporting the values it did not know.

Conventions: a label is a numpy ``(H, W)`` integer array of raw values in, ``(H, W)`` uint8
class ids ``0..K-1`` out; :data:`IGNORE_INDEX` (255) marks pixels that the loss and the
metrics skip (padding, unlabelled, rejected values). No Ray and no torch here, so every
function runs the same in a driver, a Ray worker or a test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

IGNORE_INDEX: int = 255
"""Label value skipped by losses and metrics. Must stay 255: labels are stored as uint8."""

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


_COUNT_CHUNK = 1 << 22
"""Pixels per ``np.bincount`` call: it copies its input to int64 (8 bytes a pixel)."""


def _value_counts(idx: np.ndarray, size: int) -> np.ndarray:
    """``(size,)`` pixel count of each value of the uint8 / uint16 ``idx``, a chunk of pixels
    at a time, so a whole scene's label never needs an int64 copy."""
    flat = idx.reshape(-1)
    counts = np.zeros(size, np.int64)
    for start in range(0, flat.size, _COUNT_CHUNK):
        counts += np.bincount(flat[start:start + _COUNT_CHUNK], minlength=size)
    return counts


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
    counts = _value_counts(idx, size)

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
