"""Tests of raygym.convert, one module per module; shared here: a typical Gym config and the
helpers that write and convert it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raygym.convert import convert_gym_config
from raygym.search.space_config import load_experiment

# GYM_REFERENCE.md's typical config (plus Gym's usual housekeeping keys).
TYPICAL: dict[str, Any] = {
    "TARGET_SIZE": [768, 768],
    "MODEL": "resunet",
    "NCLASSES": 4,
    "BATCH_SIZE": 8,
    "N_DATA_BANDS": 3,
    "DO_TRAIN": True,
    "PATIENCE": 10,
    "MAX_EPOCHS": 100,
    "VALIDATION_SPLIT": 0.2,
    "FILTERS": 6,
    "KERNEL": 9,
    "STRIDE": 2,
    "LOSS": "dice",
    "LOSS_WEIGHTS": False,
    "DROPOUT": 0.1,
    "DROPOUT_CHANGE_PER_LAYER": 0.0,
    "DROPOUT_TYPE": "standard",
    "USE_DROPOUT_ON_UPSAMPLING": False,
    "ROOT_STRING": "hatteras_l8_aug_768",
    "FILTER_VALUE": 3,
    "DOPLOT": True,
    "RAMPUP_EPOCHS": 20,
    "SUSTAIN_EPOCHS": 0.0,
    "EXP_DECAY": 0.9,
    "START_LR": 1e-7,
    "MIN_LR": 1e-7,
    "MAX_LR": 1e-4,
    "AUG_ROT": 5,
    "AUG_ZOOM": 0.05,
    "AUG_WIDTHSHIFT": 0.05,
    "AUG_HEIGHTSHIFT": 0.05,
    "AUG_HFLIP": True,
    "AUG_VFLIP": False,
    "AUG_LOOPS": 1,
    "AUG_COPIES": 5,
    "REMAP_CLASSES": {"0": 0, "1": 0, "2": 1, "3": 2, "4": 3},
    "TESTTIMEAUG": True,
    "HOT_START": "weights/old.h5",
    "SET_GPU": "0",
}


def write_gym(tmp_path: Path, name: str = "hatteras.json", **changes: Any) -> Path:
    cfg = {**TYPICAL, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del cfg[key]
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=2))
    return path


def convert_and_load(tmp_path: Path, **changes: Any) -> tuple[Any, list[str], Path]:
    out, skipped = convert_gym_config(write_gym(tmp_path, **changes))
    config, space = load_experiment(out, base_dir=tmp_path)
    assert not space
    return config, skipped, out
