"""A small synthetic coastal dataset for demos, tutorials and end-to-end tests.

Each scene is a procedurally drawn stretch of coast with Segmentation Gym's Landsat case-study
classes: 0 water, 1 white water (surf), 2 sand, 3 other (vegetation, soil, urban). A wavy
shoreline crosses the scene at a random angle; surf lines it on the water side, a sand strip on
the land side. An RGB image and a separate NIR band are written, named so that pairing them
needs a rule (``scene_007.png`` / ``scene_007_nir.png``) or the ``pairs.csv`` manifest, as with
real multi-band data. Everything is drawn with vectorised numpy and is seeded: the same seed
gives byte-identical files.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from raygym.errors import DataError

CLASS_NAMES: list[str] = ["water", "whitewater", "sand", "other"]
WATER, WHITEWATER, SAND, OTHER = range(4)


@dataclass(frozen=True)
class DemoInfo:
    """What :func:`write_demo_data` wrote.

    Attributes:
        out_dir: dataset root; ``pairs.csv`` paths are relative to it.
        n_scenes: number of scenes (image/NIR/label triples).
        class_names: class id -> name.
        bands: bands per scene (RGB + NIR = 4).
        size_hw: scene size (height, width) in pixels.
        seed: the seed the scenes were drawn from.
    """

    out_dir: Path
    n_scenes: int
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    bands: int = 4
    size_hw: tuple[int, int] = (128, 192)
    seed: int = 0

    @property
    def pairs_csv(self) -> Path:
        """The manifest: columns ``image, nir, label``."""
        return self.out_dir / "pairs.csv"


def _smooth_noise(rng: np.random.Generator, hw: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth random field in about [-1, 1], feature size ~``cell`` pixels, shape ``hw``.

    A coarse Gaussian grid upsampled bicubically: cheap, vectorised, seeded by ``rng``.
    """
    h, w = hw
    gh, gw = max(2, int(np.ceil(h / cell)) + 2), max(2, int(np.ceil(w / cell)) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(coarse, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[:h, :w] / 1.5, -1.0, 1.0)


def _wave(rng: np.random.Generator, t: np.ndarray, n: int, amp: tuple[float, float],
          period: tuple[float, float]) -> np.ndarray:
    """Sum of ``n`` random sinusoids along coordinate ``t`` (pixels); amplitudes in pixels."""
    out = np.zeros_like(t)
    for _ in range(n):  # a handful of whole-array terms, not a per-pixel loop
        a = rng.uniform(*amp)
        p = rng.uniform(*period)
        out += a * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi))
    return out


