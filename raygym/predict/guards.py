"""Checks made before any image is predicted: nothing a user owns is overwritten unasked,
no image is started that cannot fit in memory, and ``--polygons`` has its vector writer."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from raygym.data.io import RASTER_SUFFIXES, image_band_count, read_header
from raygym.errors import DataError, RaygymError
from raygym.predict.inputs import InputItem
from raygym.predict.options import PredictOptions
from raygym.predict.outputs import output_paths

MEMORY_SHARE = 0.8
"""Share of the memory available at start that one image's prediction may plan to use."""


def check_out_is_a_folder(out: Path) -> None:
    """``--out`` must be a folder (or not exist yet)."""
    if out.exists() and not out.is_dir():
        raise RaygymError("--out names an existing file, not a folder", file=out, key="--out",
                          fix="give a folder for the outputs")


def check_overwrites(items: Sequence[InputItem], options: PredictOptions) -> None:
    """Refuse outputs that would replace an input (always) or an existing file (unless
    ``options.overwrite``)."""
    inputs = {p.resolve() for item in items for p in (item.path, *item.bands)}
    planned = [p for item in items for p in output_paths(item, options).values()]
    planned.append(options.out / "summary.csv")
    for path in planned:
        if path.resolve() in inputs:
            raise RaygymError("an output would overwrite this input", file=path, key="--out",
                              fix="write the outputs to another folder")
    existing = [p for p in planned if p.exists()]
    if existing and not options.overwrite:
        raise RaygymError(f"would overwrite {len(existing)} existing output file(s), e.g. "
                          f"{existing[0].name}", file=options.out, key="--out",
                          fix="add --overwrite, or choose another --out")


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; else free physical pages)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def planned_bytes(height: int, width: int, bands: int, num_classes: int, scale: float) -> int:
    """Peak bytes of a prediction held whole in memory (PNG / JPEG input):
    the image (float32 once standardised) and, at the predicted resolution, the blended float32
    probabilities, their weights and the resampled copies (x2 for the copy made when they are
    resized back)."""
    native = height * width
    scaled = int(native * scale * scale)
    return native * bands * 4 * 2 + scaled * (bands * 4 + (num_classes + 1) * 4) \
        + native * num_classes * 4 * 2


def planned_strip_bytes(width: int, bands: int, num_classes: int, tile_rows: int,
                        scale: float = 1.0, tile_cols: int = 0) -> int:
    """Peak bytes of a windowed prediction (TIFF input, at any ``scale``): the blending
    buffers and the rows read, ``(tile_rows + FLUSH_ROWS)`` rows of the predicted width
    (float32 probabilities and weights, float64 pixels while standardising), plus the
    statistics pass's reads; at ``scale != 1`` also the native rows a window's rows are
    resampled from and a band of rows mapped back (:mod:`raygym.predict.rescale`).
    Independent of the image height; a window wider than the image (``tile_cols``) widens
    the buffers to it."""
    from raygym.predict.sources import STATS_PIXELS
    from raygym.predict.tiling import FLUSH_ROWS

    scaled = max(1, round(width * scale), tile_cols)
    rows = tile_rows + FLUSH_ROWS
    need = rows * scaled * ((num_classes + 1) * 4 * 2 + bands * (8 + 4) + 2) \
        + STATS_PIXELS * bands * 8 * 2
    if scale != 1.0:
        native_rows = math.ceil(tile_rows / scale) + 2
        # the rows read, their float32 copy, the nodata-zeroed copy, the vertical mix
        need += native_rows * width * bands * 4 * 4
        need += FLUSH_ROWS * width * (num_classes * 4 * 5 + bands)  # mapped back, mask re-read
        need += (math.ceil(FLUSH_ROWS * scale) + 2 + FLUSH_ROWS) * scaled * (num_classes * 4 + 1)
    return need


def check_memory(items: Sequence[InputItem], num_classes: int, options: PredictOptions,
                 available: int | None = None, tile_rows: int = 512,
                 scale_for: Callable[[float | None], float] | None = None,
                 window_for: Callable[[tuple[int, int]], tuple[int, int]] | None = None
                 ) -> None:
    """Refuse an image whose prediction cannot fit in memory (before any is started).

    Only what needs the whole image is limited: PNG / JPEG inputs and non-TIFF band files; a
    TIFF needs a band of rows at any scale (:func:`planned_strip_bytes`, ``tile_rows`` being
    the window height), whatever its height. ``scale_for``: an image's factor from its pixel
    size in metres (:meth:`Predictor.scale_for`); default: ``options.scale``, a number.
    ``window_for``: the window for an image of ``(H, W)`` px at that scale
    (:meth:`Predictor.window_hw`); default: ``tile_rows`` square.
    """
    from raygym.predict.rescale import scaled_size

    if scale_for is None:
        if not isinstance(options.scale, int | float):
            raise TypeError(f"check_memory needs scale_for or a number, got {options.scale!r}")
        fixed = float(options.scale)

        def scale_for(pixel_m: float | None) -> float:
            return fixed

    budget = int((available if available is not None else available_memory()) * MEMORY_SHARE)
    for item in items:
        head = read_header(item.path)
        bands = image_band_count(head, item.image_bands) + len(item.bands)  # those read
        scale = scale_for(head.pixel_m)
        rows, cols = (window_for((scaled_size(head.height, scale), scaled_size(head.width, scale)))
                      if window_for is not None else (tile_rows, tile_rows))
        if item.path.suffix.lower() in RASTER_SUFFIXES:
            need = planned_strip_bytes(head.width, bands, num_classes, rows, scale, cols)
            # a band file that is not a TIFF is decoded whole
            need += sum(head.height * head.width * 2 for b in item.bands
                        if b.suffix.lower() not in RASTER_SUFFIXES)
            fix = "cut the raster into tiles (e.g. gdal_retile.py) and predict those"
        else:
            need = planned_bytes(head.height, head.width, bands, num_classes, scale)
            fix = "convert it to a GeoTIFF (read by windows), or cut it into tiles"
        if need > budget:
            raise DataError(
                f"{head.width} x {head.height} px at scale {scale:g} needs about "
                f"{need / 2**30:.1f} GiB but {budget / 2**30:.1f} GiB is available",
                file=item.path, fix=fix)


def check_vector_writer(options: PredictOptions) -> None:
    """``--polygons`` needs pyogrio: refused before any image is predicted when it is absent."""
    if options.polygons:
        from raygym.predict.polygons import require_pyogrio

        require_pyogrio()
