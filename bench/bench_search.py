"""Search efficiency: Gym's full factorial grid (each model trained to early stopping, as in the
Segmentation Gym paper) against raygym's TPE + ASHA over the same space.

Both searches run ``raygym search`` in one process on one local Ray, on
``usgs_coastal_aerial_3class`` (classes deep_water / shallow_water / dry_land; JPEG artefact
label values 3-5 ignored), prepared once, with the same per-trial budget (``--epochs``,
early stopping with ``--patience``) and the same space: ``model.arch`` x ``model.filters`` x
``loss.name`` (a reduced grid: filters {2, 4} instead of the paper's {2, 4, 6, 8, 12}).

Printed:

* the best validation mean IoU of each search (the exported model's score: the epoch whose
  weights early stopping kept);
* for TPE + ASHA: the total epochs and the wall time it needed before one of its trials first
  reached the grid's best - 0.01 (from the time-stamped per-epoch results of its trials), and
  that as a share of the grid's total epochs / wall time (goal <= 25 %);
* Tune's overhead per search: wall time x concurrency against the sum of the trials' own
  training time (time_total_s, which includes each trial's model build); goal <= 15 %.
  Idle slots (fewer runnable trials than ``--concurrency``, e.g. at the end) count as overhead.

Example (about 10-15 min on a 2-core CPU)::

    python bench/bench_search.py --limit 100 --size 64 96 --epochs 12 --samples 6
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from manifest import write_manifest  # bench/ sibling module

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "usgs_coastal_aerial_3class"
CLASSES = ["deep_water", "shallow_water", "dry_land"]


def experiment(args: argparse.Namespace, workdir: Path, manifest: Path, *, name: str,
               grid: bool) -> dict[str, Any]:
    """One search's experiment sections; ``grid``: factorial grid, no scheduler."""
    dist = "grid" if grid else "choice"
    return {
        "name": name,
        "data": {
            "manifest": str(manifest), "classes": CLASSES, "unknown_labels": "ignore",
            "target_size": list(args.size),
            "split": {"val": 0.2, "test": 0.1, "seed": 42},
            "augment": {"copies": args.copies, "hflip": args.copies > 0},
            "prepared": str(workdir / "prepared"),
        },
        "model": {"arch": {dist: ["gym_unet", "gym_resunet"]},
                  "filters": {dist: list(args.filters)}, "kernel": args.kernel,
                  "dropout": 0.1},
        "loss": {"name": {dist: list(args.losses)}},
        "train": {"batch_size": 8, "max_epochs": args.epochs, "patience": args.patience,
                  "lr_schedule": "gym", "start_lr": 1e-5, "min_lr": 1e-5, "max_lr": args.lr,
                  "rampup_epochs": 2, "exp_decay": 0.9, "precision": args.precision,
                  "seed": 0},
        "search": {
            "algorithm": "grid" if grid else "optuna",
            "scheduler": "none" if grid else "asha",
            "num_samples": 1 if grid else args.samples,
            "max_concurrent": args.concurrency, "grace_period": args.grace,
            "reduction_factor": args.reduction_factor, "top_k": 1, "seed": args.seed,
            "results_dir": str(workdir / "results"),
        },
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 1,
                      "num_cpus": args.concurrency, "object_store_memory": 512 * 2**20},
    }


def epoch_log(out: Path, name: str) -> list[dict[str, Any]]:
    """Every trial's per-epoch results, in the order they were reported (Tune's timestamp)."""
    rows = []
    for result in sorted((out / "ray" / name).glob("*/result.json")):
        for line in result.read_text().splitlines():
            r = json.loads(line)
            rows.append({"trial": result.parent.name, "epoch": r["epoch"],
                         "timestamp": r["timestamp"], "first_iter_s": r["time_this_iter_s"],
                         "best": r.get("best_val_mean_iou", float("nan"))})
    rows.sort(key=lambda r: (r["timestamp"], r["trial"], r["epoch"]))
    return rows