def _draw_scene(rng: np.random.Generator, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: ``(rgb (H, W, 3) uint8, nir (H, W) uint8, label (H, W) uint8 in 0..3)``."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # Shoreline: a line through a point near the centre, at a random angle; `d` is the signed
    # distance across shore (negative = sea), `t` the coordinate along shore.
    theta = rng.uniform(0, 2 * np.pi)
    nx, ny = np.cos(theta), np.sin(theta)
    cy = h * rng.uniform(0.35, 0.65)
    cx = w * rng.uniform(0.35, 0.65)
    t = -(xx - cx) * ny + (yy - cy) * nx
    scale = min(h, w)
    d = (xx - cx) * nx + (yy - cy) * ny
    d = d + _wave(rng, t, 3, (0.01 * scale, 0.06 * scale), (0.3 * scale, 1.5 * scale))
    d = d + 3.0 * _smooth_noise(rng, hw, 12)

    # Surf width and sand width vary along the shore, as with changing breaker conditions.
    surf_w = rng.uniform(3, 12) * (1 + 0.5 * _wave(rng, t, 2, (0.3, 0.8), (40, 160)) / 1.1)
    surf_w = np.maximum(surf_w, 2.0)
    sand_w = rng.uniform(8, 24) * (1 + 0.4 * _wave(rng, t, 2, (0.3, 0.8), (50, 200)) / 1.1)
    sand_w = np.maximum(sand_w, 3.0)

    label = np.full(hw, OTHER, dtype=np.uint8)
    label[d < sand_w] = SAND
    label[d < 0] = WHITEWATER
    label[d < -surf_w] = WATER
    # An outer breaker line over a sand bar, broken into segments: whitewater not glued to the beach.
    bar_off = rng.uniform(15, 35)
    bar = (np.abs(d + surf_w + bar_off) < rng.uniform(1.0, 2.5)) & (_smooth_noise(rng, hw, 10) > 0.1)
    label[bar & (d < -surf_w)] = WHITEWATER

    # Land cover inside "other": vegetation / bare soil patches and a few grey urban blocks.
    land_kind = _smooth_noise(rng, hw, 24)  # > 0 vegetation, < 0 soil
    urban = np.zeros(hw, dtype=bool)
    for _ in range(rng.integers(0, 5)):  # a few rectangles, each one whole-array op
        bh, bw = rng.integers(6, 20), rng.integers(6, 24)
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        urban[y0:y0 + bh, x0:x0 + bw] = True
    urban &= (label == OTHER) & (d > sand_w + 6)  # towns sit back from the beach

    texture = _smooth_noise(rng, hw, 3)
    foam = _smooth_noise(rng, hw, 2)
    ripples = 0.03 * np.sin(2 * np.pi * d / rng.uniform(5, 9) + 0.5 * texture)

    rgb = np.zeros((h, w, 3), dtype=np.float32)
    nir = np.zeros(hw, dtype=np.float32)

    # Water: blue-green, darker offshore, rippled. NIR is absorbed by water: near black.
    depth = np.clip(-d / (0.6 * scale), 0.0, 1.0)[..., None]
    water_rgb = np.array([0.10, 0.30, 0.40]) * (1 - 0.5 * depth) + ripples[..., None] + 0.03 * texture[..., None]
    m = label == WATER
    rgb[m] = water_rgb[m]
    nir[m] = 0.04 + 0.02 * texture[m]

    # White water: bright, foamy, slightly blue; foam reflects some NIR.
    m = label == WHITEWATER
    rgb[m] = (np.array([0.82, 0.86, 0.88]) * (0.85 + 0.15 * foam[m])[:, None])
    nir[m] = 0.35 + 0.1 * foam[m]

    # Sand: beige, darker (wet) close to the water line; medium NIR.
    wet = np.clip(1 - d / np.maximum(sand_w, 1), 0.0, 1.0)
    m = label == SAND
    sand_rgb = np.array([0.78, 0.70, 0.52])[None, :] * (1 - 0.35 * wet[m])[:, None]
    rgb[m] = sand_rgb + 0.03 * texture[m][:, None]
    nir[m] = 0.45 * (1 - 0.3 * wet[m]) + 0.03 * texture[m]

    # Other: vegetation (green, bright NIR) / soil (brown) / urban (grey, medium-low NIR).
    m = label == OTHER
    veg = land_kind > 0
    mix = np.clip(land_kind * 2.5 + 0.5, 0.0, 1.0)[..., None]  # soft transition veg <-> soil
    land_rgb = mix * np.array([0.18, 0.38, 0.14]) + (1 - mix) * np.array([0.45, 0.35, 0.22])
    land_rgb = land_rgb + 0.05 * texture[..., None]
    land_nir = np.where(veg, 0.70, 0.38) + 0.08 * texture
    land_rgb[urban] = np.array([0.52, 0.52, 0.54]) + 0.04 * foam[urban][:, None]
    land_nir[urban] = 0.28 + 0.03 * foam[urban]
    rgb[m] = land_rgb[m]
    nir[m] = land_nir[m]

    # Sensor: slight blur (point-spread function), illumination, noise.
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.8)
    nir = cv2.GaussianBlur(nir, (0, 0), 0.8)
    illum = rng.uniform(0.7, 1.2)
    tint = rng.uniform(0.95, 1.05, size=3)  # atmosphere / white balance differs per scene
    rgb = rgb * illum * tint + rng.normal(0.0, 0.02, size=rgb.shape)
    nir = nir * illum + rng.normal(0.0, 0.02, size=nir.shape)

    rgb_u8 = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    nir_u8 = np.clip(np.rint(nir * 255), 0, 255).astype(np.uint8)
    return rgb_u8, nir_u8, label


