"""Training throughput: ``raygym train`` (Ray Train, 1 worker) against a bare PyTorch loop.

Same model (Gym UNet, filters 8, kernel 7), same data (``usgs_coastal_aerial_3class`` at
256 x 256), same batch size, same thread count, same precision, in one process run. Prints per
variant (``fp32``, ``bf16-mixed+cl`` = bf16 autocast + channels_last, ...):

* seconds per epoch and training images/s of both, the ratio and Ray's overhead (goal <= 10 %);
  Ray's epoch is measured from the driver as the time between consecutive ``metrics.csv`` rows
  (a full cycle: train + validation + checkpoint + report); the bare loop's epoch is train +
  validation. Both use the best of epochs 2..N over ``--repeats`` alternating runs (epoch 1
  warms up; on a shared machine other load only adds time), with the median beside it, and
  the median CPU seconds per epoch of the training process (the bench process for the bare
  loop; the ``RayTrainWorker`` process, found among this process's descendants, for Ray);
* Ray's fixed start-up cost (whole ``raygym train`` wall time minus its epochs);
* FLOPs per image (forward, ``raygym.models.summary``) and achieved GFLOP/s (3 x forward FLOPs
  per training image: forward + backward), to compare with a device's peak;
* validation mean IoU after the same epochs (reduced precision must not cost IoU), and of the
  first variant's trained weights evaluated under every variant's numerics.

Example (about 10 min on a 2-core CPU)::

    python bench/bench_train.py --epochs 3 --limit 60 --precision fp32 bf16-mixed+cl
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
import os
import platform
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from manifest import write_manifest  # bench/ sibling module

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "usgs_coastal_aerial_3class"
CLASSES = ["deep_water", "shallow_water", "dry_land"]


@dataclass
class Measured:
    """One loop's figures for one variant."""

    epoch_seconds: list[float] = field(default_factory=list)  # per epoch, train + val
    train_images_per_s: list[float] = field(default_factory=list)
    val_mean_iou: float = float("nan")  # after the last epoch
    val_mean_iou_per_epoch: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0  # the whole call (Ray: start-up, epochs, export)
    worker_epoch_seconds: list[float] = field(default_factory=list)  # Ray: fit's own timing
    cpu_seconds: list[float] = field(default_factory=list)  # per epoch, the training process


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2] if values else float("nan")


# --------------------------------------------------------------------------- setup
def parse_variant(text: str) -> tuple[str, bool]:
    precision, _, suffix = text.partition("+")
    if precision not in ("fp32", "bf16-mixed", "fp16-mixed") or suffix not in ("", "cl"):
        raise SystemExit(f"--precision {text!r}: use fp32 | bf16-mixed | fp16-mixed, "
                         "optionally with +cl (channels_last)")
    return precision, suffix == "cl"


def make_config(args: argparse.Namespace, workdir: Path, manifest: Path, precision: str,
                channels_last: bool, threads: int) -> Any:
    from raygym.config import validate_experiment

    return validate_experiment({
        "name": "bench_train",
        "data": {
            "manifest": str(manifest), "classes": CLASSES, "unknown_labels": "ignore",
            "target_size": [args.size, args.size],
            "split": {"val": 0.2, "test": 0.1, "seed": 42},
            "augment": {"copies": args.copies, "hflip": args.copies > 0},
            "prepared": str(workdir / f"ds-{args.limit or 'all'}-{args.size}-{args.copies}"),
        },
        "model": {"arch": "gym_unet", "filters": args.filters, "kernel": args.kernel,
                  "dropout": 0.1},
        "loss": {"name": "dice"},
        "train": {"batch_size": args.batch_size, "max_epochs": args.epochs,
                  "patience": args.epochs + 1, "lr_schedule": "constant", "max_lr": args.lr,
                  "precision": precision, "channels_last": channels_last,
                  "num_threads": threads, "seed": args.seed,
                  "output_dir": str(workdir / "runs"),
                  "checkpoint_keep": 1},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": threads},
    })