def run_search(sections: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """``raygym search`` in this process; its summary plus the epoch log."""
    from rich.console import Console

    from raygym.search.run import search_experiment
    from raygym.search.space_config import load_experiment

    path = workdir / f"{sections['name']}.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    config, space = load_experiment(path)
    started_at = time.time()
    tick = time.perf_counter()
    code = search_experiment(config, space, space_file=path, console=Console(file=io.StringIO()))
    wall_total = time.perf_counter() - tick
    assert code == 0
    return {**load_search(workdir, sections["name"]), "started_at": started_at,
            "wall_total": wall_total}


def load_search(workdir: Path, name: str) -> dict[str, Any]:
    """A finished search's summary, epoch log and leaderboard, read from its results folder."""
    out = workdir / "results" / name
    saved = json.loads((out / "search.json").read_text())
    return {"summary": saved["summary"], "log": epoch_log(out, name),
            "board": list(csv.DictReader((out / "leaderboard.csv").open(newline="")))}


def first_reach(run: dict[str, Any], target: float) -> dict[str, Any] | None:
    """Epochs and seconds (since the search started) until a trial's kept score >= target."""
    for i, r in enumerate(run["log"], start=1):
        if r["best"] == r["best"] and r["best"] >= target:
            return {"epochs": i, "seconds": r["timestamp"] - run["started_at"],
                    "trial": r["trial"], "epoch": r["epoch"], "value": r["best"]}
    return None


def overhead(run: dict[str, Any], concurrency: int) -> float:
    """Share of the search's slot-seconds (wall x concurrency) not spent inside trials."""
    s = run["summary"]
    capacity = s["wall_s"] * concurrency
    return (capacity - s["sum_trial_s"]) / capacity


def overhead_parts(run: dict[str, Any], concurrency: int) -> dict[str, float]:
    """Where the slot-seconds outside trials went (timestamps are whole seconds: +-1 s):

    * ``fixed_s``: wall time before the first trial started and after the last one ended
      (Tuner set-up, experiment state, final sync), x concurrency;
    * ``gaps_s``: idle slots up to the last trial's start (Tune starting the next trial);
    * ``tail_s``: idle slots after the last trial started: no trial left to run (e.g. one
      long trial finishing alone). A property of the search's shape, not Tune's cost.
    """
    spans = []  # (start, end) of each trial, from its result.json
    for trial in {r["trial"] for r in run["log"]}:
        rows = [r for r in run["log"] if r["trial"] == trial]
        spans.append((rows[0]["timestamp"] - rows[0]["first_iter_s"], rows[-1]["timestamp"]))
    first, last_start = min(a for a, _ in spans), max(a for a, _ in spans)
    last_end = max(b for _, b in spans)

    def idle(t0: float, t1: float) -> float:
        cuts = sorted({t0, t1, *[x for sp in spans for x in sp if t0 < x < t1]})
        total = 0.0
        for a, b in zip(cuts, cuts[1:], strict=False):
            mid = (a + b) / 2
            running = sum(1 for s, e in spans if s <= mid < e)
            total += max(0, concurrency - running) * (b - a)
        return total

    wall = run["summary"]["wall_s"]
    return {"fixed_s": max(0.0, wall - (last_end - first)) * concurrency,
            "gaps_s": idle(first, last_start), "tail_s": idle(last_start, last_end)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=100, help="scenes used (of 165)")
    p.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("H", "W"),
                   help="target size (920 x 614 scenes: 64 x 96 keeps the aspect)")
    p.add_argument("--copies", type=int, default=1, help="augmented copies (hflip)")
    p.add_argument("--filters", type=int, nargs="+", default=[2, 4])
    p.add_argument("--losses", nargs="+", default=["dice", "cce"])
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--epochs", type=int, default=12, help="max epochs per trial (both)")
    p.add_argument("--patience", type=int, default=3, help="early stopping (both)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--samples", type=int, default=6, help="TPE + ASHA trials")
    p.add_argument("--grace", type=int, default=1)
    p.add_argument("--reduction-factor", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=2, help="trials at once = CPUs of Ray")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--grid-from", type=Path, default=None, metavar="WORKDIR",
                   help="reuse (a) from an earlier run's work folder (same data and grid "
                        "settings, checked): only (b) runs, e.g. to try ASHA settings")
    args = p.parse_args(argv)
    if not (DATA / "pairs.csv").is_file():
        print(f"data set not found: {DATA}", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    workdir = args.grid_from or args.workdir or Path(tempfile.mkdtemp(prefix="bench_search-"))
    shutil.rmtree(workdir / "results" / ("tpe_asha" if args.grid_from else ""),
                  ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = workdir / "pairs.csv"
    write_manifest(DATA / "pairs.csv", manifest, args.limit)

    from raygym.config import validate_experiment
    from raygym.data.prepare import prepare_dataset
    from raygym.ray_runtime import ensure_ray

    grid_sections = experiment(args, workdir, manifest, name="grid", grid=True)
    tpe_sections = experiment(args, workdir, manifest, name="tpe_asha", grid=False)
    fixed = json.loads(json.dumps(grid_sections))
    for section, key, value in (("model", "arch", "gym_unet"), ("model", "filters", 2),
                                ("loss", "name", "dice")):
        fixed[section][key] = value
    fixed_config = validate_experiment(fixed)
    ensure_ray(fixed_config.resources, progress_bars=False)
    tick = time.perf_counter()
    prepare_dataset(fixed_config, log=lambda *a, **k: None)
    prepare_s = time.perf_counter() - tick

    if args.grid_from:
        saved = yaml.safe_load((workdir / "grid.yaml").read_text())
        now = json.loads(json.dumps(grid_sections))
        if any(saved[k] != now[k] for k in ("data", "model", "loss", "train")):
            print(f"{workdir}/grid.yaml differs from this run's grid settings: run (a) again "
                  "(drop --grid-from) or use the same data/grid arguments", file=sys.stderr)
            return 2
        grid = load_search(workdir, "grid")
    else:
        grid = run_search(grid_sections, workdir)
    tpe = run_search(tpe_sections, workdir)
    g, t = grid["summary"], tpe["summary"]
    target = g["best_val_mean_iou"] - 0.01
    reach = first_reach(tpe, target)

    figures: dict[str, Any] = {
        "host": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or '?'})",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "prepare_s": prepare_s,
        "grid": {k: g[k] for k in ("trials", "status", "total_epochs", "wall_s", "sum_trial_s",
                                   "best_trial", "best_val_mean_iou")},
        "tpe_asha": {k: t[k] for k in ("trials", "status", "total_epochs", "wall_s",
                                       "sum_trial_s", "best_trial", "best_val_mean_iou")},
        "target": target, "reach": reach,
        "overhead": {"grid": overhead(grid, args.concurrency),
                     "tpe_asha": overhead(tpe, args.concurrency)},
        "overhead_parts": {"grid": overhead_parts(grid, args.concurrency),
                           "tpe_asha": overhead_parts(tpe, args.concurrency)},
    }
    print(f"\nbench_search on {figures['host']}; data {args.limit} scenes at "
          f"{args.size[0]}x{args.size[1]}, {args.copies} copy; per trial <= {args.epochs} "
          f"epochs, patience {args.patience}; {args.concurrency} trials at once")
    full = sorted(args.filters) == [2, 4, 6, 8, 12] and sorted(args.losses) == ["cce", "dice",
                                                                                "kld"]
    print(f"space: arch {{gym_unet, gym_resunet}} x filters {sorted(args.filters)} x loss "
          f"{sorted(args.losses)} ({'the paper' if full else 'reduced'} grid, kernel "
          f"{args.kernel}); ASHA grace {args.grace}, reduction {args.reduction_factor:g}, "
          f"{args.samples} TPE trials; prepare {prepare_s:.0f} s"
          + (" ((a) reused from --grid-from)" if args.grid_from else ""))
    for label, s in (("(a) grid to early stopping", g), ("(b) TPE + ASHA", t)):
        print(f"{label}: {s['trials']} trials {s['status']}, {s['total_epochs']} epochs, "
              f"{s['wall_s']:.0f} s wall, best val mean IoU {s['best_val_mean_iou']:.4f}")
    if reach:
        print(f"(b) reached {target:.4f} (= (a) best - 0.01) after {reach['epochs']} epochs / "
              f"{reach['seconds']:.0f} s ({reach['trial']} epoch {reach['epoch']}, "
              f"{reach['value']:.4f}): {reach['epochs'] / g['total_epochs']:.0%} of (a)'s "
              f"epochs, {reach['seconds'] / g['wall_s']:.0%} of its wall time (goal <= 25 %)")
    else:
        print(f"(b) never reached {target:.4f} (= (a) best - 0.01); its whole run used "
              f"{t['total_epochs'] / g['total_epochs']:.0%} of (a)'s epochs, "
              f"{t['wall_s'] / g['wall_s']:.0%} of its wall time")
    print(f"(b) whole run: {t['total_epochs'] / g['total_epochs']:.0%} of (a)'s epochs, "
          f"{t['wall_s'] / g['wall_s']:.0%} of its wall time")
    for label, run in (("(a)", grid), ("(b)", tpe)):
        s = run["summary"]
        print(f"Tune overhead {label}: wall {s['wall_s']:.1f} s x {args.concurrency} = "
              f"{s['wall_s'] * args.concurrency:.1f} slot-s vs {s['sum_trial_s']:.1f} s of "
              f"trial time: {overhead(run, args.concurrency):.1%} (goal <= 15 %)")
        parts = overhead_parts(run, args.concurrency)
        capacity = s["wall_s"] * args.concurrency
        print(f"  of which: start/finish {parts['fixed_s']:.0f} slot-s, gaps between trials "
              f"{parts['gaps_s']:.0f} slot-s, no trial left to run {parts['tail_s']:.0f} "
              f"slot-s; without the last: "
              f"{(capacity - s['sum_trial_s'] - parts['tail_s']) / capacity:.1%}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
