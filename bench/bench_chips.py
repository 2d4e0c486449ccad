"""Peak memory and wall of ``raygym prepare`` cutting one large GeoTIFF into chips
(``data.chips`` with ``blocks``), against the scene's own size.

Generates (in a temp folder, never committed) one N x N px 3-band uint8 GeoTIFF, tiled and
deflate-compressed like an orthomosaic export, in a projected CRS, and a label GeoTIFF of
three class bands, then prepares it into 256 x 256 px chips split by blocks of 4 x 4 chips on
a local Ray of 2 CPUs, sampling the RSS of every process of the tree (driver, Ray's system
processes, the workers: :mod:`process_tree`). The figure that matters is the workers' peak
over the scene's bytes (image + label): how many copies of the scene a task holds.

    python bench/bench_chips.py                    # 8,000 px, no augmented copies
    python bench/bench_chips.py --size 12000 --copies 1
    python bench/bench_chips.py --striped          # GDAL's default layout: strips
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from process_tree import TreeSampler  # noqa: E402


def write_scene(folder: Path, size: int, striped: bool = False) -> tuple[Path, Path]:
    """The image and label GeoTIFFs of one ``size`` x ``size`` px scene, written by rows;
    tiled 256 x 256 (an orthomosaic export) or, ``striped``, in GDAL's default strips."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    profile = {"driver": "GTiff", "height": size, "width": size, "dtype": "uint8",
               "crs": "EPSG:32618", "transform": from_origin(400_000, 4_000_000, 0.5, 0.5),
               "compress": "deflate",
               **({} if striped else {"tiled": True, "blockxsize": 256, "blockysize": 256})}
    rng = np.random.default_rng(0)
    image, label = folder / "images" / "mosaic.tif", folder / "labels" / "mosaic.tif"
    with rasterio.open(image, "w", count=3, **profile) as img, \
            rasterio.open(label, "w", count=1, **profile) as lab:
        for row in range(0, size, 256):
            h = min(256, size - row)
            window = Window(0, row, size, h)
            img.write(rng.integers(0, 255, (3, h, size), dtype=np.uint8), window=window)
            classes = np.minimum(np.arange(size) * 3 // size, 2).astype(np.uint8)
            lab.write(np.broadcast_to(classes, (1, h, size)), window=window)
    return image, label


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8000, help="scene side in px [8000]")
    parser.add_argument("--copies", type=int, default=0, help="augmented copies [0]")
    parser.add_argument("--striped", action="store_true",
                        help="GeoTIFFs in strips (GDAL's default) instead of 256 px tiles")
    args = parser.parse_args(argv)

    import ray

    from raygym.config import validate_experiment
    from raygym.data.prepare import prepare_dataset

    with tempfile.TemporaryDirectory(prefix="bench_chips-") as tmp:
        root = Path(tmp)
        write_scene(root, args.size, args.striped)
        config = validate_experiment({
            "name": "chips", "data": {
                "images": str(root / "images"), "labels": str(root / "labels"),
                "classes": ["a", "b", "c"], "target_size": [256, 256],
                "chips": {"blocks": 4}, "split": {"val": 0.2, "test": 0.1},
                "augment": {"copies": args.copies, "hflip": True},
                "prepared": str(root / "ds")}})
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        sampler = TreeSampler(os.getpid(), interval=0.1)
        sampler.start()
        started = time.perf_counter()
        result = prepare_dataset(config, log=lambda *a, **k: None)
        wall = time.perf_counter() - started
        stats = sampler.finish()
        ray.shutdown()
        scene = args.size * args.size * 4  # 3 image bands + the label, a byte each
        chips = sum(int(s.get("chips", 0)) for s in result.card.splits.values())
        print(f"scene {args.size} x {args.size} px ({scene / 2**20:.0f} MiB image + label), "
              f"{chips} chips of 256 x 256, copies {args.copies}, "
              f"{'striped' if args.striped else 'tiled'}, load "
              f"{os.getloadavg()[0]:.2f}")
        print(f"wall {wall:.1f} s; peak RSS: workers {stats.peak_workers_rss / 2**20:.0f} MiB "
              f"({stats.peak_workers_rss / scene:.1f} x the scene), whole tree "
              f"{stats.peak_rss / 2**20:.0f} MiB, driver {stats.peak_driver_rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
