"""What goes into a prediction: image files and folders expanded into :class:`InputItem` s,
extra-band files matched to each image (the rule is in :mod:`raygym.predict`), header checks
of the band count, the ``(H, W, C)`` pixels and the georeferencing of each input."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raygym.data.io import (
    IMAGE_SUFFIXES,
    RASTER_SUFFIXES,
    image_band_count,
    is_image,
    pixel_area_m2,
    read_header,
    read_image,
    read_single_band,
)
from raygym.data.pairing import regex_key
from raygym.errors import DataError, RaygymError


@dataclass
class InputItem:
    """One image to predict: its file, its extra-band files (training order), output stem;
    ``image_bands``: the file's bands the model reads (its ``data.image_bands``, numbered
    from 1; None: every band)."""

    path: Path
    bands: list[Path]
    name: str
    image_bands: tuple[int, ...] | None = None

    def to_json(self) -> str:
        """The item as a JSON string (how it travels to a Ray actor)."""
        return json.dumps({"path": str(self.path), "name": self.name,
                           "bands": [str(b) for b in self.bands],
                           "image_bands": self.image_bands})

    @classmethod
    def from_json(cls, text: str) -> InputItem:
        """The inverse of :meth:`to_json`."""
        d = json.loads(text)
        picked = d.get("image_bands")
        return cls(Path(d["path"]), [Path(b) for b in d["bands"]], d["name"],
                   tuple(picked) if picked else None)


@dataclass(frozen=True)
class BandRule:
    """How one extra-band folder's files are paired with the images: ``image_key`` /
    ``band_key`` regexes (:func:`~raygym.data.pairing.regex_key`); ``learnt``: a naming rule
    prepare learnt from the training pairs, tried after an exact same stem (an explicit
    ``data.extra_bands[i].key`` is tried first)."""

    image_key: str | None = None
    band_key: str | None = None
    learnt: bool = False


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_output_folder(out: Path, images: Sequence[Path], extra_bands: Sequence[Path]) -> None:
    """Refuse an output folder equal to, or inside, an input or band folder (a re-run would
    read the predictions as inputs)."""
    for folder in [*images, *extra_bands]:
        if Path(folder).is_dir() and _inside(out, folder):
            raise RaygymError("output folder is inside the input folder", file=out,
                              key="--out", fix=f"write outside {folder}")


def _image_files(images: Sequence[Path]) -> list[Path]:
    """Named image files plus the images of named folders (non-recursive), in order; a file
    named twice (itself and its folder, or a shell glob beside the folder) is listed once."""
    files: list[Path] = []
    for item in images:
        p = Path(item)
        if p.is_dir():
            found = _list_images(p)
            if not found:
                raise DataError(f"folder holds no {'/'.join(IMAGE_SUFFIXES)} images", file=p)
            files += found
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"not an image raygym reads (suffix {p.suffix!r}; it reads "
                                f"{', '.join(IMAGE_SUFFIXES)})", file=p)
            files.append(p)
        else:
            raise DataError("image file or folder not found", file=p)
    once = {f.resolve(): f for f in reversed(files)}  # the first naming of each file wins
    return [f for f in files if once[f.resolve()] is f]


def collect_inputs(images: Sequence[Path], extra_bands: Sequence[Path],
                   band_rules: Sequence[BandRule] = (),
                   image_bands: Sequence[int] | None = None
                   ) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files / folders into :class:`InputItem` s and match their extra-band files.

    Folders are listed non-recursively (PNG / JPEG / TIFF only, hidden files ignored). The band
    matching rule is in the :mod:`raygym.predict` docstring (see :func:`match_band`);
    ``band_rules``: per band folder, how its files are named (none: by stem);
    ``image_bands``: the image files' bands the model reads (:attr:`InputItem.image_bands`).

    Returns:
        ``(items, skipped)``; ``skipped`` holds ``(file, reason)`` for images without band files.

    Raises:
        DataError: a missing path, a named file that is not an image, a missing band folder,
            no images at all, or a band folder where no image finds its file.
    """
    files = _image_files(images)
    band_files: list[list[Path]] = []
    for folder in extra_bands:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError("band folder not found", file=folder, key="--band",
                            fix="give one folder per extra band, in training order")
        band_files.append(_list_images(folder))
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    unmatched_in: set[int] = set()  # the band folders where an image found no file
    seen: dict[str, int] = {}
    for f in files:
        matched: list[Path] = []
        for i, candidates in enumerate(band_files):
            rule = band_rules[i] if i < len(band_rules) else BandRule()
            hit = match_band(f, candidates, rule.image_key, rule.band_key, learnt=rule.learnt)
            if hit is None:
                skipped.append((str(f), f"no matching band file in {Path(extra_bands[i])}"
                                        + _rule_text(rule)))
                unmatched_in.add(i)
                break
            matched.append(hit)
        else:
            # equal stems in different folders would overwrite each other's outputs
            n = seen.get(f.stem, 0)
            seen[f.stem] = n + 1
            name = f.stem if n == 0 else f"{f.stem}-{n + 1}"
            items.append(InputItem(path=f, bands=matched, name=name,
                                   image_bands=tuple(image_bands) if image_bands else None))
    if files and not items and len(unmatched_in) == 1:
        # every image lacks a file in one band folder: the folders are wrong (swapped with
        # the images, or another band's), not the images: one line, not a list of failures
        i = unmatched_in.pop()
        held = band_files[i]
        holds = (f"it holds {held[0].name}" + (f" and {len(held) - 1} more" if len(held) > 1
                                                else "") if held else "it holds no images")
        rule = band_rules[i] if i < len(band_rules) else BandRule()
        raise DataError(f"none of the {len(files)} images (e.g. {files[0].name}) has its band "
                        f"file in this folder{_rule_text(rule)}; {holds}",
                        file=Path(extra_bands[i]), key="--band",
                        fix="give the images first and one --band folder per extra band, in "
                        "training order")
    return items, skipped


