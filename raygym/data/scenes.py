"""One scene of ``raygym prepare``, as its Ray tasks process it: read the image (and its extra
bands) and label, validate, remap, mark nodata as ignored, cut into chips (``data.chips``),
augment train copies, resize/pad into ``data.target_size``, as dataset rows.

No Ray here: :mod:`raygym.data.prepare` runs :func:`process_scene` in its tasks, and
``evaluate --data`` reads labels with :func:`read_scene_label`, the same rules.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raygym.config import IGNORE_INDEX, DataConfig, parse_colour
from raygym.data.io import (
    Window,
    is_raster,
    read_header,
    read_image,
    read_label,
    read_single_band,
)
from raygym.errors import DataError


def scene_copies(data: DataConfig, key: str, split: str, image: np.ndarray, label: np.ndarray
                 ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``[(copy, image, label), ...]`` of one scene: copy 0 is the scene itself; a train scene
    adds ``data.augment.copies`` augmented copies (image (H, W, C), label (H, W), full size)."""
    scenes = [(0, image, label)]
    copies = data.augment.copies if split == "train" else 0
    if copies:
        from raygym.data.augment import augment_pair, build_augmenter

        augmenter = build_augmenter(**data.augment.augmenter_kwargs(), ignore_index=IGNORE_INDEX)
        for c in range(1, copies + 1):
            # Seed from (dataset seed, source key, copy): each copy is reproducible alone.
            seed = zlib.crc32(f"{data.seed}/{key}/{c}".encode())
            img, lab = augment_pair(augmenter, image, label, seed)
            scenes.append((c, img, lab))
    return scenes


