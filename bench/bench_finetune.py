"""Does starting from another campaign's model (``train.init_weights``) pay when a new
campaign has few labelled scenes?

The aerial set holds two survey campaigns: 76 scenes from 2018 and 80 from 2020. A model is
trained on 2018 (the "site A" model); 2020 is prepared with only ``--shots`` scenes to train
on, 4 to validate and the rest to test. Per training seed, a 2020 model is trained from
scratch and one from the 2018 model's weights, with the same settings, and one from those
weights at a lower learning rate (``--tuned-lr``), and with ``--encoder-scales`` ones whose
encoder learns at that share of the rate (``train.encoder_lr_scale``); all are scored on the same 2020 test scenes (``raygym evaluate --split test``), beside the 2018 model as it is::

    python bench/bench_finetune.py --workdir /tmp/finetune --seeds 0 1 2 --shots 8

Printed: test mean IoU, the 95 % interval of its difference to the 2018 model's on the same
scenes (a paired bootstrap over them), epochs run and seconds per run, then the median and
range per arm.
Needs ``../shared/data``; ~7 min on 2 cores at the defaults.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "usgs_coastal_aerial_3class"
CLASSES = ["deep_water", "shallow_water", "dry_land"]
VAL_SCENES = 4


def write_campaign(prefix: str, dest: Path) -> int:
    """The pairs whose image name starts with ``prefix``, with absolute paths; their count."""
    with (DATA / "pairs.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if Path(r["image"]).name.startswith(prefix)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: str((DATA / row[k]).resolve()) for k in ("image", "label")})
    return len(rows)


def experiment(args: argparse.Namespace, workdir: Path, name: str, manifest: Path,
               split: dict[str, float], seed: int, init: Path | None,
               lr: float | None = None, encoder_scale: float = 1.0) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"manifest": str(manifest), "classes": CLASSES, "unknown_labels": "ignore",
                 "target_size": list(args.size), "split": {**split, "seed": 42},
                 "augment": {"copies": 0}, "prepared": str(workdir / f"prepared_{name}")},
        "model": {"arch": "gym_resunet", "filters": args.filters, "kernel": 3,
                  "dropout": 0.1},
        "loss": {"name": "dice"},
        "train": {"batch_size": 4, "max_epochs": args.epochs, "patience": args.patience,
                  "monitor": "val_mean_iou", "lr_schedule": "gym", "start_lr": 1e-5,
                  "min_lr": 1e-5, "max_lr": lr or args.lr, "rampup_epochs": 2, "seed": seed,
                  "output_dir": str(workdir / "runs"), "encoder_lr_scale": encoder_scale,
                  **({"init_weights": str(init)} if init else {})},
        "resources": {"workers_per_trial": 1, "cpus_per_worker": 2, "num_cpus": 2,
                      "object_store_memory": 512 * 2**20},
    }


def train_and_score(sections: dict[str, Any], run: str,
                    baseline: Any = None) -> dict[str, Any]:
    """Train one run (its own name under ``runs/``) and score its best model on the test
    split of its dataset; ``baseline``: another model's evaluation of the same split, whose
    mean IoU this one's is compared with (a paired bootstrap interval of the difference)."""
    from rich.console import Console

    import raygym
    from raygym.evaluate_intervals import difference_interval

    quiet = Console(file=io.StringIO())
    tick = time.perf_counter()
    folder = raygym.train_model(sections, name=run, console=quiet)
    seconds = time.perf_counter() - tick
    result = raygym.evaluate_model(folder / "best", split="test")
    with (folder / "metrics.csv").open(newline="") as fh:
        epochs = sum(1 for _ in csv.DictReader(fh))
    diff = (difference_interval(result.unit_confusions, baseline.unit_confusions)
            if baseline is not None else None)
    return {"run": run, "test_mean_iou": result.mean_iou, "epochs": epochs,
            "seconds": round(seconds, 1), "best": str(folder / "best"),
            "vs_as_is": None if diff is None else [diff.low, diff.high]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_finetune"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=8, help="2020 scenes to train on")
    parser.add_argument("--size", type=int, nargs=2, default=[96, 128])
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tuned-lr", type=float, default=1e-4,
                        help="a third arm: from the 2018 model at this max_lr")
    parser.add_argument("--encoder-scales", type=float, nargs="*", default=[],
                        help="more arms: from the 2018 model with train.encoder_lr_scale at "
                        "each (0: the encoder stays as loaded)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["scratch", "tuned-lr"],
                        help="arms not to run")
    args = parser.parse_args()
    import raygym

    work = args.workdir.resolve()
    source_n = write_campaign("2018", work / "campaign_2018.csv")
    target_n = write_campaign("2020", work / "campaign_2020.csv")
    test = (target_n - args.shots - VAL_SCENES) / target_n
    target_split = {"val": VAL_SCENES / target_n, "test": test}
    print(f"2018: {source_n} scenes (split 0.7 / 0.2 / 0.1); 2020: {target_n} scenes, "
          f"{args.shots} to train, {VAL_SCENES} to validate, the rest to test")

    source = experiment(args, work, "campaign2018", work / "campaign_2018.csv",
                        {"val": 0.2, "test": 0.1}, 0, None)
    site_a = work / "runs" / "campaign2018" / "best"
    if not site_a.exists():
        site_a = Path(train_and_score(source, "campaign2018")["best"])
    rows: list[dict[str, Any]] = []
    target = experiment(args, work, "campaign2020", work / "campaign_2020.csv",
                        target_split, 0, None)
    raygym.prepare_dataset(target)
    as_is = raygym.evaluate_model(site_a, split="test", dataset=target["data"]["prepared"])
    span = as_is.intervals["mean_iou"] if as_is.intervals else None
    print(f"2018 model as it is: test mIoU {as_is.mean_iou:.3f}"
          + (f" (95 % interval {span.text()} over {as_is.num_images} scenes)" if span else ""))
    rows.append({"arm": "2018 model as it is", "seed": "-", "test_mean_iou": as_is.mean_iou,
                 "epochs": 0, "seconds": 0.0})
    for seed in args.seeds:  # the arms alternate, so machine load falls on both alike
        arms = [("from scratch", None, args.lr, 1.0)] * ("scratch" not in args.skip) + [
            ("from the 2018 model", site_a, args.lr, 1.0)] + [
            (f"2018 model, lr {args.tuned_lr:g}", site_a, args.tuned_lr, 1.0)] * (
            "tuned-lr" not in args.skip) + [
            (f"2018 model, encoder x{s:g}", site_a, args.lr, s) for s in args.encoder_scales]
        for arm, init, lr, scale in arms:
            sections = experiment(args, work, "campaign2020", work / "campaign_2020.csv",
                                  target_split, seed, init, lr, scale)
            run = f"{'tuned' if init else 'scratch'}_lr{lr:g}_enc{scale:g}_s{seed}"
            rows.append({"arm": arm, "seed": seed,
                         **train_and_score(sections, f"{run}_{time.strftime('%H%M%S')}",
                                           as_is)})
            r = rows[-1]
            vs = r["vs_as_is"]
            print(f"{arm:22s} seed {seed}: test mIoU {r['test_mean_iou']:.3f}"
                  + (f" (minus the 2018 model's: {vs[0]:+.3f} to {vs[1]:+.3f})" if vs else "")
                  + f", {r['epochs']} epochs, {r['seconds']:.0f} s", flush=True)
    print(f"\n{'arm':22s} {'runs':>4s} {'median':>7s} {'min':>6s} {'max':>6s} "
          f"{'epochs':>6s} {'s':>5s}")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        scores = [r["test_mean_iou"] for r in mine]
        print(f"{arm:22s} {len(mine):4d} {statistics.median(scores):7.3f} {min(scores):6.3f} "
              f"{max(scores):6.3f} {statistics.median(r['epochs'] for r in mine):6.0f} "
              f"{statistics.median(r['seconds'] for r in mine):5.0f}")
    (work / "finetune.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
