"""Record learning-curve tables: every configuration of a grid trained to the full epoch budget.

No early stopping, no pruning: each (configuration, training seed) runs ``--epochs`` epochs and
every epoch's validation mIoU, validation loss, per-class IoU, train loss, learning rate and
wall seconds go to one CSV row. The search simulator (``raygym search SPACE --replay TABLE``,
``bench/bench_simulate.py``) replays these curves instead of training.

The grid: ``model.arch`` x ``model.filters`` x ``loss.name`` x ``train.max_lr`` (columns
``param:<key path>``, values as the search space writes them; a weighted loss is JSON). The
training loop is raygym's own :func:`raygym.train.loop.fit` (plain PyTorch, one thread per
process, ``--workers`` processes), on a dataset prepared by ``raygym prepare``'s code.

Resumable: rows already in ``--out`` for a (configuration, seed) with all epochs are kept and
not trained again; a partial one is trained again. A card (``<out>.card.json``) records data,
sizes, seeds, command, date and cost.

Example (the committed tables; a few hours on 2 cores in all)::

    python bench/record_curves.py --set aerial --size 96 128 --epochs 16 \\
        --out bench/curves/aerial_96x128.csv
    python bench/record_curves.py --set s2 --size 64 128 --epochs 16 \\
        --out bench/curves/s2_64x128.csv
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from manifest import write_manifest  # bench/ sibling module

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SETS: dict[str, dict[str, Any]] = {
    "aerial": {"folder": "usgs_coastal_aerial_3class",
               "classes": ["deep_water", "shallow_water", "dry_land"], "remap": None},
    "s2": {"folder": "s2_ocean_beach_4class",
           "classes": ["water", "surf", "wet_sand", "dry_land"],
           "remap": {1: 0, 2: 1, 3: 2, 4: 3}},
}
PARAM_KEYS = ("model.arch", "model.filters", "loss.name", "train.max_lr")
LOSSES = {"dice": "dice", "cce": "cce", "dice+cce": {"dice": 0.5, "cce": 0.5}}


def encode(value: Any) -> str:
    """A parameter value as a table cell: plain for strings and numbers, JSON for mappings."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def data_section(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    spec = SETS[args.set]
    src = SHARED / spec["folder"]
    manifest = workdir / "pairs.csv"
    if args.set == "aerial":
        write_manifest(src / "pairs.csv", manifest, args.limit)
        inputs: dict[str, Any] = {"manifest": str(manifest)}
    else:
        inputs = {"images": str(src / "images"), "labels": str(src / "labels"),
                  "extra_bands": [{"folder": str(src / "nir"), "key": r"^(.*)_ir(-\d+)$"}]}
    return {**inputs, "classes": spec["classes"], "remap": spec["remap"],
            "unknown_labels": "ignore", "target_size": list(args.size),
            "split": {"val": 0.2, "test": 0.1, "seed": 42},
            "augment": {"copies": args.copies, "hflip": args.copies > 0},
            "prepared": str(workdir / "prepared")}


def sections(args: argparse.Namespace, data: dict[str, Any], params: dict[str, Any],
             seed: int) -> dict[str, Any]:
    """One run's experiment: the grid point ``params`` at training seed ``seed``."""
    return {
        "name": "curves",
        "data": data,
        "model": {"arch": params["model.arch"], "filters": params["model.filters"],
                  "kernel": args.kernel, "dropout": 0.1},
        "loss": {"name": params["loss.name"]},
        "train": {"batch_size": 8, "max_epochs": args.epochs, "patience": args.epochs + 1,
                  "lr_schedule": "gym", "start_lr": args.start_lr, "min_lr": args.min_lr,
                  "max_lr": params["train.max_lr"], "rampup_epochs": args.rampup,
                  "exp_decay": args.decay, "precision": args.precision, "seed": seed,
                  "num_threads": 1, "precise_bn_images": args.precise_bn_images},
    }


def grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    return [{"model.arch": a, "model.filters": f, "loss.name": LOSSES[loss], "train.max_lr": lr}
            for a, f, loss, lr in itertools.product(args.archs, args.filters, args.losses,
                                                    args.lrs)]


_SPLITS: dict[str, Any] = {}


def _train_one(job: tuple[dict[str, Any], int, int]) -> list[dict[str, Any]]:
    """Worker: train one (configuration, seed) for every epoch; its table rows."""
    raw, config_id, seed = job
    import torch

    from raygym.config import validate_experiment
    from raygym.data.dataset import PreparedDataset, read_card
    from raygym.train.loop import NumpyBatches, build_loss_for, build_model_for, fit

    torch.set_num_threads(1)
    config = validate_experiment(raw, "<record_curves>")
    if not _SPLITS:
        ds = PreparedDataset(config.data.prepared)
        _SPLITS.update(train=ds.load_numpy("train"), val=ds.load_numpy("val"))
    card = read_card(config.data.prepared)
    torch.manual_seed(seed)
    model = build_model_for(config, card.bands, card.num_classes)
    source = NumpyBatches(train=_SPLITS["train"], val=_SPLITS["val"],
                          batch_size=config.train.batch_size, seed=seed)
    rows: list[dict[str, Any]] = []

    def on_epoch(m: dict[str, Any], _write: Any) -> None:
        # a run whose loss became NaN ends with one row of NaN scores (a failed trial)
        rows.append({"config_id": config_id, "seed": seed, "epoch": m["epoch"],
                     "val_mean_iou": m.get("val_mean_iou", math.nan), "val_loss": m["val_loss"],
                     "train_loss": m["train_loss"], "lr": m["lr"],
                     "seconds": round(m.get("epoch_seconds", 0.0), 3),
                     **{f"val_iou/{c}": m.get(f"val_iou/{c}") for c in card.classes}})

    fit(config, model, build_loss_for(config, card), source, card, on_epoch=on_epoch)
    return rows


def _resolved_precision(precision: str) -> str:
    import torch

    from raygym.inference.runtime import resolve_precision

    return resolve_precision(precision, torch.device("cpu"))