def process_scene(row: dict[str, Any], data: DataConfig, dtype: str
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One scene's rows in a list, and :func:`run_scene`'s info (for tests and benches)."""
    rows: list[dict[str, Any]] = []
    info = run_scene(row, data, dtype, rows.append)
    return (rows, info) if not info["error"] else ([], info)


def run_scene(row: dict[str, Any], data: DataConfig, dtype: str,
              emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Ray task body for one scene: read, validate, remap, cut into chips (``data.chips``),
    augment (train copies), resize/pad; each row goes to ``emit`` as it is made, so a large
    scene's chips never sit in memory all at once. Returns ``info``: ``error`` ("" or one line
    naming the file; rows emitted before it are the caller's to drop), ``changed`` (what the
    unknown-label rule changed), ``chips`` kept per split (JSON ``{split: n}``: Ray Data's
    rows take no dicts of varying keys), ``dropped`` (too little labelled) and ``unlabelled``
    (1: a whole scene without one labelled pixel, e.g. outside ``data.label_raster``).

    Augmentation runs on the full-size scene (or chip) *before* resize/pad, so the padding
    stays at the bottom/right and ``valid_hw`` is true for every copy. A failure becomes
    ``info["error"]`` (the driver reports it) instead of an exception inside Ray.
    """
    from raygym.data.transforms import resize_pad

    th, tw = data.target_size
    info: dict[str, Any] = {"error": "", "changed": "{}", "chips": "{}", "dropped": 0,
                            "unlabelled": 0}
    try:
        if data.chips is None:
            image, label, changed = read_scene(row, data, dtype)
            info["changed"] = json.dumps(changed)
            info["unlabelled"] = int(not (label != IGNORE_INDEX).any())
            pieces: Iterable[tuple[str, str, np.ndarray, np.ndarray]] = [
                (row["key"], row["split"], image, label)]
        else:
            pieces = _chips(row, data, dtype, info)
        kept: dict[str, int] = {}
        for key, split, piece, piece_label in pieces:
            kept[split] = kept.get(split, 0) + 1
            for c, img, lab in scene_copies(data, key, split, piece, piece_label):
                img, lab, valid = resize_pad(img, lab, (th, tw), IGNORE_INDEX, data.upscale)
                lab = ignore_nodata(img, lab)  # resizing and warping spread NaN to neighbours
                emit(scene_row(key, split, c, img, lab.astype(np.uint8), valid,
                               len(data.classes)))
        info["chips"] = json.dumps(kept)
    except DataError as err:
        info["error"] = str(err)
    except Exception as err:  # noqa: BLE001 - reported to the user as one line, by file
        info["error"] = f"{row['images'][0]}: {type(err).__name__}: {err}"
    return info


def _chips(row: dict[str, Any], data: DataConfig, dtype: str, info: dict[str, Any]
           ) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """A scene's kept chips, ``(key, split, image, label)``, as they are cut; ``info`` gets
    ``dropped`` and ``changed``. TIFFs (a large orthomosaic's format) are read one row of chips
    at a time (a band of rows, whole width: each compressed tile or strip is decoded once), so
    a scene never sits in memory whole; other formats are decoded whole first."""
    from raygym.data.transforms import chip_windows, labelled_enough, scene_chips, window_starts

    assert data.chips is not None
    size, overlap = data.target_size, data.chips.overlap
    if not by_windows(row, data):
        image, label, changed = read_scene(row, data, dtype)
        info["changed"] = json.dumps(changed)
        chips, info["dropped"] = scene_chips(image, label, size, overlap,
                                             data.chips.min_labelled)
        split_of = _chip_split(row, label.shape, data)
        for y, x, img, lab in chips:
            yield chip_key(row["key"], y, x), split_of(y, x), img, lab
        return
    head = read_header(Path(row["images"][0]))
    split_of = _chip_split(row, (head.height, head.width), data)
    changed: dict[str, int] = {}
    for y in window_starts(head.height, size[0], overlap):
        rows = min(size[0], head.height - y)
        image, label, changed_here = read_scene(row, data, dtype,
                                                window=(y, 0, rows, head.width))
        for value, n in changed_here.items():  # rows two bands share count twice
            changed[value] = changed.get(value, 0) + n
        info["changed"] = json.dumps(changed)
        for _, x, _, w in chip_windows((rows, head.width), size, overlap):
            lab = label[:, x:x + w]
            if not labelled_enough(lab, data.chips.min_labelled):
                info["dropped"] += 1
                continue
            yield chip_key(row["key"], y, x), split_of(y, x), image[:, x:x + w], lab


def by_windows(row: dict[str, Any], data: DataConfig) -> bool:
    """Whether a scene's chips are read window by window: every file of it a TIFF (the label
    too, unless it is drawn as polygons)."""
    files = [Path(p) for p in row["images"]]
    if data.site_labels is None:  # (one file for every scene is read onto each one's grid)
        files.append(Path(row["label"]))
    return all(is_raster(f) for f in files)


def _chip_split(row: dict[str, Any], hw: tuple[int, int], data: DataConfig
                ) -> Callable[[int, int], str]:
    """``split_of(y, x)``: the split of the chip at ``(y, x)``: its scene's, or with
    ``data.chips.blocks`` its block's (``row["blocks"]``, from
    :func:`raygym.data.split.block_splits`)."""
    if data.chips is None or data.chips.blocks is None:
        return lambda y, x: row["split"]
    from raygym.data.split import axis_blocks

    th, tw = data.target_size
    blocks = json.loads(row["blocks"])
    rows = axis_blocks(hw[0], th, data.chips.blocks)
    cols = axis_blocks(hw[1], tw, data.chips.blocks)
    return lambda y, x: blocks[f"{rows[y]}/{cols[x]}"]


def chip_key(scene: str, y: int, x: int) -> str:
    """A chip's row key: its scene's key and its top-left pixel (``scene_y512_x1024``)."""
    return f"{scene}_y{y}_x{x}"


def scene_of_chip(key: str) -> str:
    """The scene key of a chip's row key (the inverse of :func:`chip_key`)."""
    return re.sub(r"_y\d+_x\d+$", "", key)


def read_scene(row: dict[str, Any], data: DataConfig, dtype: str, window: Window | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Full-size (H, W, C) image, (H, W) uint8 label, and what the unknown-label rule changed;
    ``window``: only that part of the scene (a chip), as :func:`raygym.data.io.read_image`."""
    paths = [Path(p) for p in row["images"]]
    parts = ([read_image(paths[0], nodata_to_nan=True, window=window, bands=data.image_bands)]
             + [read_single_band(p, nodata_to_nan=True, window=window) for p in paths[1:]])
    # one file: no concatenated copy (a large scene is held once)
    whole = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)
    image = whole.astype(np.dtype(dtype), copy=False)
    if image.shape[2] != int(row["bands"]):  # the headers promised what every scene must have
        raise DataError(f"decoded to {image.shape[2]} bands but the file headers promise "
                        f"{row['bands']}", file=paths[0],
                        fix="save the image as plain RGB / greyscale (no palette, no alpha)")
    label_path = Path(row["label"])
    label, changed = read_scene_label(label_path, data, image=paths[0], window=window)
    if label.shape != image.shape[:2]:
        raise DataError(f"label size {label.shape} differs from image {image.shape[:2]}",
                        file=label_path)
    if (window is None and image.dtype.kind == "f"
            and not np.isfinite(image).all(axis=2).any()):  # a chip may be all nodata
        # each file has data (read_image refuses an empty one) but never at the same pixel
        raise DataError("every pixel is nodata in one band file or another: nothing to train "
                        "on", file=paths[0], fix="remove this scene, or correct the nodata "
                        "values of its band files")
    return image, ignore_nodata(image, label), changed


def read_scene_label(label_path: Path, data: DataConfig, image: Path | None = None,
                     window: Window | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """A scene's full-size ``(H, W)`` uint8 label by ``data``'s rules (``palette`` or ``remap``, then
    ``unknown_labels``) and what the unknown-label rule changed (value or colour -> pixels).
    With ``data.label_vector`` the polygons are burnt onto ``image``'s grid instead
    (:func:`raygym.data.vector_labels.burn_labels`); with ``data.label_raster`` the map's class
    numbers are read onto it (:func:`raygym.data.raster_labels.read_on_grid`), then mapped as
    a label file's are, and pixels it does not cover are ignored (or ``background``).

    Raises:
        DataError: label values (colours) the rules leave unknown under ``unknown_labels:
            error``, named with their pixel counts and the fix.
    """
    from raygym.data.labels import LabelValueError, apply_remap, decode_palette

    if data.label_vector is not None:
        from raygym.data.vector_labels import burn_labels

        assert image is not None, "vector labels are burnt onto an image's grid"
        return burn_labels(data, image, window)
    k = len(data.classes)
    try:
        if data.palette:
            colours = {parse_colour(c): v for c, v in data.palette.items()}
            raw = read_label(label_path, colour=True, window=window)
            rule = "ignore" if data.unknown_labels == "ignore" else "error"
            label, changed_c = decode_palette(raw, colours, unknown=rule)
            changed = {f"{r},{g},{b}": int(n) for (r, g, b), n in changed_c.items()}
        elif data.label_raster is not None:
            from raygym.data.raster_labels import read_on_grid

            assert image is not None, "a label raster is read onto an image's grid"
            spec, label_path = data.label_raster, data.label_raster.file
            raw, covered = read_on_grid(spec, image, window)
            mapped, changed_v = apply_remap(raw[covered][None, :], data.remap, k,
                                            data.unknown_labels)
            fill = IGNORE_INDEX if spec.background is None else data.classes.index(
                spec.background)
            label = np.full(raw.shape, fill, np.uint8)
            label[covered] = mapped[0]
            changed = {str(v): int(n) for v, n in changed_v.items()}
        else:
            raw = read_label(label_path, window=window)
            label, changed_v = apply_remap(raw, data.remap, k, data.unknown_labels)
            changed = {str(v): int(n) for v, n in changed_v.items()}
    except LabelValueError as err:
        # palette errors carry colours as r<<16 | g<<8 | b: show them as '#rrggbb'
        names = [f"'#{v:06x}'" if data.palette else str(v) for v in err.values]
        shown = ", ".join(f"{v} ({n} px)" for v, n in list(zip(names, err.counts, strict=True))[:6])
        if len(names) > 6:
            shown += f" (+{len(names) - 6} more)"
        fix = "map them in data.remap, or set data.unknown_labels: ignore | clip"
        if data.palette:
            fix = "add the colours to data.palette, or set data.unknown_labels: ignore"
        elif data.remap is None and 255 in err.values and k == 2:
            fix = "a 0/255 binary mask: set `remap: {0: 0, 255: 1}`"
        what = "label colours not in data.palette" if data.palette else (
            f"label values outside the {k} classes")
        raise DataError(f"{what}: {shown}", file=label_path, fix=fix) from None
    return label.astype(np.uint8, copy=False), changed


def ignore_nodata(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """``(H, W)`` ``label`` with the ignore index where the ``(H, W, C)`` float ``image`` is
    nodata (NaN / inf in any band), so the loss and the metrics skip those pixels."""
    if image.dtype.kind != "f":
        return label
    nodata = ~np.isfinite(image).all(axis=2)
    if not nodata.any():
        return label
    out = label.copy()
    out[nodata] = IGNORE_INDEX
    return out


def scene_row(key: str, split: str, copy: int, image: np.ndarray, label: np.ndarray,
              valid: tuple[int, int], num_classes: int) -> dict[str, Any]:
    """One dataset row: ``key`` (the scene's, or a chip's) in ``split``."""
    counts = np.bincount(np.where(label == IGNORE_INDEX, num_classes, label).ravel(),
                         minlength=num_classes + 1)[: num_classes + 1]
    return {"key": key, "split": split, "copy": copy,
            "image": image, "label": label, "valid_hw": np.asarray(valid, dtype=np.int32),
            "counts": counts.astype(np.int64)}