_README = """# raygym synthetic coastal demo data

SYNTHETIC scenes drawn by `raygym.data.demo.write_demo_data` (seed {seed}, {n} scenes,
{h} x {w} px). Not real imagery: use it to try the pipeline, never to judge a model.

- `images/scene_###.png`: RGB, uint8.
- `nir/scene_###_nir.png`: near-infrared band, uint8, 1 band (pair it with the image by the
  `_nir` suffix rule or via `pairs.csv`).
- `labels/scene_###.png`: greyscale class ids, uint8.
- `pairs.csv`: columns `image,nir,label`, paths relative to this folder.

Classes (Segmentation Gym's Landsat coastal case study):

| id | name |
|---|---|
| 0 | water |
| 1 | whitewater (surf) |
| 2 | sand |
| 3 | other (vegetation, soil, urban) |

Each scene: a wavy shoreline at a random angle and position; surf of varying width on the sea
side plus a broken outer breaker line; a sand strip (wet near the water) on the land side; land
as vegetation / soil patches with grey urban blocks. NIR is dark over water, medium over sand
and foam, bright over vegetation. Per-scene illumination and tint, slight blur, Gaussian noise.
The same seed gives byte-identical files.
"""


def write_demo_data(
    out_dir: Path, n_scenes: int = 48, size_hw: tuple[int, int] = (128, 192), seed: int = 0
) -> DemoInfo:
    """Write the synthetic coastal dataset to ``out_dir`` (a few seconds for the default).

    Args:
        out_dir: destination; created if needed. An earlier demo's files (its
            ``README.md`` says so) are overwritten; a file of the same name that the demo did
            not write is refused, never overwritten; other files are left alone
            (``pairs.csv`` lists exactly this dataset).
        n_scenes: number of scenes.
        size_hw: scene size (height, width) in pixels.
        seed: master seed; scene ``i`` draws from ``default_rng([seed, i])``, so a scene does not
            depend on how many scenes are written.

    Returns:
        :class:`DemoInfo` describing what was written.

    Raises:
        DataError: ``out_dir`` holds a file of a name the demo writes, and is not a demo's.
    """
    if n_scenes < 1:
        raise ValueError(f"n_scenes must be >= 1, got {n_scenes}")
    h, w = size_hw
    if h < 16 or w < 16:
        raise ValueError(f"size_hw must be at least 16 x 16, got {size_hw}")
    out_dir = Path(out_dir)
    width = max(3, len(str(n_scenes - 1)))
    stems = [f"scene_{i:0{width}d}" for i in range(n_scenes)]
    names = [(f"images/{stem}.png", f"nir/{stem}_nir.png", f"labels/{stem}.png")
             for stem in stems]
    _refuse_others_files(out_dir, [n for rel in names for n in rel] + ["pairs.csv", "README.md"])
    for sub in ("images", "nir", "labels"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)

    rows: list[tuple[str, str, str]] = []
    for i, rel in enumerate(names):
        rng = np.random.default_rng([seed, i])
        rgb, nir, label = _draw_scene(rng, (h, w))
        Image.fromarray(rgb, mode="RGB").save(out_dir / rel[0])
        Image.fromarray(nir, mode="L").save(out_dir / rel[1])
        Image.fromarray(label, mode="L").save(out_dir / rel[2])
        rows.append(rel)

    with open(out_dir / "pairs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "nir", "label"])
        writer.writerows(rows)
    (out_dir / "README.md").write_text(
        _README.format(seed=seed, n=n_scenes, h=h, w=w), encoding="utf-8"
    )
    return DemoInfo(out_dir=out_dir, n_scenes=n_scenes, size_hw=(h, w), seed=seed)


def _refuse_others_files(out_dir: Path, names: list[str]) -> None:
    """Refuse to write into ``out_dir`` over a file the demo did not write: one of ``names``
    exists there, and the folder's README.md is not an earlier demo's."""
    try:
        readme = (out_dir / "README.md").read_text(encoding="utf-8", errors="replace")
    except OSError:
        readme = ""
    if readme.startswith(_README.splitlines()[0]):
        return  # an earlier demo: its files are ours to write again
    clash = next((out_dir / n for n in names if (out_dir / n).exists()), None)
    if clash is not None:
        raise DataError("demo-data would overwrite this file, which it did not write",
                        file=clash, fix="give a new or empty folder (the demo writes images/, "
                        "nir/, labels/, pairs.csv and README.md)")