def done_runs(out: Path, epochs: int) -> set[tuple[int, int]]:
    """(config_id, seed) pairs already recorded with every epoch (or ended by a NaN loss)."""
    if not out.exists():
        return set()
    counts: dict[tuple[int, int], int] = {}
    with out.open(newline="") as fh:
        for row in csv.DictReader(fh):
            key = (int(row["config_id"]), int(row["seed"]))
            nan = row["val_loss"].lower() in ("nan", "")
            counts[key] = epochs if nan else counts.get(key, 0) + 1
    return {k for k, n in counts.items() if n >= epochs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--set", choices=sorted(SETS), required=True)
    p.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"))
    p.add_argument("--limit", type=int, default=None, help="scenes used (default all)")
    p.add_argument("--copies", type=int, default=0, help="augmented (hflip) copies")
    p.add_argument("--epochs", type=int, default=16, help="full budget per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--archs", nargs="+", default=["gym_unet", "gym_resunet"])
    p.add_argument("--filters", type=int, nargs="+", default=[2, 4, 8, 12])
    p.add_argument("--losses", nargs="+", choices=sorted(LOSSES),
                   default=["dice", "cce", "dice+cce"])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2])
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--start-lr", type=float, default=1e-5)
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--rampup", type=int, default=1, help="gym LR ramp-up epochs")
    p.add_argument("--decay", type=float, default=0.9)
    p.add_argument("--precision", default="auto")
    p.add_argument("--precise-bn-images", type=int, default=128,
                   help="train.precise_bn_images (0: Keras' running BatchNorm averages, as "
                        "the tables recorded before 2026-12-06)")
    p.add_argument("--workers", type=int, default=2, help="processes (1 thread each)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if not (SHARED / SETS[args.set]["folder"]).is_dir():
        print(f"data set not found: {SHARED / SETS[args.set]['folder']}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"curves-{args.set}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data = data_section(args, workdir)
    points = grid(args)

    from raygym.config import validate_experiment

    first = validate_experiment(sections(args, data, points[0], 0), "<record_curves>")
    if not (Path(data["prepared"]) / "card.json").exists():
        import ray

        from raygym.data.prepare import prepare_dataset
        from raygym.ray_runtime import ensure_ray

        ensure_ray(first.resources, progress_bars=False)
        prepare_dataset(first, log=lambda *a, **k: None)
        ray.shutdown()
    from raygym.data.dataset import read_card

    card = read_card(Path(data["prepared"]))
    split_rows = {k: v.get("rows") for k, v in card.splits.items()}
    done = done_runs(args.out, args.epochs)
    # longest first (filters^2 ~ cost) for an even finish; both seeds of a point together
    jobs = [(sections(args, data, pt, seed), i, seed) for i, pt in enumerate(points)
            for seed in args.seeds if (i, seed) not in done]
    jobs.sort(key=lambda j: -j[0]["model"]["filters"])
    param_cols = [f"param:{k}" for k in PARAM_KEYS]
    metric_cols = ["epoch", "val_mean_iou", "val_loss", "train_loss", "lr", "seconds",
                   *[f"val_iou/{c}" for c in card.classes]]
    header = ["config_id", *param_cols, "seed", *metric_cols]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not done:
        with args.out.open("w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=header).writeheader()
    else:  # drop partial runs, keep complete ones
        with args.out.open(newline="") as fh:
            kept = [r for r in csv.DictReader(fh)
                    if (int(r["config_id"]), int(r["seed"])) in done]
        with args.out.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=header)
            w.writeheader()
            w.writerows(kept)
    print(f"{args.set}: {len(points)} configurations x {len(args.seeds)} seeds, "
          f"{len(jobs)} runs to record ({len(done)} already), {split_rows} rows in the "
          f"dataset, workdir {workdir}", flush=True)
    started = time.time()
    cpu_seconds = 0.0
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, maxtasksperchild=None) as pool, \
            args.out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        for n, rows in enumerate(pool.imap_unordered(_train_one, jobs, chunksize=1), 1):
            cid = rows[0]["config_id"]
            params = {f"param:{k}": encode(v) for k, v in points[cid].items()}
            writer.writerows({**params, **r} for r in rows)
            fh.flush()
            cpu_seconds += sum(r["seconds"] for r in rows)
            print(f"[{n}/{len(jobs)}] {time.time() - started:7.0f} s  config {cid} seed "
                  f"{rows[0]['seed']}: final mIoU {rows[-1]['val_mean_iou']:.3f}", flush=True)
    card_out = {
        "table": args.out.name, "set": args.set, "data": str(SHARED / SETS[args.set]["folder"]),
        "classes": card.classes, "rows_per_split": split_rows, "target_size": list(args.size),
        "augment_copies": args.copies, "kernel": args.kernel, "epochs": args.epochs,
        "seeds": args.seeds, "grid": {k: [encode(v) for v in dict.fromkeys(
            encode(pt[k]) for pt in points)] for k in PARAM_KEYS},
        "configurations": len(points), "lr_schedule": {
            "name": "gym", "start_lr": args.start_lr, "min_lr": args.min_lr,
            "rampup_epochs": args.rampup, "exp_decay": args.decay},
        "batch_size": 8, "precision": args.precision,
        "precise_bn_images": args.precise_bn_images,
        "precision_resolved": _resolved_precision(args.precision), "threads_per_run": 1,
        "workers": args.workers,
        "command": "python bench/record_curves.py " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "cost": {"wall_s_this_run": round(time.time() - started),
                 "train_seconds_this_run": round(cpu_seconds)},
    }
    card_path = args.out.with_name(args.out.name.removesuffix(".csv") + ".card.json")
    card_path.write_text(json.dumps(card_out, indent=2) + "\n")
    print(f"wrote {args.out} and {card_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
