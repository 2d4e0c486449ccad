"""Hand-made curve tables whose answers are known, and a search space over them, for the
replay, simulator, BOHB and rehearsal tests (the ``grid_table`` fixture: ``conftest.py``)."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from raygym.search.space_config import load_experiment

from . import write_space

COLUMNS = ["config_id", "param:model.arch", "param:model.filters", "param:loss.name",
           "param:train.max_lr", "seed", "epoch", "val_mean_iou", "val_loss", "train_loss",
           "lr", "seconds", "val_iou/a", "val_iou/b"]
ARCHS, FILTERS, LRS = ["gym_unet", "gym_resunet"], [2, 4, 8], [0.001, 0.01]
LOSSES = ["dice", {"cce": 0.5, "dice": 0.5}]
WINNER = ("gym_resunet", 8, json.dumps(LOSSES[1], sort_keys=True), 0.001)


def write_table(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def row(cid: int, params: tuple[Any, ...], seed: int, epoch: int, iou: float, loss: float,
        seconds: float = 1.0) -> list[Any]:
    return [cid, *params, seed, epoch, iou, loss, loss, 1e-3, seconds, iou, iou]



SPACE = {
    "name": "replay",
    "data": {"images": "nowhere/images", "labels": "nowhere/labels", "classes": ["a", "b"]},
    "model": {"arch": {"choice": ARCHS}, "filters": {"choice": FILTERS}},
    "loss": {"name": {"choice": LOSSES}},
    "train": {"max_lr": {"choice": LRS}, "max_epochs": 8, "patience": 3,
              "rampup_epochs": 1},
    "search": {"num_samples": 24, "max_concurrent": 2, "grace_period": 1,
               "reduction_factor": 3},
}


def load_space(tmp_path: Path, **search: Any) -> tuple[Any, Any]:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(search)
    return load_experiment(write_space(tmp_path / "space.yaml", sections))


def make_grid_table(folder: Path) -> Path:
    """24 configurations x 2 seeds x 8 epochs: saturating curves, one clear winner
    (WINNER, plateau 0.8); the others plateau at 0.3-0.5, bigger models higher."""
    rows, rng = [], np.random.default_rng(0)
    points = list(itertools.product(ARCHS, FILTERS, LOSSES, LRS))
    for cid, (arch, filters, loss, lr) in enumerate(points):
        params = (arch, filters, json.dumps(loss, sort_keys=True) if isinstance(loss, dict)
                  else loss, lr)
        plateau = 0.8 if params == WINNER else 0.3 + 0.2 * cid / len(points)
        for seed, epoch in itertools.product((0, 1), range(1, 9)):
            iou = plateau * (1 - math.exp(-epoch / 2)) + rng.normal(0, 0.005)
            rows.append(row(cid, params, seed, epoch, iou, 1 - iou, 0.5 + filters / 8))
    return write_table(folder / "grid.csv", rows)