def _rule_text(rule: BandRule) -> str:
    """How a band file is found for an image, for messages."""
    return (f" (the model's rule: a stem matching {rule.band_key})" if rule.band_key
            else " (same stem, or a stem that starts with the image's)")


def match_band(image: Path, candidates: Sequence[Path], image_key: str | None = None,
               band_key: str | None = None, *, learnt: bool = False) -> Path | None:
    """The extra-band file for ``image`` among ``candidates`` (sorted), or None.

    Rule: (1) when ``band_key`` (the training config's regex for that band folder) is given,
    the file whose key equals the image's key (``image_key`` regex, or its stem); (2) the file
    with the same stem; (3) the first file whose stem starts with the image's stem. A ``learnt``
    key (prepare's naming rule, not the user's) comes after (2): a file of the very same name
    is never passed over for a guessed one.
    """
    def by_key() -> Path | None:
        want = regex_key(image_key, image.stem)
        if want is None:
            want = image.stem
        return next((c for c in candidates if regex_key(band_key, c.stem) == want), None)

    def other(c: Path) -> bool:
        return c.resolve() != image.resolve()

    if band_key is not None and not learnt and (hit := by_key()) is not None:
        return hit
    same = next((c for c in candidates if c.stem == image.stem and other(c)), None)
    if same is not None:
        return same
    if band_key is not None and learnt and (hit := by_key()) is not None:
        return hit
    return next((c for c in candidates if c.stem.startswith(image.stem) and other(c)), None)


