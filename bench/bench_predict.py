"""Megapixels per second of ``raygym predict`` on the USGS aerial set (920 x 614 RGB JPEGs):
plain PyTorch in one process vs the Ray Data batch path (one single-threaded actor per CPU).

Both runs are end to end (read, standardise, sliding window, write label PNGs and
``summary.csv``; overlays off); the Ray figure includes starting the actors and loading the
model in each, but not ``ray.init`` (printed separately). Without ``--model`` an untrained
3-band ``gym_unet`` is exported to a temp folder: speed does not depend on the weights.

    python bench/bench_predict.py --limit 30
    python bench/bench_predict.py --model runs/x/best --tile 256 --precision bf16-mixed
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

AERIAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / \
    "usgs_coastal_aerial_3class"


def make_model(out: Path, size: int, filters: int, kernel: int) -> Path:
    """Export an untrained 3-band, 3-class gym_unet with a ``size`` x ``size`` input."""
    import torch

    from raygym.config import validate_experiment
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    config = validate_experiment({
        "name": "bench_predict",
        "data": {"images": str(AERIAL / "images"), "labels": str(AERIAL / "labels"),
                 "classes": ["deep_water", "shallow_water", "land"],
                 "target_size": [size, size], "prepared": str(out / "ds")},
        "model": {"arch": "gym_unet", "filters": filters, "kernel": kernel},
    })
    torch.manual_seed(0)
    model = build_model_for(config, 3, 3).eval()
    return export_artifact(out / "model", model, config, in_channels=3,
                           classes=list(config.data.classes), metrics={}, dataset={})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=None, help="first N images (default: all 165)")
    p.add_argument("--model", type=Path, default=None, help="artifact (default: untrained)")
    p.add_argument("--size", type=int, default=256, help="input size of the untrained model")
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--kernel", type=int, default=7)
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16-mixed"])
    p.add_argument("--actors", type=int, default=None, help="Ray actors (default: one per CPU)")
    args = p.parse_args()

    images = sorted((AERIAL / "images").glob("*.jpg"))[: args.limit]
    if not images:
        raise SystemExit(f"no images under {AERIAL.resolve()}")
    from raygym.predict import PredictOptions, predict_files

    work = Path(tempfile.mkdtemp(prefix="bench_predict-"))
    try:
        model = args.model or make_model(work, args.size, args.filters, args.kernel)
        common = PredictOptions(out=work, tile=args.tile, overlap=args.overlap, overlay=False,
                                precision=args.precision)
        import torch

        print(f"{len(images)} images 920x614 ({len(images) * 920 * 614 / 1e6:.1f} Mpx), model "
              f"{model}, tile {args.tile or 'model input'}, overlap {args.overlap}, "
              f"{args.precision}; {os.cpu_count()} CPUs ({platform.processor() or 'cpu'}), "
              f"torch threads {torch.get_num_threads()}")
        # warm-up: one image, so one-off costs (imports, oneDNN kernels) do not count
        predict_files(model, images[:1], replace(common, out=work / "warm", device="cpu"))
        plain = predict_files(model, images, replace(common, out=work / "plain", device="cpu"))
        plain_rate = plain.megapixels / plain.seconds
        print(f"plain torch : {plain.megapixels:.1f} Mpx in {plain.seconds:.1f} s = "
              f"{plain_rate:.3f} Mpx/s ({len(plain.rows) / plain.seconds:.2f} img/s)")

        from raygym.ray_runtime import ensure_ray

        tick = time.perf_counter()
        ensure_ray(progress_bars=False)
        print(f"ray.init    : {time.perf_counter() - tick:.1f} s (not counted)")
        ray_run = predict_files(model, images, replace(common, out=work / "ray", use_ray=True,
                                                        ray_actors=args.actors))
        ray_rate = ray_run.megapixels / ray_run.seconds
        print(f"Ray Data    : {ray_run.megapixels:.1f} Mpx in {ray_run.seconds:.1f} s = "
              f"{ray_rate:.3f} Mpx/s ({len(ray_run.rows) / ray_run.seconds:.2f} img/s)")
        print(f"ratio Ray / plain: {ray_rate / plain_rate:.2f}")
        import numpy as np
        from PIL import Image

        agree = total = 0
        for png in (work / "plain").glob("*_label.png"):
            a = np.asarray(Image.open(png))
            b = np.asarray(Image.open(work / "ray" / png.name))
            agree += int((a == b).sum())
            total += a.size
        # 1 vs N torch threads round differently; an untrained model's near-uniform softmax
        # lets that flip a few argmaxes, a trained model's labels agree exactly.
        print(f"label pixels equal between the two paths: {agree / max(total, 1):.6f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
