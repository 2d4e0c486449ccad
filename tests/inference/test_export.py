"""Export of a search's best models: a checkpoint fetched through Tune's Checkpoint API
becomes an artifact; an export with nothing to export never empties an existing ``best/``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from raygym.config import ExperimentConfig, validate_experiment
from raygym.data.dataset import DATASET_FORMAT
from raygym.data.prepare import data_fingerprint
from raygym.errors import DataError
from raygym.inference.artifact import load_artifact
from raygym.inference.export import export_top_models
from raygym.models import build_model
from raygym.search.leaderboard import Leaderboard

CLASSES = ["water", "sand", "land"]


@pytest.fixture
def config(tmp_path: Path) -> ExperimentConfig:
    """A config whose prepared dataset is a hand-made card (3 bands, 3 classes)."""
    config = validate_experiment({
        "name": "exp",
        "data": {"images": str(tmp_path / "i"), "labels": str(tmp_path / "l"),
                 "classes": CLASSES, "target_size": [32, 32],
                 "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3},
        "search": {"top_k": 2},
    })
    split = {"rows": 2, "sources": 2, "pixels_per_class": [1, 1, 1], "ignored_pixels": 0}
    card = {"format": DATASET_FORMAT, "name": "d", "classes": CLASSES, "bands": 3,
            "dtype": "uint8", "target_size": [32, 32], "ignore_index": 255,
            "config_hash": data_fingerprint(config.data), "data_config": {},
            "remap_changed": {}, "sources": [], "created": "",
            "splits": {"train": split, "val": split}}
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "card.json").write_text(json.dumps(card))
    return config


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model("gym_unet", in_channels=3, num_classes=3, filters=2, kernel=3)
    path.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(path / "best.safetensors"))
    (path / "state.json").write_text(json.dumps({"epoch": 2, "best_epoch": 1,
                                                 "best_metrics": {"val_mean_iou": 0.5}}))
    return path


def _board(rows: list[dict]) -> Leaderboard:
    return Leaderboard(rows=rows, classes=CLASSES, param_keys=[], metric="val_mean_iou",
                       mode="max")


def test_top_k_are_exported_from_their_checkpoints(config: ExperimentConfig,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "results"
    # aaa and its repeat aab are runs of one configuration: one model, its best run
    rows = [{"trial_id": t, "status": "completed", "epochs": 2,
             "params": {"model.dropout": drop, "train.seed": seed},
             "checkpoint": str(_checkpoint(out / "ray" / t / "ckpt", seed)),
             "trial_path": str(out / "ray" / "exp" / t)}
            for seed, (t, drop) in enumerate((("aaa", 0.1), ("aab", 0.1), ("bbb", 0.2),
                                               ("ccc", 0.3)))]
    exported = export_top_models(_board(rows), config, out)
    assert [p.name for p in exported] == ["rank1_aaa", "rank2_bbb"]
    model, card, _ = load_artifact(exported[0])
    assert card.classes == CLASSES and card.training["trial_id"] == "aaa"
    saved = load_file(str(out / "ray" / "aaa" / "ckpt" / "best.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert not list(out.glob(".best.*")), "no temp folder left behind"


def test_nothing_to_export_keeps_the_previous_best(config: ExperimentConfig,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "results"
    (out / "best" / "rank1_old").mkdir(parents=True)
    (out / "best" / "rank1_old" / "model_card.json").write_text("{}")
    failed = [{"trial_id": "zzz", "status": "failed", "epochs": 0, "params": {},
               "checkpoint": None, "trial_path": str(out / "ray" / "exp" / "zzz")}]
    gone = [{"trial_id": "yyy", "status": "completed", "epochs": 1, "params": {},
             "checkpoint": str(out / "ray" / "removed"), "trial_path": ""}]
    assert export_top_models(_board(failed + gone), config, out) == []
    assert [p.name for p in (out / "best").iterdir()] == ["rank1_old"]
    assert not list(out.glob(".best.*"))


def test_a_best_folder_raygym_did_not_make_is_refused_not_deleted(
        config: ExperimentConfig, tmp_path: Path) -> None:
    out = tmp_path / "results"
    (out / "best").mkdir(parents=True)
    (out / "best" / "my_notes.txt").write_text("mine")
    rows = [{"trial_id": "aaa", "status": "completed", "epochs": 2, "params": {},
             "checkpoint": str(_checkpoint(out / "ray" / "aaa" / "ckpt", 0)),
             "trial_path": ""}]
    with pytest.raises(DataError, match="not made by raygym"):
        export_top_models(_board(rows), config, out)
    assert (out / "best" / "my_notes.txt").read_text() == "mine"
    assert not list(out.glob(".best.*"))
    (out / "best" / "my_notes.txt").unlink()  # an empty best/ is raygym's to fill
    assert [p.name for p in export_top_models(_board(rows), config, out)] == ["rank1_aaa"]


def test_a_multi_worker_trial_exports_its_newest_whole_checkpoint(tmp_path: Path) -> None:
    """A DDP trial's Train run folder, whose newest checkpoint a kill cut short: the export
    takes the newest whole one, as a resume would."""
    from raygym.inference.export import trial_checkpoint
    from tests.train import cut_short, whole_checkpoint

    runs = tmp_path / "storage" / "train_runs" / "t1"
    for epoch in (1, 2, 3):
        whole_checkpoint(runs / f"checkpoint_{epoch}", epoch)
    (runs / "checkpoint_3" / "state.json").write_text("")
    cut_short(whole_checkpoint(runs / "checkpoint_4", 4) / "best.safetensors")
    row = {"trial_id": "t1", "trial_path": str(tmp_path / "storage" / "exp" / "t1")}
    got = trial_checkpoint(row, str(tmp_path / "storage"), tmp_path / "scratch")
    assert got is not None and json.loads((got / "state.json").read_text())["epoch"] == 2
