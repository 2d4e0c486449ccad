"""Peak memory and Mpx/s of ``raygym predict`` on a large GeoTIFF beside a small one.

Generates (in a temp folder, never committed) synthetic 3-band uint8 GeoTIFFs, tiled 256 x 256
and deflate-compressed like an orthomosaic export: by default 20,000 x 20,000 px and
2,000 x 2,000 px, in a projected CRS, with a nodata border. Exports an untrained tiny
``gym_unet`` (speed does not depend on the weights) and predicts each raster with
:func:`raygym.predict.predict_files` (label COG + QGIS style; ``--overlay`` adds the overlay
PNG, which is full size for the small raster but shrunk for the large one, so it is off by
default to compare like with like) in its own child process, which reports its peak resident
memory (``VmHWM``), wall and CPU seconds. Every size but the largest runs twice and the faster
run counts (the machine is shared). Goal (issue 12): peak RSS < 2 GiB on the large raster and
Mpx/s within 10 % of the small one's.

    python bench/bench_predict_large.py                      # 20k and 2k
    python bench/bench_predict_large.py --sizes 10000 2000   # a shorter run
    python bench/bench_predict_large.py --scale 0.25         # a model trained on shrunk scenes
    python bench/bench_predict_large.py --evaluate           # raygym evaluate --data instead

``--evaluate`` scores the same rasters against a label GeoTIFF (three vertical class bands,
uint8, tiled like the image) with ``raygym evaluate MODEL --data SITE.yaml``
(:func:`raygym.evaluate_scenes.evaluate_model_on_scenes`, overlays off unless ``--overlay``),
which holds the label and the predicted labels whole (a byte a pixel each) beside what
predict holds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 256
"""Rows generated per write (one tile row of the synthetic GeoTIFF)."""


def make_raster(path: Path, size: int, seed: int = 0) -> Path:
    """A ``size`` x ``size`` 3-band uint8 GeoTIFF (tiled 256, deflate, EPSG:32610, 0.5 m
    pixels, nodata 0 on a 64-px border): smooth coastal-looking bands plus noise, written by
    tile rows so generating a 20k raster needs ~20 MB."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 6.0 * np.pi, size, dtype=np.float32)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32610", "transform": from_origin(545_000.0, 4_180_000.0, 0.5, 0.5),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "nodata": 0, "bigtiff": "IF_SAFER"}
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, ROWS):
            h = min(ROWS, size - r0)
            y = np.linspace(r0, r0 + h, h, endpoint=False, dtype=np.float32)[:, None] \
                * (6.0 * np.pi / size)
            shore = np.sin(x[None, :] + 0.7 * np.sin(y)) * 60.0 + 120.0
            bands = np.stack([shore + 20.0, shore * 0.8 + 40.0, 200.0 - shore * 0.5])
            bands += rng.normal(0.0, 12.0, size=bands.shape).astype(np.float32)
            block = np.clip(bands, 1, 255).astype(np.uint8)
            border = 64  # nodata frame, as a mosaic's edge
            block[:, :, :border] = 0
            block[:, :, size - border:] = 0
            if r0 < border:
                block[:, :border - r0] = 0
            if r0 + h > size - border:
                block[:, max(0, size - border - r0):] = 0
            dst.write(block, window=Window(0, r0, size, h))
    return path


