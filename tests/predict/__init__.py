"""Helpers shared by the ``raygym predict`` tests (one test module per ``raygym.predict``
module). Fixtures (a tiny trained 4-band S2 model, an untrained 3-band aerial model) are in
``conftest.py``; both data sets come from ``../shared/data`` beside the repository."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).parents[2] / ".." / "shared" / "data"
S2 = ROOT / "s2_ocean_beach_4class"
AERIAL = ROOT / "usgs_coastal_aerial_3class"
S2_CLASSES = ["water", "surf", "wet_sand", "dry_land"]
NIR_KEY = r"^(.*)_ir(-\d+)$"


def need(path: Path) -> Path:
    """The data set folder ``path`` (resolved); skips the test when it is absent."""
    if not (path / "pairs.csv").is_file():
        pytest.skip(f"data set not found at {path.resolve()} (needs ../shared/data beside the "
                    "repository)")
    return path.resolve()


def s2_config(root: Path, s2: Path) -> Any:
    """A validated S2 experiment: RGB + NIR at 64 x 64, tiny gym_unet, 2 epochs."""
    from raygym.config import validate_experiment

    return validate_experiment({
        "name": "s2_predict",
        "data": {
            "images": str(s2 / "images"),
            "extra_bands": [{"folder": str(s2 / "nir"), "key": NIR_KEY}],
            "labels": str(s2 / "labels"), "classes": S2_CLASSES,
            "remap": {1: 0, 2: 1, 3: 2, 4: 3}, "unknown_labels": "ignore",
            "target_size": [64, 64], "split": {"val": 0.2, "test": 0.1},
            "augment": {"copies": 1, "hflip": True}, "prepared": str(root / "ds"),
        },
        "model": {"arch": "gym_unet", "filters": 4, "kernel": 3},
        "train": {"batch_size": 8, "max_epochs": 2, "patience": 5, "max_lr": 1e-3,
                  "rampup_epochs": 1, "precision": "fp32", "output_dir": str(root / "runs"),
                  "precise_bn_images": 16},
    })


def export_untrained(config: Any, out: Path, bands: int, seed: int,
                     train_scale: dict[str, float] | None = None,
                     train_gsd_m: dict[str, float] | None = None,
                     band_names: list[Any] | None = None,
                     image_bands: list[int] | None = None) -> Path:
    """Export a freshly initialised (seeded) model of ``config`` as an artifact at ``out``;
    ``train_scale`` / ``train_gsd_m``: what its card says prepare resized the training
    scenes by, and the ground sample distance that left; ``band_names``: how the band files
    were named after their images; ``image_bands``: the image files' bands it reads."""
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    torch.manual_seed(seed)
    model = build_model_for(config, bands, config.data.num_classes).eval()
    return export_artifact(out, model, config, in_channels=bands,
                           classes=list(config.data.classes), metrics={},
                           dataset={"path": str(config.data.prepared),
                                    **({"train_scale": train_scale} if train_scale else {}),
                                    **({"train_gsd_m": train_gsd_m} if train_gsd_m else {}),
                                    **({"band_names": band_names} if band_names else {}),
                                    **({"image_bands": image_bands} if image_bands else {})})


def s2_scene(n: int = 0) -> tuple[Path, Path]:
    """The ``n``-th S2 image (sorted) and its NIR band file."""
    s2 = need(S2)
    image = sorted((s2 / "images").glob("*.jpg"))[n]
    base, tile = image.stem.rsplit("-", 1)
    return image, s2 / "nir" / f"{base}_ir-{tile}.jpg"


def s2_stack(n: int = 0) -> np.ndarray:
    """The ``n``-th S2 scene as ``(H, W, 4)`` uint8: RGB then NIR."""
    image, nir = s2_scene(n)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    ir = np.asarray(Image.open(nir).convert("L"))[..., None]
    return np.concatenate([rgb, ir], axis=2)


def write_tiff(path: Path, hwc: np.ndarray, crs: str | None, transform: Any,
               **profile: Any) -> Path:
    """``(H, W, C)`` as a plain GTiff, georeferenced when ``crs`` / ``transform`` are given;
    ``profile`` adds creation options (``nodata``, ``tiled``, ``photometric``...)."""
    import rasterio

    kwargs: dict[str, Any] = {"transform": transform} if transform is not None else {}
    if crs is not None:
        kwargs["crs"] = crs
    with rasterio.open(path, "w", driver="GTiff", height=hwc.shape[0], width=hwc.shape[1],
                       count=hwc.shape[2], dtype=str(hwc.dtype), **kwargs, **profile) as dst:
        dst.write(np.moveaxis(hwc, -1, 0))
    return path


UTM = "EPSG:32610"
"""A projected CRS (metres) for the GeoTIFFs the tests write."""


def utm_transform(pixel: float = 2.0) -> Any:
    """A north-up transform of ``pixel``-metre pixels in :data:`UTM`."""
    from rasterio.transform import from_origin

    return from_origin(545_000.0, 4_180_000.0, pixel, pixel)


def aerial_crop(rows: int = 300, cols: int = 400) -> np.ndarray:
    """The top-left ``rows`` x ``cols`` of the first USGS aerial scene, ``(H, W, 3)`` uint8."""
    image = sorted((need(AERIAL) / "images").glob("*.jpg"))[0]
    return np.ascontiguousarray(np.asarray(Image.open(image).convert("RGB"))[:rows, :cols])


def string_console() -> Any:
    """A rich console writing into a ``StringIO`` (read it via ``console.file.getvalue()``)."""
    from rich.console import Console

    return Console(file=StringIO(), width=120)


def read_summary(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(argv: list[str]) -> int:
    """``raygym ARGV`` in this process; the exit code."""
    from raygym.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def one_error_line(err: str) -> str:
    """The CLI's error message: exactly one non-empty line, no traceback."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]