def image_alpha(path: Path, stack_bands: int, in_channels: int,
                image_bands: Sequence[int] | None = None) -> list[int]:
    """0-based indexes of the image file's bands that are alpha (a nodata mask, not data).

    None with ``image_bands`` (``data.image_bands``): the bands read are named, alpha or not.

    A TIFF's bands whose colour interpretation is alpha, or a PNG's RGBA alpha, but only when
    the stack of ``stack_bands`` without them has the model's ``in_channels``: GDAL marks the
    4th band of any 4-band uint8 GTiff as alpha by default, so an RGB + NIR scene for a
    4-band model keeps its NIR (and a 4-band model may have been trained on RGBA PNGs).
    """
    alpha: list[int] = []
    if image_bands:
        return alpha
    if path.suffix.lower() in RASTER_SUFFIXES:
        import rasterio
        from rasterio.enums import ColorInterp

        try:
            with _quiet_rasterio(), rasterio.open(path) as src:
                alpha = [i for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
        except Exception as err:  # noqa: BLE001 - rasterio's own error classes
            raise DataError(f"unreadable TIFF: {str(err).splitlines()[0]}", file=path) from None
    elif path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as im:
            alpha = [3] if im.mode in ("RGBA", "RGBa") else []
    return alpha if alpha and stack_bands - len(alpha) == in_channels else []


def check_band_counts(items: Sequence[InputItem], in_channels: int,
                      extra_bands: Callable[[int], str] | None = None
                      ) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Header check of every input: unreadable files are skipped, a wrong band count raises.

    Alpha bands (see :func:`image_alpha`) are masks, not data: they do not count; with
    :attr:`InputItem.image_bands` only those bands count, and each must be in the file.
    ``extra_bands(bands)``: the names of the extra bands an input of ``bands`` bands lacks
    ("" when unknown), for the fix (:meth:`raygym.predict.Predictor.extra_bands_missing`).

    Raises:
        DataError: naming the first image whose bands (its own + extra files) differ from
            ``in_channels``.
    """
    ok: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    for item in items:
        try:
            head = read_header(item.path)
            stack = head.bands + len(item.bands)
            alpha = image_alpha(item.path, stack, in_channels, item.image_bands)
        except DataError as err:
            skipped.append((str(item.path), err.message))
            continue
        own = image_band_count(head, item.image_bands)  # a band the model reads is missing
        bands = own + len(item.bands) - len(alpha)
        if bands != in_channels:
            extra = f" ({own} + {len(item.bands)} band files)" if item.bands else ""
            named = extra_bands(bands) if extra_bands is not None else ""
            # extra band files can only make up bands the model had as extra bands: a grey
            # image for an RGB model is the wrong imagery, not a missing --band
            fix = ("give --band FOLDER for each extra band, in training order"
                   + (f": {named}" if named else "")
                   if bands < in_channels and (named or extra_bands is None) else
                   f"the model was trained on {in_channels}-band images")
            raise DataError(f"has {bands} band{'s' * (bands != 1)}{extra} but the model expects "
                            f"{in_channels}",
                            file=item.path, fix=fix)
        ok.append(item)
    return ok, skipped


@contextlib.contextmanager
def _quiet_rasterio() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning (plain TIFFs are fine; a missing CRS is
    reported once per file by :func:`raygym.predict.outputs.predict_one`)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


@dataclass
class GeoInfo:
    """Georeferencing of an input: CRS (or None), affine transform, pixel area in m2."""

    crs: Any
    transform: Any
    is_raster: bool
    pixel_area_m2: float | None

    @property
    def pixel_m(self) -> float | None:
        """Pixel size in metres (a projected CRS only), as :class:`ImageHeader` gives it."""
        return math.sqrt(self.pixel_area_m2) if self.pixel_area_m2 else None


def read_geo(path: Path) -> GeoInfo:
    """CRS and transform of a TIFF (None / identity otherwise); ``pixel_area_m2`` only for a
    projected CRS (``|det(transform)|`` times the squared metres per CRS unit)."""
    if path.suffix.lower() not in RASTER_SUFFIXES:
        return GeoInfo(None, None, False, None)
    import rasterio

    try:
        with _quiet_rasterio(), rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
    except Exception as err:  # noqa: BLE001 - rasterio's own error classes
        raise DataError(f"unreadable TIFF: {str(err).splitlines()[0]}", file=path) from None
    return GeoInfo(crs, transform, True, pixel_area_m2(crs, transform))


def read_input(item: InputItem) -> np.ndarray:
    """``(H, W, C)`` image: the first file's bands then one band per extra file."""
    with _quiet_rasterio():
        parts = [read_image(item.path, bands=item.image_bands)]
        bands = [read_single_band(band) for band in item.bands]
    for band, b in zip(item.bands, bands, strict=True):
        if b.shape[:2] != parts[0].shape[:2]:
            raise DataError(f"size {b.shape[1]}x{b.shape[0]} differs from its image "
                            f"{item.path.name} ({parts[0].shape[1]}x{parts[0].shape[0]})",
                            file=band)
        parts.append(b)
    if len(parts) == 1:
        return parts[0]
    # e.g. uint8 RGB + uint16 NIR: one common dtype so no band is truncated
    dtype = np.result_type(*[p.dtype for p in parts])
    return np.concatenate([p.astype(dtype, copy=False) for p in parts], axis=2)