# ------------------------------------------------------------------------ bare loop
def val_mean_iou(model: Any, card: Any, val: Any, precision: str, channels_last: bool,
                 batch_size: int) -> float:
    """Whole validation split, plain PyTorch."""
    import torch

    from raygym.data.batch import to_batch
    from raygym.inference.runtime import autocast_for
    from raygym.train.metrics import ConfusionMatrix

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).eval()
    cm = ConfusionMatrix(card.num_classes, class_names=card.classes)
    with torch.no_grad():
        for s in range(0, len(val), batch_size):
            x, y = to_batch(val.images[s:s + batch_size], val.labels[s:s + batch_size],
                            val.valid_hw[s:s + batch_size])
            with autocast_for(precision, torch.device("cpu")):
                logits = model(x.contiguous(memory_format=fmt))
            cm.update(logits.float(), y)
    return float(cm.compute()["mean_iou"])


def bare_loop(config: Any, card: Any, train: Any, val: Any, threads: int
              ) -> tuple[Measured, Any]:
    """The same work as raygym's loop, written out in plain PyTorch (no Ray, no callbacks)."""
    import numpy as np
    import torch

    from raygym.data.batch import to_batch
    from raygym.inference.runtime import autocast_for
    from raygym.train.loop import build_loss_for, build_model_for

    torch.set_num_threads(threads)
    t = config.train
    torch.manual_seed(t.seed)
    model = build_model_for(config, card.bands, card.num_classes)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss_for(config, card)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.max_lr)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    cpu = torch.device("cpu")
    out = Measured()
    started = time.perf_counter()
    for epoch in range(t.max_epochs):
        tick, cpu_tick = time.perf_counter(), time.process_time()
        model.train()
        order = np.random.default_rng([t.seed, epoch]).permutation(len(train))
        n = 0
        for s in range(0, len(order), t.batch_size):
            idx = np.sort(order[s:s + t.batch_size])
            if len(idx) < 2:
                continue
            x, y = to_batch(train.images[idx], train.labels[idx], train.valid_hw[idx])
            x = x.contiguous(memory_format=fmt)
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(t.precision, cpu):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            loss.backward()
            optimizer.step()
            n += len(idx)
        train_s = time.perf_counter() - tick
        out.val_mean_iou = val_mean_iou(model, card, val, t.precision, t.channels_last,
                                        t.batch_size)
        out.val_mean_iou_per_epoch.append(out.val_mean_iou)
        out.epoch_seconds.append(time.perf_counter() - tick)
        out.cpu_seconds.append(time.process_time() - cpu_tick)
        out.train_images_per_s.append(n / train_s)
    out.wall_seconds = time.perf_counter() - started
    return out, model


