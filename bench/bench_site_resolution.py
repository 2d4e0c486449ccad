"""Does ``--scale auto``'s ground-distance rule pay on a site imaged at another resolution?

Builds a georeferenced copy of the Sentinel-2 set (4-band uint16 GeoTIFFs, 10 m pixels, UTM
10N, a nodata corner per scene; labels as GeoTIFFs), runs a small ``raygym search`` on it per
search seed, then writes the search's test scenes again at other pixel sizes (5 m: each pixel
2 x 2; 20 m: 2 x 2 averaged, labels nearest) and scores the rank-1 model on each with
``raygym evaluate --data`` (:func:`raygym.evaluate_scenes.evaluate_model_on_scenes`) at
``--scale auto`` (each GeoTIFF brought to the ground distance the model learnt), at the
training factor (what a JPEG input would get) and at 1 (native)::

    python bench/bench_site_resolution.py --workdir /tmp/site_bench --seeds 0 1 2

Printed per seed and pixel size: mean IoU at each scale, and the prepared test split's figure
(``raygym evaluate --split test``) beside it. Needs ``../shared/data``; ~1.5 min per seed on 2
cores.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

S2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "s2_ocean_beach_4class"
CLASSES = ["water", "surf", "wet_sand", "dry_land"]


def write_geotiff_set(out: Path) -> None:
    """The S2 set as 10 m GeoTIFFs: ``out/scenes/<stem>.tif`` (RGB + NIR, uint16, nodata 0
    in a 6 x 6 corner) and ``out/masks/<stem>.tif``."""
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    for sub in ("scenes", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = list(csv.DictReader((S2 / "pairs.csv").open()))
    for i, row in enumerate(rows):
        rgb = np.asarray(Image.open(S2 / row["image"]).convert("RGB"), np.uint16) * 40 + 200
        nir = np.asarray(Image.open(S2 / row["nir"]).convert("L"), np.uint16) * 40 + 200
        label = np.asarray(Image.open(S2 / row["label"]).convert("L"), np.uint8)
        stack = np.concatenate([rgb, nir[..., None]], axis=2).transpose(2, 0, 1)
        stack[:, :6, :6] = 0
        geo = {"driver": "GTiff", "height": label.shape[0], "width": label.shape[1],
               "crs": "EPSG:32610",
               "transform": from_origin(545000 + 1000 * (i % 10), 4180000 - 2000 * (i // 10),
                                        10, 10)}
        stem = Path(row["image"]).stem
        with rasterio.open(out / "scenes" / f"{stem}.tif", "w", count=4, dtype="uint16",
                           nodata=0, **geo) as dst:
            dst.write(stack)
        with rasterio.open(out / "masks" / f"{stem}.tif", "w", count=1, dtype="uint8",
                           **geo) as dst:
            dst.write(label[None])


def write_site(sources: list[dict], metres: float, out: Path) -> Path:
    """The ``sources`` (a dataset card's test scenes) at ``metres`` pixels (10 m originals:
    5 m repeats each pixel 2 x 2, 20 m averages 2 x 2, labels nearest); returns its YAML."""
    import rasterio
    from rasterio.transform import from_origin

    for sub in ("scenes", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for source in sources:
        for file, sub in ((source["files"][0]["path"], "scenes"),
                          (source["files"][-1]["path"], "masks")):
            with rasterio.open(file) as src:
                data, profile, t = src.read(), src.profile, src.transform
            if metres < 10:
                f = int(10 / metres)
                data = data.repeat(f, axis=1).repeat(f, axis=2)
            elif metres > 10:
                f = int(metres / 10)
                h, w = data.shape[1] // f * f, data.shape[2] // f * f
                data = data[:, :h, :w]
                if sub == "masks":
                    data = data[:, ::f, ::f]
                else:  # nodata (0) stays nodata where any of the block is
                    blocks = data.reshape(data.shape[0], h // f, f, w // f, f)
                    mean = blocks.mean(axis=(2, 4)).astype(data.dtype)
                    mean[:, (blocks == 0).any(axis=(0, 2, 4))] = 0
                    data = mean
            profile.update(height=data.shape[1], width=data.shape[2],
                           transform=from_origin(t.c, t.f, metres, metres))
            with rasterio.open(out / sub / Path(file).name, "w", **profile) as dst:
                dst.write(data)
    site = out / f"site_{metres:g}m.yaml"
    site.write_text(f"data:\n  images: {out / 'scenes'}\n  labels: {out / 'masks'}\n"
                    f"  classes: {CLASSES}\n  remap: {{1: 0, 2: 1, 3: 2, 4: 3}}\n"
                    "  unknown_labels: ignore\n")
    return site


def run_seed(workdir: Path, seed: int, metres: list[float]) -> dict[str, float]:
    from raygym.api import run_search
    from raygym.evaluate import evaluate_model_on_split
    from raygym.evaluate_scenes import evaluate_model_on_scenes
    from raygym.inference.artifact import read_model_card

    results = run_search({
        "name": f"site_seed{seed}",
        "data": {"images": str(workdir / "geo" / "scenes"),
                 "labels": str(workdir / "geo" / "masks"), "classes": CLASSES,
                 "remap": {1: 0, 2: 1, 3: 2, 4: 3}, "unknown_labels": "ignore",
                 "target_size": [96, 48],
                 "split": {"val": 0.2, "test": 0.1, "group": r"^(.*)-\d+$"},
                 "prepared": str(workdir / "datasets" / "geo")},
        "model": {"arch": {"choice": ["gym_unet", "gym_resunet"]},
                  "filters": {"choice": [4, 8]}},
        "train": {"max_epochs": 6, "max_lr": {"loguniform": [1e-3, 1e-2]},
                  "lr_schedule": "cosine", "rampup_epochs": 1, "seed": seed},
        "search": {"num_samples": 6, "seed": seed,
                   "results_dir": str(workdir / "results")},
    })
    model = sorted((results / "best").glob("rank1_*"))[0]
    card = read_model_card(model)
    dataset = json.loads((Path(card.dataset["path"]) / "card.json").read_text())
    test = [s for s in dataset["sources"] if s["split"] == "test"]
    row = {"prepared test split": evaluate_model_on_split(
        model, None, "test", out_dir=workdir / "eval" / f"s{seed}_split").mean_iou}
    factor = float(card.dataset["train_scale"]["median"])
    for m in metres:
        site = write_site(test, m, workdir / f"site_s{seed}_{m:g}m")
        for name, scale in (("auto", "auto"), ("training factor", factor), ("1", 1.0)):
            result = evaluate_model_on_scenes(model, site, scale=scale, device="cpu",
                                              out_dir=workdir / "eval" / f"s{seed}_{m:g}_{name}")
            row[f"{m:g} m, scale {name}"] = result.mean_iou
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--metres", type=float, nargs="+", default=[5.0, 10.0, 20.0])
    args = parser.parse_args()
    if not (args.workdir / "geo" / "scenes").is_dir():
        write_geotiff_set(args.workdir / "geo")
    rows = {seed: run_seed(args.workdir, seed, args.metres) for seed in args.seeds}
    columns = list(next(iter(rows.values())))
    print("| column | " + " | ".join(f"seed {s}" for s in rows) + " | median |")
    print("|---|" + "---|" * (len(rows) + 1))
    for c in columns:
        values = [rows[s][c] for s in rows]
        print(f"| {c} | " + " | ".join(f"{v:.3f}" for v in values)
              + f" | {float(np.median(values)):.3f} |")


if __name__ == "__main__":
    main()
