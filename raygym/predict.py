"""``raygym predict``: map new imagery with an exported model (or a search's top-k ensemble).

Works from the artifact folder alone (``model.safetensors`` + ``config.yaml`` +
``model_card.json``, loaded through :func:`raygym.inference.scoring.load_model`: checksums
verified, no pickle) with plain PyTorch; Ray is only imported for ``--ray``.

Per input image ``<stem>`` (files, or folders of PNG / JPEG / TIFF / GeoTIFF, any size) the
output folder receives

- ``<stem>_label.tif`` (TIFF input: class ids 0..K-1, uint8, the input's CRS and transform kept,
  deflate-compressed cloud-optimised GeoTIFF with nearest-neighbour overviews and a colour table)
  or ``<stem>_label.png`` (PNG / JPEG input);
- ``<stem>_probs.tif`` with ``probabilities=True``: one uint8 band per class,
  ``round(255 * softmax)`` (divide by 255 for probabilities), georeferenced like the label;
- ``<stem>_overlay.png``: class colours blended over the image;

and one ``summary.csv`` row per image with the pixel count, fraction and (for projected CRSs)
area in m2 of each class (``pixels * |det(transform)| * metres_per_unit**2``).

Rules, chosen to match training:

- **Bands.** The first file gives the RGB (or 1-band) layers, each ``extra_bands`` folder one more
  band, in training order (``card.in_channels`` in total). A band file is matched to an image by
  (1) the pairing regexes of the model's ``config.yaml`` (``data.images.key`` and
  ``data.extra_bands[i].key``: equal keys pair), else (2) the same file stem, else (3) the first
  file (sorted by name) whose stem starts with the image stem. An image with no match is skipped.
- **Standardisation** is :func:`raygym.data.transforms.standardize` over the *whole* image once,
  before tiling (training standardised each whole scene), so tiles share one mean / std.
- **Size.** Images larger than the model input are predicted with a sliding window at native
  resolution (``tile`` pixels, default the model's input size; ``overlap`` fraction between
  neighbours); softmax probabilities are blended with a weight that ramps linearly from the tile
  edge over the overlap width, then normalised by the summed weights. Images smaller than a tile
  are zero-padded bottom / right (as training's ``resize_pad``) and cropped back.
- **Resolution.** Training scenes were shrunk (aspect kept) to ``data.target_size``, so a model
  trained on downscaled scenes has learnt a coarser ground-sample distance than the native one.
  ``scale`` resamples the image by that factor before prediction (``cv2`` area / linear) and the
  label back to the input size (nearest; probabilities linear), so the output always matches the
  input grid.
- **Ensembles / TTA.** ``top_k`` averages the softmax of the best k models of a search; ``tta``
  averages the identity and horizontal, vertical and both flips (each un-flipped).

Bad input: a tampered or incomplete artifact, a wrong band count or an output folder inside an
input folder raise :class:`~raygym.errors.RaygymError` (exit 2). An unreadable image (or one
without its band files) is skipped and listed at the end; the command fails (exit 1) only if
every image failed. A GeoTIFF without a CRS is written without one, with a warning.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raygym.atomic import temp_beside, write_bytes_atomic
from raygym.data.io import IMAGE_SUFFIXES, is_image, read_header, read_image, read_single_band
from raygym.data.transforms import standardize
from raygym.errors import DataError, RaygymError

_TIFF = (".tif", ".tiff")
PROB_SCALE = 255
"""Probability rasters store ``round(PROB_SCALE * p)`` as uint8."""
EXIT_ALL_FAILED = 1


# ------------------------------------------------------------------------------ models
def _rank_number(path: Path) -> int:
    m = re.match(r"^rank(\d+)(?:_|$)", path.name)
    return int(m.group(1)) if m else -1


def resolve_models(path: Path, top_k: int = 1) -> list[Path]:
    """The artifact folders that ``path`` stands for, best first.

    Args:
        path: a model artifact folder (holds ``model_card.json``), or a search results folder
            holding ``best/rank<N>_<trial>/`` artifacts (or that ``best`` folder itself).
        top_k: how many of the best models to return (>= 1).

    Returns:
        ``top_k`` artifact folders, sorted by rank number (rank1 first).

    Raises:
        RaygymError: no artifact found, ``top_k < 1``, or fewer than ``top_k`` models available.
    """
    path = Path(path)
    if top_k < 1:
        raise RaygymError(f"--top-k must be at least 1 (got {top_k})", key="--top-k")
    if not path.exists():
        raise DataError("model folder not found", file=path,
                        fix="give a model artifact (runs/<name>/best) or a search results folder")
    if (path / "model_card.json").is_file():
        if top_k > 1:
            raise RaygymError(f"--top-k {top_k} needs a search results folder, but this is a "
                              "single model artifact", file=path, key="--top-k",
                              fix="use --top-k 1, or give results/<experiment>")
        return [path]
    for folder in (path / "best", path):
        if not folder.is_dir():
            continue
        ranked = sorted((p for p in folder.iterdir() if p.is_dir() and _rank_number(p) >= 0),
                        key=lambda p: (_rank_number(p), p.name))
        if ranked:
            if top_k > len(ranked):
                raise RaygymError(f"--top-k {top_k} but the search exported only "
                                  f"{len(ranked)} models", file=folder, key="--top-k",
                                  fix=f"use --top-k {len(ranked)} or less")
            return ranked[:top_k]
    raise DataError("neither a model artifact (no model_card.json) nor a search results folder "
                    "(no best/rank*_*/)", file=path,
                    fix="give runs/<name>/best or results/<experiment>")


class Predictor:
    """One model or an ensemble, ready to predict whole images of any size.

    All models must share bands, classes and input size (true for the top-k of one search).
    ``forward`` maps standardized ``(B, C, H, W)`` tiles to averaged softmax ``(B, K, H, W)``.
    """

    def __init__(self, model_dirs: Sequence[Path], *, device: str | torch.device = "auto",
                 precision: str = "fp32") -> None:
        from raygym.inference.scoring import load_model
        from raygym.models import min_input_size, requires_multiple_of

        if not model_dirs:
            raise RaygymError("no model to predict with")
        self.model_dirs = [Path(p) for p in model_dirs]
        self.models = [load_model(p, device=device, precision=precision)
                       for p in self.model_dirs]
        self.device = self.models[0].device
        self.precision = precision
        self.card = self.models[0].card
        self.config = self.models[0].config
        for path, loaded in zip(self.model_dirs[1:], self.models[1:], strict=True):
            card = loaded.card
            if (card.classes, card.in_channels) != (self.card.classes, self.card.in_channels):
                raise DataError(
                    f"cannot ensemble: classes {card.classes} / {card.in_channels} bands differ "
                    f"from {self.model_dirs[0].name} ({self.card.classes} / "
                    f"{self.card.in_channels} bands)", file=path)
        cards = [m.card for m in self.models]
        self.multiple = max(requires_multiple_of(c.arch, **c.model_params) for c in cards)
        self.min_size = max(min_input_size(c.arch, **c.model_params) for c in cards)

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def in_channels(self) -> int:
        return self.card.in_channels

    @property
    def input_hw(self) -> tuple[int, int]:
        """The model's training input size ``(H, W)`` in pixels."""
        h, w = self.card.target_size
        return int(h), int(w)

    def band_keys(self) -> tuple[str | None, list[str | None]]:
        """Pairing regexes of the training config: (image key, one per extra band)."""
        data = self.config.data
        image_key = data.images.key if data.images is not None else None
        return image_key, [b.key for b in data.extra_bands]

    def tile_hw(self, tile: int | None) -> tuple[int, int]:
        """Validated sliding-window size ``(H, W)``: ``tile`` square, or the model input size."""
        if tile is None:
            return self.input_hw
        if tile < self.min_size or tile % self.multiple:
            ok = max(self.min_size, math.ceil(tile / self.multiple) * self.multiple)
            raise RaygymError(f"tile {tile} must be a multiple of {self.multiple} and at least "
                              f"{self.min_size} for model '{self.card.arch}'", key="--tile",
                              fix=f"use --tile {ok}")
        return tile, tile

    @torch.no_grad()
    def forward(self, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Mean softmax over models (and flips with ``tta``).

        Args:
            x: ``(B, C, H, W)`` float32 standardized tiles (any device).
            tta: also average horizontal, vertical and both flips.

        Returns:
            ``(B, K, H, W)`` float32 probabilities on the CPU (sum 1 over K).
        """
        from raygym.inference.scoring import ensemble_softmax

        return ensemble_softmax(self.models, x, tta=tta)

    def predict(self, image: np.ndarray, *, tile: int | None = None, overlap: float = 0.25,
                tta: bool = False, scale: float = 1.0, batch_size: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
        """Predict one whole image.

        Args:
            image: ``(H, W, C)`` raw image (uint8 / uint16 / float), ``C == in_channels``.
            tile: sliding-window size in pixels (default: the model's input size).
            overlap: fraction of a tile shared by neighbouring windows, ``0 <= overlap < 1``.
            tta: flip test-time augmentation.
            scale: resample factor applied before prediction (0.5 = half the pixels per side).
            batch_size: tiles per forward pass.

        Returns:
            ``(labels (H, W) uint8 class ids, probs (K, H, W) float32)`` on the input grid.
        """
        if image.ndim != 3 or image.shape[2] != self.in_channels:
            raise DataError(f"image has {image.shape[-1] if image.ndim == 3 else 1} bands but "
                            f"the model expects {self.in_channels}")
        return predict_image(lambda x: self.forward(x, tta), image, tile_hw=self.tile_hw(tile),
                             overlap=overlap, scale=scale, batch_size=batch_size,
                             num_classes=self.num_classes)


# ------------------------------------------------------------------------ sliding window
def window_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Top (or left) offsets of the windows covering ``length`` pixels with ``tile``-pixel
    windows overlapping by about ``overlap * tile``; the last window ends at ``length``.
    ``[0]`` when ``length <= tile`` (the image is padded instead)."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def blend_weights(tile_hw: tuple[int, int], overlap: float) -> np.ndarray:
    """``(tH, tW)`` float32 blending window: 1 in the middle, falling linearly towards the tile
    edges over ``overlap * tile`` pixels (to ``0.5 / ramp`` at the edge pixel, never 0, so image
    borders covered by a single window are still defined). All ones when ``overlap == 0``."""
    def ramp(n: int) -> np.ndarray:
        width = overlap * n
        if width < 1.0:
            return np.ones(n, np.float32)
        i = np.arange(n, dtype=np.float64) + 0.5
        return np.minimum(1.0, np.minimum(i, n - i) / width).astype(np.float32)

    return np.outer(ramp(tile_hw[0]), ramp(tile_hw[1]))


def sliding_window_probs(forward: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray,
                         *, tile_hw: tuple[int, int], overlap: float, num_classes: int,
                         batch_size: int = 8) -> np.ndarray:
    """Blended class probabilities of a standardized image of any size.

    Args:
        forward: ``(B, C, tH, tW)`` float32 tensor -> ``(B, K, tH, tW)`` probabilities.
        image: ``(H, W, C)`` float32, already standardized (padding value 0 = the mean).
        tile_hw: window size ``(tH, tW)``; an image smaller than it is zero-padded bottom/right.
        overlap: ``0 <= overlap < 1``, fraction of a window shared with its neighbour.
        num_classes: K.
        batch_size: windows per ``forward`` call.

    Returns:
        ``(K, H, W)`` float32 probabilities (each pixel's weighted mean over its windows).
    """
    if not 0.0 <= overlap < 1.0:
        raise RaygymError(f"overlap must be in [0, 1) (got {overlap})", key="--overlap")
    h, w, c = image.shape
    th, tw = tile_hw
    ph, pw = max(h, th), max(w, tw)
    if (ph, pw) != (h, w):
        padded = np.zeros((ph, pw, c), np.float32)
        padded[:h, :w] = image
        image = padded
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    weight = blend_weights((th, tw), overlap)
    acc = np.zeros((num_classes, ph, pw), np.float32)
    norm = np.zeros((ph, pw), np.float32)
    windows = [(y, x) for y in window_starts(ph, th, overlap) for x in window_starts(pw, tw, overlap)]
    for start in range(0, len(windows), batch_size):
        part = windows[start:start + batch_size]
        x = torch.from_numpy(np.stack([chw[:, y:y + th, x0:x0 + tw] for y, x0 in part]))
        probs = forward(x).numpy()
        for (y, x0), p in zip(part, probs, strict=True):
            acc[:, y:y + th, x0:x0 + tw] += p * weight
            norm[y:y + th, x0:x0 + tw] += weight
    acc /= norm
    return acc[:, :h, :w]


def _resize_chw(arr: np.ndarray, hw: tuple[int, int], *, linear: bool) -> np.ndarray:
    """Resize ``(K, H, W)`` (probabilities) or ``(H, W, C)`` images via transforms' cv2 helper."""
    import cv2

    from raygym.data.transforms import _resize_image  # the same band-chunked cv2 resize

    hwc = np.ascontiguousarray(arr.transpose(1, 2, 0))
    interp = cv2.INTER_LINEAR if linear else cv2.INTER_AREA
    return np.ascontiguousarray(_resize_image(hwc, hw, interp).transpose(2, 0, 1))


def predict_image(forward: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray, *,
                  tile_hw: tuple[int, int], overlap: float, num_classes: int,
                  scale: float = 1.0, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Standardize once, (optionally) resample, slide, blend, and map back to the input grid.

    Args:
        forward: ``(B, C, tH, tW)`` -> ``(B, K, tH, tW)`` probabilities (see :class:`Predictor`).
        image: ``(H, W, C)`` raw image.
        tile_hw: window size; overlap: window overlap fraction; num_classes: K.
        scale: resample factor before prediction (1 = native resolution).
        batch_size: windows per forward call.

    Returns:
        ``(labels (H, W) uint8, probs (K, H, W) float32)``. With ``scale != 1`` the labels are
        the argmax at the model's resolution resampled nearest to ``(H, W)`` and the
        probabilities are resampled linearly.
    """
    import cv2

    from raygym.data.transforms import _resize_image, _resize_nearest

    if not scale > 0:
        raise RaygymError(f"scale must be > 0 (got {scale})", key="--scale")
    h, w = image.shape[:2]
    work = image
    if scale != 1.0:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
        work = _resize_image(image, (sh, sw), interp)
    probs = sliding_window_probs(forward, standardize(work), tile_hw=tile_hw, overlap=overlap,
                                 num_classes=num_classes, batch_size=batch_size)
    labels = probs.argmax(axis=0).astype(np.uint8)
    if scale != 1.0:
        labels = _resize_nearest(labels, (h, w))
        probs = _resize_chw(probs, (h, w), linear=True)
    return labels, probs


# -------------------------------------------------------------------------------- inputs
@dataclass
class InputItem:
    """One image to predict: its file, its extra-band files (training order), output stem."""

    path: Path
    bands: list[Path]
    name: str


@dataclass
class PredictResult:
    """What a prediction run produced. ``rows``: one summary dict per predicted image."""

    out: Path
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    warnings: list[str]
    classes: list[str]
    seconds: float
    megapixels: float
    summary_csv: Path | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_ALL_FAILED if self.skipped and not self.rows else 0


def _key_of(stem: str, pattern: str | None) -> str | None:
    if pattern is None:
        return stem
    m = re.match(pattern, stem)
    if m is None:
        return None
    return "".join(g for g in m.groups() if g) if m.groups() else m.group(0)


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


def collect_inputs(images: Sequence[Path], extra_bands: Sequence[Path],
                   band_keys: tuple[str | None, list[str | None]] = (None, [])
                   ) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files / folders into :class:`InputItem` s and match their extra-band files.

    Folders are listed non-recursively (PNG / JPEG / TIFF only, hidden files ignored). See the
    module docstring for the band matching rule.

    Returns:
        ``(items, skipped)``; ``skipped`` holds ``(file, reason)`` for images without band files.

    Raises:
        DataError: a missing path, a named file that is not an image, a missing band folder, or
            no images at all.
    """
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
                raise DataError(f"not a PNG / JPEG / TIFF image (suffix {p.suffix!r})", file=p)
            files.append(p)
        else:
            raise DataError("image file or folder not found", file=p)
    band_files: list[list[Path]] = []
    for folder in extra_bands:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError("band folder not found", file=folder, key="--band",
                            fix="give one folder per extra band, in training order")
        band_files.append(_list_images(folder))
    image_key, keys = band_keys
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for f in files:
        matched: list[Path] = []
        for i, candidates in enumerate(band_files):
            pattern = keys[i] if i < len(keys) else None
            hit = match_band(f, candidates, image_key, pattern)
            if hit is None:
                skipped.append((str(f), f"no matching band file in {Path(extra_bands[i])}"))
                break
            matched.append(hit)
        else:
            n = seen.get(f.stem, 0)
            seen[f.stem] = n + 1
            name = f.stem if n == 0 else f"{f.stem}-{n + 1}"
            items.append(InputItem(path=f, bands=matched, name=name))
    return items, skipped


def match_band(image: Path, candidates: Sequence[Path], image_key: str | None = None,
               band_key: str | None = None) -> Path | None:
    """The extra-band file for ``image`` among ``candidates`` (sorted), or None.

    Rule: (1) when ``band_key`` (the training config's regex for that band folder) is given,
    the file whose key equals the image's key (``image_key`` regex, or its stem); (2) the file
    with the same stem; (3) the first file whose stem starts with the image's stem.
    """
    if band_key is not None:
        want = _key_of(image.stem, image_key)
        if want is None:
            want = image.stem
        for c in candidates:
            if _key_of(c.stem, band_key) == want:
                return c
    for c in candidates:
        if c.stem == image.stem and c.resolve() != image.resolve():
            return c
    for c in candidates:
        if c.stem.startswith(image.stem) and c.resolve() != image.resolve():
            return c
    return None


def check_band_counts(items: Sequence[InputItem], in_channels: int
                      ) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Header check of every input: unreadable files are skipped, a wrong band count raises.

    Raises:
        DataError: naming the first image whose bands (its own + extra files) differ from
            ``in_channels``.
    """
    ok: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    for item in items:
        try:
            head = read_header(item.path)
            bands = head.bands + len(item.bands)
        except DataError as err:
            skipped.append((str(item.path), err.message))
            continue
        if bands != in_channels:
            extra = f" ({head.bands} + {len(item.bands)} band files)" if item.bands else ""
            fix = ("give --band FOLDER for each extra band, in training order"
                   if bands < in_channels else
                   f"the model was trained on {in_channels}-band images")
            raise DataError(f"has {bands} bands{extra} but the model expects {in_channels}",
                            file=item.path, fix=fix)
        ok.append(item)
    return ok, skipped


@contextlib.contextmanager
def _quiet_rasterio() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning (plain TIFFs are fine; a missing CRS is
    reported once per file by :func:`predict_one`)."""
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
    is_tiff: bool
    pixel_area_m2: float | None


def read_geo(path: Path) -> GeoInfo:
    """CRS and transform of a TIFF (None / identity otherwise); ``pixel_area_m2`` only for a
    projected CRS (``|det(transform)|`` times the squared metres per CRS unit)."""
    if path.suffix.lower() not in _TIFF:
        return GeoInfo(None, None, False, None)
    import rasterio

    try:
        with _quiet_rasterio(), rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
    except Exception as err:  # noqa: BLE001 - rasterio's own error classes
        raise DataError(f"unreadable TIFF: {str(err).splitlines()[0]}", file=path) from None
    area = None
    if crs is not None and crs.is_projected:
        try:
            unit = float(crs.linear_units_factor[1])
        except Exception:  # noqa: BLE001 - a CRS without linear units
            unit = None
        if unit:
            area = abs(transform.a * transform.e - transform.b * transform.d) * unit * unit
    return GeoInfo(crs, transform, True, area)


def read_input(item: InputItem) -> np.ndarray:
    """``(H, W, C)`` image: the first file's bands then one band per extra file."""
    with _quiet_rasterio():
        parts = [read_image(item.path)]
        bands = [read_single_band(band) for band in item.bands]
    for band, b in zip(item.bands, bands, strict=True):
        if b.shape[:2] != parts[0].shape[:2]:
            raise DataError(f"size {b.shape[1]}x{b.shape[0]} differs from its image "
                            f"{item.path.name} ({parts[0].shape[1]}x{parts[0].shape[0]})",
                            file=band)
        parts.append(b)
    if len(parts) == 1:
        return parts[0]
    dtype = np.result_type(*[p.dtype for p in parts])
    return np.concatenate([p.astype(dtype, copy=False) for p in parts], axis=2)


# ------------------------------------------------------------------------------- outputs


def write_png(path: Path, array: np.ndarray) -> Path:
    """``(H, W)`` or ``(H, W, 3)`` uint8 -> PNG, atomically."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=False, compress_level=6)
    return write_bytes_atomic(path, buf.getvalue())


def _cog_available() -> bool:
    import rasterio

    with rasterio.Env() as env:
        return "COG" in env.drivers()


def write_geotiff(path: Path, bands: np.ndarray, *, crs: Any, transform: Any,
                  descriptions: Sequence[str] = (), colormap: dict[int, tuple[int, ...]] | None
                  = None, tags: dict[str, str] | None = None, resampling: str = "nearest"
                  ) -> Path:
    """Write ``(N, H, W)`` uint8 bands as a deflate-compressed, tiled, cloud-optimised GeoTIFF.

    GDAL's COG driver when rasterio's GDAL has it (overviews built with ``resampling``), else a
    tiled GTiff with internal overviews. ``crs`` / ``transform`` may be None (not georeferenced).
    Written to a temp file and renamed.
    """
    import warnings

    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning

    n, h, w = bands.shape
    profile: dict[str, Any] = {"height": h, "width": w, "count": n, "dtype": "uint8",
                               "compress": "deflate"}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None and not transform.is_identity:
        profile["transform"] = transform
    cog = _cog_available()
    if cog:
        profile.update(driver="COG", blocksize=256, overview_resampling=resampling,
                       bigtiff="IF_SAFER")
    else:
        profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
    tmp = temp_beside(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(bands)
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
                if colormap:
                    dst.write_colormap(1, colormap)
                if tags:
                    dst.update_tags(**tags)
                if not cog:
                    factors = [f for f in (2, 4, 8, 16, 32) if min(h, w) // f >= 128]
                    if factors:
                        dst.build_overviews(factors, getattr(Resampling, resampling))
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _class_colours(k: int) -> np.ndarray:
    from raygym.data.preview import class_colours

    return class_colours(k)


@dataclass(frozen=True)
class PredictOptions:
    """Everything that decides one image's outputs (shipped to Ray actors as is)."""

    out: Path
    tile: int | None = None
    overlap: float = 0.25
    tta: bool = False
    scale: float = 1.0
    probabilities: bool = False
    overlay: bool = True
    batch_size: int = 8


def predict_one(predictor: Predictor, item: InputItem, options: PredictOptions
                ) -> dict[str, Any]:
    """Predict one input and write its outputs; returns its ``summary.csv`` row.

    The row: ``image``, ``label``, ``height``, ``width``, ``crs``, ``pixel_area_m2``,
    ``warning``, then per class ``<name>_pixels``, ``<name>_fraction`` and ``<name>_m2``
    (empty when not georeferenced in a projected CRS).

    Raises:
        DataError: the image (or a band file) cannot be read or has the wrong band count.
    """
    image = read_input(item)
    if image.shape[2] != predictor.in_channels:
        raise DataError(f"has {image.shape[2]} bands but the model expects "
                        f"{predictor.in_channels}", file=item.path)
    geo = read_geo(item.path)
    labels, probs = predictor.predict(image, tile=options.tile, overlap=options.overlap,
                                      tta=options.tta, scale=options.scale,
                                      batch_size=options.batch_size)
    k = predictor.num_classes
    classes = predictor.classes
    out = options.out
    warning = ""
    written: list[str] = []
    if geo.is_tiff:
        if geo.crs is None:
            warning = "GeoTIFF has no CRS: outputs written without georeferencing"
        colours = _class_colours(k)
        label_path = write_geotiff(
            out / f"{item.name}_label.tif", labels[None], crs=geo.crs, transform=geo.transform,
            descriptions=["class id"],
            colormap={i: (*map(int, colours[i]), 255) for i in range(k)},
            tags={"classes": json.dumps(classes), "source": str(item.path)})
    else:
        label_path = write_png(out / f"{item.name}_label.png", labels)
    written.append(label_path.name)
    if options.probabilities:
        q = np.rint(np.clip(probs, 0.0, 1.0) * PROB_SCALE).astype(np.uint8)
        p = write_geotiff(out / f"{item.name}_probs.tif", q, crs=geo.crs, transform=geo.transform,
                          descriptions=classes, resampling="average",
                          tags={"classes": json.dumps(classes), "scale": f"1/{PROB_SCALE}",
                                "source": str(item.path)})
        written.append(p.name)
    if options.overlay:
        from raygym.data.preview import overlay

        written.append(write_png(out / f"{item.name}_overlay.png",
                                 overlay(image, labels, k)).name)
    counts = np.bincount(labels.ravel(), minlength=k)[:k]
    total = max(int(counts.sum()), 1)
    row: dict[str, Any] = {
        "image": str(item.path), "label": label_path.name,
        "height": int(labels.shape[0]), "width": int(labels.shape[1]),
        "crs": geo.crs.to_string() if geo.crs is not None else "",
        "pixel_area_m2": geo.pixel_area_m2 if geo.pixel_area_m2 is not None else "",
        "warning": warning,
    }
    for name, n in zip(classes, counts, strict=True):
        row[f"{name}_pixels"] = int(n)
        row[f"{name}_fraction"] = round(int(n) / total, 6)
        row[f"{name}_m2"] = (float(n) * geo.pixel_area_m2 if geo.pixel_area_m2 is not None
                             else "")
    row["_files"] = written
    return row


def write_summary(path: Path, rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> Path:
    """``summary.csv``, one row per image (see :func:`predict_one`), written atomically."""
    columns = ["image", "label", "height", "width", "crs", "pixel_area_m2"]
    columns += [f"{c}_{s}" for c in classes for s in ("pixels", "fraction", "m2")]
    columns.append("warning")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return write_bytes_atomic(path, buf.getvalue().encode())


# ---------------------------------------------------------------------------- Ray path
class PredictActor:
    """Ray Data actor: loads the models once, then predicts and writes one file per row.

    Rows in: ``i`` (int), ``item`` (JSON of an :class:`InputItem`). Rows out: ``i``, ``row``
    (JSON summary row, "" on failure), ``error`` ("" on success). Outputs are written by the
    actor, so ``out`` must be visible to every node (one machine, or shared storage).
    """

    def __init__(self, model_dirs: list[str], options: PredictOptions, threads: int = 1,
                 precision: str = "fp32") -> None:
        torch.set_num_threads(max(1, threads))
        self.predictor = Predictor([Path(p) for p in model_dirs], device="cpu",
                                   precision=precision)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, errors = [], []
        for raw in batch["item"]:
            d = json.loads(str(raw))
            item = InputItem(Path(d["path"]), [Path(b) for b in d["bands"]], d["name"])
            try:
                rows.append(json.dumps(predict_one(self.predictor, item, self.options)))
                errors.append("")
            except DataError as err:
                rows.append("")
                errors.append(err.message)
        return {"i": np.asarray(batch["i"]), "row": np.asarray(rows, dtype=object),
                "error": np.asarray(errors, dtype=object)}


def _run_ray(model_dirs: Sequence[Path], items: Sequence[InputItem], options: PredictOptions,
             precision: str, actors: int | None) -> list[tuple[int, dict[str, Any] | None, str]]:
    import ray

    from raygym.ray_runtime import cluster_cpus, ensure_ray

    ensure_ray(progress_bars=True)
    n = actors or max(1, int(cluster_cpus()))
    n = max(1, min(n, len(items)))
    records = [{"i": i, "item": json.dumps({"path": str(it.path), "name": it.name,
                                            "bands": [str(b) for b in it.bands]})}
               for i, it in enumerate(items)]
    # small blocks spread the files over the actors; capped so thousands of files do not
    # become thousands of scheduling units
    ds = ray.data.from_items(records, override_num_blocks=min(len(records), n * 16))
    out = ds.map_batches(PredictActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=n),
                         num_cpus=1, batch_format="numpy",
                         fn_constructor_kwargs={"model_dirs": [str(p) for p in model_dirs],
                                                "options": options, "threads": 1,
                                                "precision": precision})
    results = []
    for r in out.take_all():
        row = json.loads(r["row"]) if r["row"] else None
        results.append((int(r["i"]), row, str(r["error"])))
    return sorted(results, key=lambda t: t[0])


# -------------------------------------------------------------------------- entry points
def predict_files(model: Path | Sequence[Path], images: Sequence[Path], *, out: Path,
                  top_k: int = 1, tta: bool = False, tile: int | None = None,
                  overlap: float = 0.25, probabilities: bool = False,
                  extra_bands: Sequence[Path] = (), scale: float = 1.0, use_ray: bool = False,
                  overlay: bool = True, device: str = "auto", precision: str = "fp32",
                  batch_size: int = 8, ray_actors: int | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> PredictResult:
    """Predict every image; write rasters, overlays and ``summary.csv`` into ``out``.

    Args:
        model: an artifact / results folder (see :func:`resolve_models`) or a list of artifacts.
        images: files and / or folders.
        out: output folder (created; must not lie inside an input folder).
        top_k, tta, tile, overlap, probabilities, extra_bands, scale: see the module docstring.
        use_ray: run as a Ray Data batch job (one CPU actor per core, models loaded once each).
        overlay: also write ``<stem>_overlay.png``.
        device: ``auto`` | ``cpu`` | ``cuda[:n]`` for the plain path (Ray actors use the CPU).
        precision: ``fp32`` (default, deterministic) or ``bf16-mixed`` / ``fp16-mixed``.
        batch_size: sliding windows per forward pass.
        ray_actors: actors for ``use_ray`` (default: one per cluster CPU).
        progress: ``progress(done, total, file)`` after each image (plain path).

    Returns:
        A :class:`PredictResult`; its ``exit_code`` is 1 when every image failed.
    """
    started = time.perf_counter()
    model_dirs = (list(model) if isinstance(model, list | tuple)
                  else resolve_models(Path(model), top_k))
    out = Path(out)
    check_output_folder(out, images, extra_bands)
    if not 0.0 <= overlap < 1.0:
        raise RaygymError(f"overlap must be in [0, 1) (got {overlap})", key="--overlap")
    if not scale > 0:
        raise RaygymError(f"scale must be > 0 (got {scale})", key="--scale")
    predictor = Predictor(model_dirs, device="cpu" if use_ray else device, precision=precision)
    predictor.tile_hw(tile)  # validate before any work
    image_key, keys = predictor.band_keys()
    items, skipped = collect_inputs(images, extra_bands, (image_key, keys))
    items, unreadable = check_band_counts(items, predictor.in_channels)
    skipped += unreadable
    out.mkdir(parents=True, exist_ok=True)
    options = PredictOptions(out=out, tile=tile, overlap=overlap, tta=tta, scale=scale,
                             probabilities=probabilities, overlay=overlay, batch_size=batch_size)
    rows: list[dict[str, Any]] = []
    if use_ray and items:
        del predictor  # the actors load their own copies
        for i, row, error in _run_ray(model_dirs, items, options, precision, ray_actors):
            if row is None:
                skipped.append((str(items[i].path), error))
            else:
                rows.append(row)
    else:
        if progress is not None:
            progress(0, len(items), "")
        for n, item in enumerate(items, start=1):
            try:
                rows.append(predict_one(predictor, item, options))
            except DataError as err:
                skipped.append((str(item.path), err.message))
            if progress is not None:
                progress(n, len(items), item.path.name)
    from raygym.inference.artifact import read_model_card

    classes = list(read_model_card(model_dirs[0]).classes)
    files = [out / f for r in rows for f in r.pop("_files", [])]
    warnings = [f"{r['image']}: {r['warning']}" for r in rows if r.get("warning")]
    summary = write_summary(out / "summary.csv", rows, classes) if rows else None
    mpx = sum(int(r["height"]) * int(r["width"]) for r in rows) / 1e6
    return PredictResult(out=out, rows=rows, skipped=skipped, warnings=warnings,
                         classes=classes, seconds=time.perf_counter() - started,
                         megapixels=mpx, summary_csv=summary, files=files)


def predict_command(model: Path, images: list[Path], *, out: Path, top_k: int, tta: bool,
                    tile: int | None, overlap: float, probabilities: bool,
                    extra_bands: list[Path], use_ray: bool, console: Any,
                    scale: float = 1.0) -> int:
    """``raygym predict``: run :func:`predict_files` with a progress bar and print a summary.

    Returns the exit code: 0, or 1 when every image failed (skipped files are listed).
    """
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    if use_ray:
        result = predict_files(model, images, out=out, top_k=top_k, tta=tta, tile=tile,
                               overlap=overlap, probabilities=probabilities,
                               extra_bands=extra_bands, scale=scale, use_ray=True)
    else:
        # started by the first callback, i.e. only once the inputs have passed every check
        bar = Progress(TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[file]}"), TimeElapsedColumn(),
                       console=console, transient=False)
        task = bar.add_task("images", total=None, file="", start=False)

        def tick(done: int, total: int, name: str) -> None:
            if not bar.live.is_started:
                bar.start()
                bar.start_task(task)
            bar.update(task, completed=done, total=total, file=escape(name))

        try:
            result = predict_files(model, images, out=out, top_k=top_k, tta=tta, tile=tile,
                                   overlap=overlap, probabilities=probabilities,
                                   extra_bands=extra_bands, scale=scale, use_ray=False,
                                   progress=tick)
        finally:
            if bar.live.is_started:
                bar.stop()
    print_predict_summary(result, console)
    return result.exit_code


def print_predict_summary(result: PredictResult, console: Any) -> None:
    """A rich table of class fractions (all images together) plus warnings and skipped files."""
    from rich.markup import escape
    from rich.table import Table

    if result.rows:
        table = Table(title=f"{len(result.rows)} images, {result.megapixels:.2f} Mpx in "
                            f"{result.seconds:.1f} s")
        table.add_column("class")
        table.add_column("pixels", justify="right")
        table.add_column("fraction", justify="right")
        table.add_column("area m2", justify="right")
        total = sum(int(r[f"{c}_pixels"]) for r in result.rows for c in result.classes) or 1
        for c in result.classes:
            px = sum(int(r[f"{c}_pixels"]) for r in result.rows)
            areas = [r[f"{c}_m2"] for r in result.rows if r[f"{c}_m2"] != ""]
            table.add_row(c, f"{px:,}", f"{px / total:.3f}",
                          f"{sum(areas):,.0f}" if areas else "-")
        console.print(table)
        console.print(f"outputs: [bold]{escape(str(result.out))}[/]   summary: "
                      f"{escape(str(result.summary_csv))}")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if result.skipped:
        what = "all images failed" if not result.rows else f"skipped {len(result.skipped)} files"
        console.print(f"[yellow]warning:[/] {what}:")
        for path, reason in result.skipped:
            console.print(f"  {escape(path)}: {escape(reason)}")

