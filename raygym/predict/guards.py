"""Checks made before any image is predicted: nothing a user owns is overwritten unasked,
and no image is started that cannot fit in memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from raygym.data.io import read_header
from raygym.errors import DataError, RaygymError
from raygym.predict.inputs import InputItem
from raygym.predict.options import PredictOptions
from raygym.predict.outputs import output_paths

MEMORY_SHARE = 0.8
"""Share of the memory available at start that one whole-image prediction may plan to use."""


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
    """Peak bytes of one whole-image prediction: the image (float32 once standardised) and,
    at the predicted resolution, the blended float32 probabilities, their weights and the
    resampled copies (x2 for the copy made when they are resized back)."""
    native = height * width
    scaled = int(native * scale * scale)
    return native * bands * 4 * 2 + scaled * (bands * 4 + (num_classes + 1) * 4) \
        + native * num_classes * 4 * 2


def check_memory(items: Sequence[InputItem], num_classes: int, options: PredictOptions,
                 available: int | None = None) -> None:
    """Refuse an image whose prediction cannot fit in memory (before any is started)."""
    budget = int((available if available is not None else available_memory()) * MEMORY_SHARE)
    for item in items:
        head = read_header(item.path)
        need = planned_bytes(head.height, head.width, head.bands + len(item.bands), num_classes,
                             options.scale)
        if need > budget:
            raise DataError(
                f"{head.width} x {head.height} px at scale {options.scale:g} needs about "
                f"{need / 2**30:.1f} GiB but {budget / 2**30:.1f} GiB is available",
                file=item.path, fix="use a smaller --scale, or cut the raster into tiles "
                "(e.g. gdal_retile.py) and predict those")
