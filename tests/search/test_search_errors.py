"""``raygym search`` when things go wrong: a trial that fails, input that cannot work (exit 2,
one line naming the key), PBT's limits, and multi-worker trials (a TorchTrainer per trial)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import (
    OWN_RAY,
    one_error_line,
    read_leaderboard,
    run_cli,
    search_sections,
    shared_prepared,
    write_space,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def base_sections(tmp_path_factory: pytest.TempPathFactory,
                  make_s2_config: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("errors")
    return search_sections(make_s2_config, shared_prepared(tmp_path_factory), tmp / "results",
                           "s2_errors")


def _sections(base: dict[str, Any], **search: Any) -> dict[str, Any]:
    s = copy.deepcopy(base)
    s["search"].update(search)
    return s


# ---------------------------------------------------------------------- a failing trial
@pytest.fixture(scope="module")
def failing_search(tmp_path_factory: pytest.TempPathFactory, ray_session: None,
                   base_sections: dict[str, Any]) -> tuple[Path, Path]:
    """A 2-point grid; one point's learning rate (1e30, constant schedule) is valid input but
    makes the loss NaN in the first epoch, so the trial fails at run time. Tune's storage is a ``file://`` URI, as a remote store (``s3://``) is named: the
    best model is exported from Tune's checkpoint through ``Checkpoint.to_directory``.
    Returns (space file, results folder)."""
    tmp = tmp_path_factory.mktemp("failing")
    s = _sections(base_sections, algorithm="grid", scheduler="none", num_samples=1,
                  max_failures=0, storage_path=(tmp / "tune").as_uri())
    s["name"] = "s2_failing"
    s["model"] = {"arch": "gym_unet", "filters": 2, "kernel": 3}
    s["loss"] = {"name": "cce"}
    s["train"].update(max_epochs=1, lr_schedule="constant", max_lr={"grid": [1e-3, 1e30]})
    space = write_space(tmp / "failing.yaml", s)
    code, _ = run_cli(["search", str(space)])
    assert code == 0, "one good trial: the search finishes"
    return space, Path(s["search"]["results_dir"]) / "s2_failing"


@pytest.mark.slow
def test_failed_trial_is_marked_with_its_error(failing_search: tuple[Path, Path]) -> None:
    _, out = failing_search
    board = read_leaderboard(out)
    assert len(board) == 2
    failed = [r for r in board if r["status"] == "failed"]
    ok = [r for r in board if r["status"] != "failed"]
    assert len(failed) == 1 and len(ok) == 1
    assert ok[0]["status"] == "completed" and ok[0]["rank"] == "1", "failed trials rank last"
    err = failed[0]["error"]
    assert "NaN/inf" in err and "train.max_lr" in err, err
    assert "\n" not in err
    assert float(failed[0]["train.max_lr"]) == 1e30
    assert not failed[0]["best_val_mean_iou"]
    md = (out / "leaderboard.md").read_text()
    assert "## Failed trials" in md and failed[0]["trial_id"] in md
    summary = json.loads((out / "search.json").read_text())["summary"]
    assert summary["status"] == {"completed": 1, "failed": 1}
    # only the good trial is exported
    assert [p.name for p in (out / "best").iterdir()] == [f"rank1_{ok[0]['trial_id']}"]


@pytest.mark.slow
def test_resume_with_a_different_space_is_refused(failing_search: tuple[Path, Path],
                                                  capsys: pytest.CaptureFixture) -> None:
    space, out = failing_search
    text = space.read_text().replace("- 0.001\n", "- 0.002\n")  # same name, other grid point
    assert text != space.read_text()
    other = space.with_name("other.yaml")
    other.write_text(text)
    before = (out / "search.json").read_text()
    code, err = run_cli(["search", str(other), "--resume"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "different space" in line and str(out) in line
    # what differs is named
    assert "(train.max_lr grid [0.001, 1e+30] -> grid [0.002, 1e+30])" in line, line
    code, err = run_cli(["search", str(space), "--resume", "--set", "search.num_samples=3"],
                        capsys)
    assert code == 2
    line = one_error_line(err)
    # a larger count grows a search, but not a grid search: it already runs every point
    assert "search.algorithm: grid search runs every point" in line, line
    assert "resume with search.num_samples 1" in line, line
    assert (out / "search.json").read_text() == before, "the old search is untouched"


# ------------------------------------------------------------------------------ bad input
def _bad(tmp_path: Path, sections: dict[str, Any], capsys: pytest.CaptureFixture,
         *extra: str) -> str:
    space = write_space(tmp_path / "bad.yaml", sections)
    code, err = run_cli(["search", str(space), *extra], capsys)
    assert code == 2, err
    line = one_error_line(err)
    assert not (Path(sections["search"]["results_dir"]) / sections["name"]).exists(), \
        "nothing is written for a refused search"
    return line


def test_empty_space_is_refused(tmp_path, capsys, base_sections) -> None:
    s = copy.deepcopy(base_sections)
    s["model"] = {"arch": "gym_unet", "filters": 2, "kernel": 3}
    s["loss"] = {"name": "dice"}
    s["train"]["max_lr"] = 1e-3
    line = _bad(tmp_path, s, capsys)
    assert "search space is empty" in line and "bad.yaml" in line


def test_fixed_key_cannot_vary(tmp_path, capsys, base_sections) -> None:
    s = copy.deepcopy(base_sections)
    s["data"]["target_size"] = {"choice": [[64, 64], [128, 128]]}
    line = _bad(tmp_path, s, capsys)
    assert "data.target_size" in line and "cannot vary" in line


def test_reversed_bounds(tmp_path, capsys, base_sections) -> None:
    s = copy.deepcopy(base_sections)
    s["train"]["max_lr"] = {"loguniform": [1e-2, 1e-4]}
    line = _bad(tmp_path, s, capsys)
    assert "train.max_lr" in line and "reversed" in line


def test_loguniform_needs_positive_bounds(tmp_path, capsys, base_sections) -> None:
    s = copy.deepcopy(base_sections)
    s["model"]["dropout"] = {"loguniform": [0.0, 0.3]}
    line = _bad(tmp_path, s, capsys)
    assert "model.dropout" in line and "> 0" in line


def test_num_samples_zero(tmp_path, capsys, base_sections) -> None:
    line = _bad(tmp_path, _sections(base_sections, num_samples=0), capsys)
    assert "search.num_samples" in line


def test_metric_training_never_reports(tmp_path, capsys, base_sections) -> None:
    line = _bad(tmp_path, _sections(base_sections, metric="val_miou"), capsys)
    assert "search.metric" in line and "val_miou" in line
    assert "did you mean 'val_mean_iou'" in line


def test_metric_mode_mismatch(tmp_path, capsys, base_sections) -> None:
    line = _bad(tmp_path, _sections(base_sections, metric="val_loss", mode="max"), capsys)
    assert "search.mode" in line and "mode: min" in line


@pytest.mark.timeout(180)
def test_more_resources_than_the_cluster_has(tmp_path, capsys, base_sections,
                                             ray_session) -> None:
    s = copy.deepcopy(base_sections)
    s["resources"]["cpus_per_worker"] = 64
    line = _bad(tmp_path, s, capsys)
    assert "resources" in line and "64 CPU" in line and "do not fit" in line
    # checked against the cluster after the file was parsed, the key still names its file
    assert line.startswith(f"error: {tmp_path / 'bad.yaml'}: resources: ")


@pytest.mark.timeout(300)
def test_a_dataset_training_cannot_use_is_refused(tmp_path, capsys, base_sections,
                                                  ray_session) -> None:
    """Checked as `raygym train` checks it. A batch size larger than the training split: its
    trials trained on the whole split in one batch, as a smaller candidate did."""
    from raygym.config import validate_experiment
    from raygym.data.dataset import DATASET_FORMAT
    from raygym.data.prepare import data_fingerprint

    s = copy.deepcopy(base_sections)
    s["train"]["batch_size"] = {"choice": [2, 16]}
    s["data"]["prepared"] = str(tmp_path / "ds")  # a card of 8 train and 4 val rows
    config = validate_experiment({"name": "d", "data": s["data"]}, "<test>")
    rows = {"rows": 8, "sources": 8, "pixels_per_class": [1] * 4, "ignored_pixels": 0}
    for split in ("train", "val"):
        (tmp_path / "ds" / "shards" / f"split={split}").mkdir(parents=True)
    card = {"format": DATASET_FORMAT, "name": "d", "classes": list(config.data.classes),
            "bands": 4, "dtype": "uint8", "target_size": list(config.data.target_size),
            "ignore_index": 255, "config_hash": data_fingerprint(config.data), "data_config": {},
            "remap_changed": {}, "sources": [], "created": "",
            "splits": {"train": rows, "val": {**rows, "rows": 4}}}
    (tmp_path / "ds" / "card.json").write_text(json.dumps(card))
    line = _bad(tmp_path, s, capsys)
    assert line == (f"error: {tmp_path / 'bad.yaml'}: train.batch_size: the search's candidate "
                    "16 is larger than the training split (8 rows) (fix: use at most 8, or add "
                    "scenes / data.augment.copies)")
    # no val rows: its trials scored NaN and a NaN "best" was exported, where train refuses
    card["splits"]["val"]["rows"] = 0
    (tmp_path / "ds" / "card.json").write_text(json.dumps(card))
    line = _bad(tmp_path, s, capsys)
    assert "data.split.val: dataset has no validation rows" in line and "--overwrite" in line


def test_resume_without_a_search(tmp_path, capsys, base_sections) -> None:
    line = _bad(tmp_path, base_sections, capsys, "--resume")
    assert "nothing to resume" in line


def test_pbt_cannot_mutate_the_network(tmp_path, capsys, base_sections) -> None:
    line = _bad(tmp_path, _sections(base_sections, scheduler="pbt"), capsys)
    assert "PBT" in line and "model.arch" in line


# -------------------------------------------------------------------------------- PBT
@pytest.mark.slow
def test_pbt_over_learning_rate(tmp_path, ray_session, base_sections) -> None:
    # a learning rate too small to learn in 4 epochs beside a good one: the bottom trial
    # must exploit the top one (PBT starts from these points, then explores by itself)
    s = _sections(base_sections, scheduler="pbt", num_samples=2, max_concurrent=2,
                  grace_period=1, points_to_evaluate=[{"train.max_lr": 1e-5},
                                                      {"train.max_lr": 2e-3}])
    s["name"] = "s2_pbt"
    s["model"] = {"arch": "gym_unet", "filters": 2, "kernel": 3}
    s["loss"] = {"name": "cce"}
    s["train"].update(max_epochs=4, max_lr={"loguniform": [1e-5, 3e-3]})
    s["search"]["results_dir"] = str(tmp_path / "results")
    code, _ = run_cli(["search", str(write_space(tmp_path / "pbt.yaml", s))])
    assert code == 0
    out = tmp_path / "results" / "s2_pbt"
    board = read_leaderboard(out)
    assert len(board) == 2
    for r in board:
        assert r["status"] == "completed" and r["epochs"] == "4", r
    # PBT really acted: the 1e-5 trial, hopeless on its own, took the other trial's
    # checkpoint and a perturbed learning rate (x 0.8 or x 1.2 of 2e-3, or a resample).
    final_lrs = sorted(float(r["train.max_lr"]) for r in board)
    assert final_lrs != [1e-5, 2e-3], f"PBT never exploited: {final_lrs}"
    assert min(final_lrs) > 1e-5
    assert min(float(r["best_val_mean_iou"]) for r in board) > 0.2, "both trials learned"
    assert (out / "best").is_dir() and len(list((out / "best").iterdir())) == 2


# --------------------------------------------------------------- multi-worker trials
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_workers_per_trial(tmp_path, base_sections) -> None:
    """A TorchTrainer (2 DDP workers) per trial, in its own process and Ray (2 CPUs): 2
    workers x 1 CPU take every CPU (the trial itself holds none: its 0.01 CPU left the
    workers waiting for ever; the training rows are read before the workers start)."""
    # ranked by Dice: the TorchTrainer path reports it at the kept epoch as well
    # one trial: the DDP path is what this checks; starting a TorchTrainer costs ~30 s per trial
    s = _sections(base_sections, num_samples=1, max_concurrent=1, max_failures=0,
                  results_dir=str(tmp_path / "results"), metric="val_mean_dice")
    s["name"] = "s2_ddp"
    s["train"]["max_epochs"] = 2
    s["resources"] = {"workers_per_trial": 2, "cpus_per_worker": 1, **OWN_RAY}
    space = write_space(tmp_path / "ddp.yaml", s)
    env = {**os.environ, "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "90"}
    proc = subprocess.run([sys.executable, "-m", "raygym.cli", "search", str(space)],
                          capture_output=True, text=True, timeout=540, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = tmp_path / "results" / "s2_ddp"
    board = read_leaderboard(out)
    assert len(board) == 1
    for r in board:
        assert r["status"] in ("completed", "asha-pruned", "early-stopped"), r
        assert 0.0 <= float(r["best_val_mean_dice"]) <= 1.0
        assert int(r["epochs"]) >= 1
    lines = (out / "ray" / "s2_ddp" / board[0]["trial_id"] / "result.json").read_text()
    assert json.loads(lines.splitlines()[-1])["workers"] == 2, "trained by 2 DDP workers"
    # Train's checkpoints and metrics live in the results folder, not in Ray's session dir
    assert (out / "ray" / "train_runs" / board[0]["trial_id"] / "metrics.csv").is_file()
    best = sorted(p.name for p in (out / "best").iterdir())
    assert best == sorted(f"rank{int(r['rank'])}_{r['trial_id']}" for r in board)
    card = json.loads((out / "best" / best[0] / "model_card.json").read_text())
    assert card["metrics"]["val_mean_dice"] == pytest.approx(
        float(next(r for r in board if r["rank"] == "1")["best_val_mean_dice"]), abs=1e-5)