def make_label(path: Path, size: int) -> Path:
    """A ``size`` x ``size`` uint8 label GeoTIFF beside :func:`make_raster`'s image: classes
    0 / 1 / 2 in three vertical bands, written by tile rows."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = {"driver": "GTiff", "height": size, "width": size, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32610", "transform": from_origin(545_000.0, 4_180_000.0, 0.5, 0.5),
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "bigtiff": "IF_SAFER"}
    row = np.minimum(np.arange(size) * 3 // size, 2).astype(np.uint8)
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, ROWS):
            h = min(ROWS, size - r0)
            dst.write(np.broadcast_to(row, (1, h, size)), window=Window(0, r0, size, h))
    return path


def make_model(out: Path, size: int, filters: int, kernel: int) -> Path:
    """An untrained 3-band, 3-class gym_unet artifact with a ``size`` x ``size`` input."""
    import torch

    from raygym.config import validate_experiment
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    config = validate_experiment({
        "name": "bench_predict_large",
        "data": {"images": str(out), "labels": str(out),
                 "classes": ["water", "wet_sand", "dry_land"], "target_size": [size, size],
                 "prepared": str(out / "ds")},
        "model": {"arch": "gym_unet", "filters": filters, "kernel": kernel},
    })
    torch.manual_seed(0)
    model = build_model_for(config, 3, 3).eval()
    return export_artifact(out / "model", model, config, in_channels=3,
                           classes=list(config.data.classes), metrics={}, dataset={})


def vm_hwm_bytes() -> int:
    """This process's peak resident set size (Linux ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(model: Path, raster: Path, out: Path, tile: int | None, overlay: bool,
          scale: float = 1.0) -> None:
    """Predict one raster (or, given a site YAML, evaluate on its scenes); print one JSON line
    (seconds, Mpx, peak RSS before and after)."""
    from raygym.predict import PredictOptions, predict_files

    before = vm_hwm_bytes()  # imports (torch, rasterio) only
    start, cpu = time.perf_counter(), time.process_time()
    if raster.suffix == ".yaml":
        from raygym.evaluate_scenes import evaluate_model_on_scenes

        scored = evaluate_model_on_scenes(model, raster, out_dir=out, scale=scale, tile=tile,
                                          overlays=4 if overlay else 0, device="cpu")
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "cpu_seconds": time.process_time() - cpu,
                          "mpx": int(scored.confusion.sum()) / 1e6, "rss_imports": before,
                          "rss_peak": vm_hwm_bytes(), "mean_iou": scored.mean_iou}))
        return
    result = predict_files(model, [raster], PredictOptions(out=out, tile=tile, device="cpu",
                                                           overlay=overlay, scale=scale))
    seconds = time.perf_counter() - start
    assert result.rows and not result.skipped, result.skipped
    # CPU seconds too: on a shared machine wall time depends on the other users' load
    print(json.dumps({"seconds": seconds, "cpu_seconds": time.process_time() - cpu,
                      "mpx": result.megapixels,
                      "rss_imports": before, "rss_peak": vm_hwm_bytes(),
                      "nodata_pixels": result.rows[0]["nodata_pixels"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 2_000],
                   help="raster side lengths in pixels, large first (default: 20000 2000)")
    p.add_argument("--size", type=int, default=256, help="model input (window) size")
    p.add_argument("--filters", type=int, default=2)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--tile", type=int, default=None, help="--tile (default: model input)")
    p.add_argument("--overlay", action="store_true", help="also write the overlay PNGs")
    p.add_argument("--scale", type=float, default=1.0, help="--scale: predict at this factor "
                   "of the native resolution, read by windows as at 1 (default: 1)")
    p.add_argument("--evaluate", action="store_true", help="raygym evaluate --data on the "
                   "rasters and a label GeoTIFF each, instead of predict")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "RASTER", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        model, raster, out = (Path(a) for a in args.child)
        child(model, raster, out, args.tile, args.overlay, args.scale)
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench_predict_large-"))
    try:
        model = make_model(work, args.size, args.filters, args.kernel)
        print(f"{'evaluate --data' if args.evaluate else 'predict'}: "
              f"model gym_unet f{args.filters} k{args.kernel}, input {args.size}, tile "
              f"{args.tile or args.size}, overlap 0.25, scale {args.scale:g}, fp32, overlay "
              f"{args.overlay}; "
              f"{os.cpu_count()} CPUs, torch "
              f"threads {torch.get_num_threads()}; load {os.getloadavg()[0]:.2f}")
        results = {}
        for size in args.sizes:
            tick = time.perf_counter()
            folder = work / f"scenes_{size}"
            (folder / "images").mkdir(parents=True)
            raster = make_raster(folder / "images" / f"synthetic_{size}.tif", size)
            target = raster
            if args.evaluate:
                (folder / "labels").mkdir()
                make_label(folder / "labels" / raster.name, size)
                target = folder / "site.yaml"
                target.write_text(f"data:\n  images: {folder / 'images'}\n  labels: "
                                  f"{folder / 'labels'}\n  classes: [water, wet_sand, "
                                  "dry_land]\n  unknown_labels: ignore\n")
            print(f"{size} x {size}: generated in {time.perf_counter() - tick:.0f} s "
                  f"({raster.stat().st_size / 2**20:.0f} MiB on disk)", flush=True)
            cmd = [sys.executable, __file__, "--child", str(model), str(target),
                   str(work / f"out_{size}")]
            cmd += (["--tile", str(args.tile)] if args.tile else []) + \
                (["--overlay"] if args.overlay else []) + ["--scale", str(args.scale)]
            for _ in range(1 if size == max(args.sizes) else 2):
                shutil.rmtree(work / f"out_{size}", ignore_errors=True)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr[-3000:])
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                if size not in results or r["seconds"] < results[size]["seconds"]:
                    results[size] = r
                print(f"{size:>6} px: {r['mpx']:8.1f} Mpx in {r['seconds']:7.1f} s = "
                      f"{r['mpx'] / r['seconds']:.3f} Mpx/s ({r['cpu_seconds']:.0f} CPU s = "
                      f"{r['mpx'] / r['cpu_seconds']:.3f} Mpx/CPU s); peak RSS "
                      f"{r['rss_peak'] / 2**30:.2f} GiB (imports {r['rss_imports'] / 2**30:.2f} "
                      f"GiB); load {os.getloadavg()[0]:.2f}", flush=True)
            shutil.rmtree(work / f"out_{size}", ignore_errors=True)
            shutil.rmtree(folder)
        big, small = max(results), min(results)
        rate = {s: results[s]["mpx"] / results[s]["seconds"] for s in results}
        per_cpu = {s: results[s]["mpx"] / results[s]["cpu_seconds"] for s in results}
        print(f"throughput {big} / {small}: {rate[big] / rate[small]:.3f} per wall s, "
              f"{per_cpu[big] / per_cpu[small]:.3f} per CPU s (goal >= 0.90); peak RSS {big}: "
              f"{results[big]['rss_peak'] / 2**30:.2f} GiB (goal < 2 GiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