# ------------------------------------------------------------------------ Ray Train
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 = state is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def train_worker_pid(root: int) -> int | None:
    """The Ray Train worker started under this process (raylet -> worker), if any. Other
    sessions' Ray workers on a shared machine are not descendants, so never picked."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_proc_stat(int(entry.name))[1]), []).append(
                    int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::RayTrainWorker"):
                return pid
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return None


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def ray_run(config: Any, name: str) -> Measured:
    """``raygym train`` in-process; epoch cycles timed by when each metrics.csv row appears."""
    from rich.console import Console

    from raygym.train.run import read_metrics, train_experiment

    run_dir = config.train.output_dir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    seen: list[float] = []
    cpu: list[float] = []  # the Ray Train worker's CPU seconds when each row appeared
    done = threading.Event()

    def watch() -> None:
        path = run_dir / "metrics.csv"
        worker: int | None = None
        while not done.is_set():
            if worker is None:
                worker = train_worker_pid(os.getpid())
            if path.exists():
                rows = path.read_text().count("\n") - 1
                while len(seen) < rows:
                    seen.append(time.perf_counter())
                    try:
                        cpu.append(cpu_seconds_of(worker) if worker else float("nan"))
                    except (OSError, IndexError, ValueError):
                        cpu.append(float("nan"))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    train_experiment(config, run_name=name, console=Console(file=io.StringIO()))
    wall = time.perf_counter() - started
    done.set()
    watcher.join()
    rows = read_metrics(run_dir / "metrics.csv")
    out = Measured(wall_seconds=wall, val_mean_iou=float(rows[-1]["val_mean_iou"]))
    out.train_images_per_s = [float(r["images_per_s"]) for r in rows]
    out.val_mean_iou_per_epoch = [float(r["val_mean_iou"]) for r in rows]
    # Epoch 1 has no previous row: use the worker's own (train + val) time for it.
    cycles = [float(rows[0]["epoch_seconds"])]
    cycles += [b - a for a, b in itertools.pairwise(seen)]
    out.epoch_seconds = cycles
    out.worker_epoch_seconds = [float(r["epoch_seconds"]) for r in rows]
    # Epoch 1's CPU includes the worker's start-up: not comparable, left as NaN.
    out.cpu_seconds = [float("nan")] + [b - a for a, b in itertools.pairwise(cpu)]
    return out


# ----------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=60, help="first N scenes of pairs.csv (0: all)")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed+cl"],
                   help="variants: fp32 | bf16-mixed | fp16-mixed, +cl for channels_last")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--kernel", type=int, default=7)
    p.add_argument("--copies", type=int, default=0, help="offline augmented copies per scene")
    p.add_argument("--lr", type=float, default=1e-3, help="constant learning rate")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=1, help="bare/ray pairs per variant")
    p.add_argument("--seed", type=int, default=0, help="train.seed (weights, batch order)")
    p.add_argument("--loops", default="bare,ray",
                   help="which loops to run: bare,ray (default), bare (e.g. an IoU study)")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--workdir", type=Path, default=None, help="kept; default a temp folder")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()
    variants = [parse_variant(v) for v in args.precision]
    loops = [loop for loop in ("bare", "ray") if loop in args.loops.split(",")]
    if not loops:
        raise SystemExit("--loops: give bare, ray or bare,ray")

    from raygym.ray_runtime import set_ray_env

    set_ray_env(progress_bars=False)
    import torch

    from raygym.config import ResourcesConfig
    from raygym.data.dataset import PreparedDataset
    from raygym.data.prepare import prepare_dataset
    from raygym.models.summary import model_summary
    from raygym.ray_runtime import ensure_ray
    from raygym.train.loop import build_model_for

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_train-"))
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / "pairs.csv"
    write_manifest(args.data / "pairs.csv", manifest, args.limit or None)
    configs = [make_config(args, workdir, manifest, prec, cl, args.threads)
               for prec, cl in variants]
    cpus = os.cpu_count() or 1
    ensure_ray(ResourcesConfig(num_cpus=max(cpus, args.threads),
                               object_store_memory=1024 * 2**20), progress_bars=False)
    tick = time.perf_counter()
    prepare_dataset(configs[0], log=lambda *a, **k: None)
    prepare_s = time.perf_counter() - tick
    ds = PreparedDataset(configs[0].data.prepared)
    card = ds.card
    train, val = ds.load_numpy("train"), ds.load_numpy("val")
    summary = model_summary(build_model_for(configs[0], card.bands, card.num_classes),
                            (card.bands, args.size, args.size))
    flops = summary.flops_per_image

    print(f"bench_train  {time.strftime('%Y-%m-%d %H:%M')}  {platform.node()}  "
          f"{cpus} CPUs, torch {torch.__version__}, threads {args.threads}")
    print(f"data {args.data.name}: {len(train)} train / {len(val)} val images at "
          f"{args.size}x{args.size} ({card.bands} bands), batch {args.batch_size}, "
          f"epochs {args.epochs}, lr {args.lr:g} constant; prepare {prepare_s:.1f} s")
    print(f"model gym_unet filters {args.filters} kernel {args.kernel}: "
          f"{summary.trainable_params:,} trainable params, "
          f"{flops / 1e9:.2f} GFLOP per image forward (x3 per training image)")
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()},
                               "train_images": len(train), "val_images": len(val),
                               "flops_per_image": flops, "variants": {}}
    header = (f"{'variant':<15} {'loop':<5} {'s/epoch':>8} {'median':>7} {'CPU s':>7} "
              f"{'img/s':>7} {'GFLOP/s':>8} {'val mIoU':>8} {'wall s':>7}")
    print(header)
    print("-" * len(header))
    models: dict[str, Any] = {}
    for config, text in zip(configs, args.precision, strict=True):
        runs: dict[str, list[Measured]] = {loop: [] for loop in loops}
        for rep in range(args.repeats):  # alternate, so slow phases of other load hit both
            if "bare" in loops:
                bare, models[text] = bare_loop(config, card, train, val, args.threads)
                runs["bare"].append(bare)
            if "ray" in loops:
                runs["ray"].append(ray_run(config, f"bench-{text.replace('+', '_')}-{rep}"))
        rows = {}
        for loop, ms in runs.items():
            epochs = [e for m in ms for e in m.epoch_seconds[1:] or m.epoch_seconds]
            rates = [r for m in ms for r in m.train_images_per_s[1:] or m.train_images_per_s]
            ips = max(rates)
            cpus = [c for m in ms for c in m.cpu_seconds[1:] if not math.isnan(c)]
            # Best epoch (2..N, all repeats): other load on a shared machine only adds time.
            rows[loop] = {"epoch_seconds": min(epochs), "epoch_seconds_median": median(epochs),
                          "cpu_seconds_median": median(cpus),
                          "images_per_s": ips, "gflops_per_s": 3 * flops * ips / 1e9,
                          "val_mean_iou": ms[0].val_mean_iou,
                          "wall_seconds": ms[0].wall_seconds, "runs": [asdict(m) for m in ms]}
            r = rows[loop]
            print(f"{text:<15} {loop:<5} {r['epoch_seconds']:8.2f} "
                  f"{r['epoch_seconds_median']:7.2f} {r['cpu_seconds_median']:7.2f} {ips:7.2f} "
                  f"{r['gflops_per_s']:8.1f} {r['val_mean_iou']:8.3f} {r['wall_seconds']:7.1f}")
        results["variants"][text] = rows
        if "ray" in runs:
            # Measured inside one time window, so robust to other load: the driver-side cycle
            # minus the worker's own train + validation time = checkpoint + report + csv row.
            gaps = [c - w for m in runs["ray"]
                    for c, w in zip(m.epoch_seconds[1:], m.worker_epoch_seconds[1:],
                                    strict=True)]
            startups = [m.wall_seconds - sum(m.epoch_seconds) for m in runs["ray"]]
            gap = median(gaps) if gaps else float("nan")
            print(f"{'':<15} Ray per-epoch bookkeeping (checkpoint + report): median "
                  f"{gap:.2f} s = {100 * gap / rows['ray']['epoch_seconds']:.1f} % of its best "
                  f"epoch; fixed start-up + export {min(startups):.1f} s per run")
            rows["ray"].update(bookkeeping_seconds=gaps, startup_seconds=startups)
        if "ray" in runs and "bare" in runs:
            ratio = rows["ray"]["epoch_seconds"] / rows["bare"]["epoch_seconds"]
            overhead = 1 - rows["bare"]["epoch_seconds"] / rows["ray"]["epoch_seconds"]
            verdict = "meets" if overhead <= 0.10 else "MISSES"
            cpu_ratio = rows["ray"]["cpu_seconds_median"] / rows["bare"]["cpu_seconds_median"]
            print(f"{'':<15} ray/bare best epoch time {ratio:.3f}: Ray overhead "
                  f"{100 * overhead:+.1f} % of its epoch ({verdict} the <= 10 % goal); "
                  f"CPU s per epoch ray/bare {cpu_ratio:.3f}")
            results["variants"][text].update(ratio=ratio, overhead=overhead,
                                             cpu_ratio=cpu_ratio)
    if len(configs) > 1:
        base = args.precision[0]
        for text in args.precision[1:]:
            a, b = results["variants"][base], results["variants"][text]
            print(f"{text} vs {base}: " + "; ".join(
                f"{loop}: {b[loop]['images_per_s'] / a[loop]['images_per_s']:.2f}x train "
                f"img/s, val mIoU after {args.epochs} epochs {b[loop]['val_mean_iou']:.3f} vs "
                f"{a[loop]['val_mean_iou']:.3f}" for loop in loops))
        for text in args.precision:
            for loop in loops:
                hist = results["variants"][text][loop]["runs"][0]["val_mean_iou_per_epoch"]
                print(f"val mIoU per epoch, {text} {loop}: "
                      + " ".join(f"{v:.3f}" for v in hist))
        if "bare" in loops:
            # The same trained weights under each variant's numerics: the precision effect.
            same = {text: val_mean_iou(models[base], card, val, *parse_variant(text),
                                       args.batch_size) for text in args.precision}
            results["same_weights_val_mean_iou"] = same
            print(f"{base}-trained weights (bare) evaluated as: "
                  + ", ".join(f"{t} {v:.4f}" for t, v in same.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"work folder: {workdir}")


if __name__ == "__main__":
    main()
