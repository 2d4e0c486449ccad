"""``raygym train`` on a real local Ray (the session's 2 CPUs): DDP over 2 gloo workers equals a
single-process evaluation, an end-to-end run learns and writes its outputs, a killed run
resumes without repeating epochs, bad input fails fast with exit code 2, a failed run exits 1."""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from raygym.cli import main
from raygym.config import ExperimentConfig, validate_experiment
from raygym.data.dataset import PreparedDataset
from raygym.inference.artifact import load_artifact, read_model_card
from raygym.train.loop import NumpyBatches, build_model_for, evaluate_model
from raygym.train.ray_train import append_metrics_row
from raygym.train.run import _truncate_metrics, latest_checkpoint, read_metrics

from . import cut_short, whole_checkpoint

CPU = torch.device("cpu")
COUNT_METRICS = ("num_pixels", "accuracy", "mcc", "mean_iou", "mean_dice", "mean_precision",
                 "mean_recall", "fw_iou")


@pytest.fixture
def sections(tmp_path: Path, prepared: PreparedDataset,
             make_s2_config: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """S2 experiment on the shared prepared set; runs go to ``tmp_path/runs``."""
    s = make_s2_config(prepared.path)
    s["model"] = {"arch": "gym_unet", "filters": 4, "kernel": 3}
    s["train"] = {"batch_size": 8, "max_epochs": 2, "rampup_epochs": 0, "max_lr": 3e-3,
                  "precision": "fp32", "output_dir": str(tmp_path / "runs"),
                  "precise_bn_images": 16}
    return s


def experiment(write_config: Any, path: Path, sections: dict[str, Any],
               **changes: dict[str, Any]) -> Path:
    s = copy.deepcopy(sections)
    for name, values in changes.items():
        s[name] = {**s.get(name, {}), **values}
    return write_config(path, **s)


def run_dir_of(sections: dict[str, Any], name: str) -> Path:
    return Path(sections["train"]["output_dir"]) / name


def val_evaluation(model: torch.nn.Module, config: ExperimentConfig, prepared: PreparedDataset
                   ) -> dict[str, Any]:
    """Single-process, whole-split evaluation (no DDP, no Ray)."""
    card = prepared.card
    batches = NumpyBatches(None, prepared.load_numpy("val"), config.train.batch_size)
    return evaluate_model(model, batches.val_batches(), None, card.num_classes, CPU, "fp32",
                          False, card.classes)


def untrained_val_iou(sections: dict[str, Any], prepared: PreparedDataset) -> float:
    config = validate_experiment(copy.deepcopy(sections))
    torch.manual_seed(0)
    model = build_model_for(config, prepared.card.bands, prepared.card.num_classes)
    return float(val_evaluation(model, config, prepared)["mean_iou"])


# --------------------------------------------------------------------------- full runs
@pytest.mark.slow
def test_two_worker_ddp_equals_single_process_evaluation(
        tmp_path: Path, sections: dict[str, Any], prepared: PreparedDataset,
        write_config: Any) -> None:
    cfg = experiment(write_config, tmp_path / "ddp.yaml", sections,
                     resources={"workers_per_trial": 2, "cpus_per_worker": 1})
    assert main(["train", str(cfg), "--name", "ddp"]) == 0
    run = run_dir_of(sections, "ddp")
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(r["workers"] == 2 for r in rows)

    model, card, config = load_artifact(run / "best")
    best_epoch = int(card.training["best_epoch"])
    best = rows[best_epoch - 1]
    single = val_evaluation(model, config, prepared)
    # Same confusion matrix: every count-derived metric is bit-identical.
    assert single["num_pixels"] == sum(prepared.card.splits["val"]["pixels_per_class"])
    for key in COUNT_METRICS:
        assert best[f"val_{key}"] == single[key], key
        assert card.metrics[f"val_{key}"] == single[key], key
    for name in card.classes:
        for kind in ("iou", "f1", "precision", "recall"):
            key = f"{kind}/{name}"
            assert best[f"val_{key}"] == pytest.approx(single[key], abs=0, nan_ok=True), key
    assert best["val_kld"] == pytest.approx(single["kld"], rel=1e-6)  # float sums, any order


@pytest.mark.slow
def test_cli_train_end_to_end_learns_and_writes_its_outputs(
        tmp_path: Path, sections: dict[str, Any], prepared: PreparedDataset,
        write_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = experiment(write_config, tmp_path / "e2e.yaml", sections)
    assert main(["train", str(cfg), "--name", "e2e"]) == 0
    run = run_dir_of(sections, "e2e")
    for name in ("config.yaml", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_metrics(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["stop_reason"] == "completed"
    card = read_model_card(run / "best")
    assert card.classes == ["water", "surf", "wet_sand", "dry_land"] and card.in_channels == 4
    assert card.training["epochs_run"] == 2
    # how prepare resized the training scenes travels with the model (predict --scale auto)
    assert card.training_scale == prepared.card.train_scale["median"] < 1
    trained = card.metrics["val_mean_iou"]
    untrained = untrained_val_iou(sections, prepared)
    assert trained > 0.3 and trained > untrained + 0.15, (untrained, trained)
    assert trained == max(r["val_mean_iou"] for r in rows
                          if r["epoch"] == card.training["best_epoch"])
    assert "mean" in capsys.readouterr().out  # the final per-class table


@pytest.mark.slow
def test_nan_loss_is_a_failed_run_exit_1_with_a_clear_message(
        tmp_path: Path, sections: dict[str, Any], write_config: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = experiment(write_config, tmp_path / "nan.yaml", sections,
                     train={"lr_schedule": "constant", "max_lr": 1e25, "max_epochs": 3})
    assert main(["train", str(cfg), "--name", "nan"]) == 1
    err = capsys.readouterr().err
    assert "NaN" in err and "train.max_lr" in err
    rows = read_metrics(run_dir_of(sections, "nan") / "metrics.csv")
    assert rows[-1]["stop_reason"] == "nan" and len(rows) == 1


def _session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of every process in session ``sid``."""
    out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,sid=,args="], capture_output=True,
                         text=True, check=True).stdout
    procs = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and int(parts[1]) == sid:
            procs[int(parts[0])] = parts[2] if len(parts) > 2 else ""
    return procs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # zombies are gone
    except (OSError, IndexError):
        return False


@pytest.mark.slow
def test_killed_run_resumes_without_repeating_epochs(
        tmp_path: Path, sections: dict[str, Any], write_config: Any) -> None:
    max_epochs = 4
    cfg = experiment(write_config, tmp_path / "kill.yaml", sections,
                     train={"max_epochs": max_epochs},
                     resources={"num_cpus": 2, "object_store_memory": 100_000_000})
    run = run_dir_of(sections, "killed")
    metrics = run / "metrics.csv"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own local Ray
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "raygym.cli", "train", str(cfg),
                             "--name", "killed"], cwd=tmp_path, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    procs: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 400
        while len(read_metrics(metrics)) < 2:
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no 2nd epoch within 400 s"
            time.sleep(0.1)
        procs = _session_processes(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        done = read_metrics(metrics)
        assert 2 <= len(done) < max_epochs
        assert any("raylet" in cmd for cmd in procs.values()), procs  # it had its own Ray
        deadline = time.monotonic() + 60
        while (left := [p for p in procs if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, {p: procs[p][:80] for p in left}
    finally:
        log.close()
        for pid in procs:  # never leave a stray raylet behind, even when an assert failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _remove_ray_sessions(procs)

    assert main(["train", str(cfg), "--resume", str(run)]) == 0
    rows = read_metrics(metrics)
    assert [r["epoch"] for r in rows] == list(range(1, max_epochs + 1))
    assert rows[0] == done[0]  # the checkpointed epochs were kept, not rerun
    assert rows[-1]["stop_reason"] == "completed"
    card = read_model_card(run / "best")
    assert card.training["epochs_run"] == max_epochs

    # the finished run resumed once more: its last epoch is reported again, listed once
    assert main(["train", str(cfg), "--resume", str(run)]) == 0
    assert [r["epoch"] for r in read_metrics(metrics)] == list(range(1, max_epochs + 1))


def test_an_epoch_reported_again_replaces_its_row(tmp_path: Path) -> None:
    from raygym.train.ray_train import append_metrics_row

    path = tmp_path / "metrics.csv"
    for epoch, loss in ((1, 0.9), (2, 0.7), (2, 0.7), (3, 0.5)):
        append_metrics_row(path, {"epoch": epoch, "val_loss": loss, "stop_reason": ""})
    append_metrics_row(path, {"epoch": 3, "val_loss": 0.5, "stop_reason": "completed"})
    rows = read_metrics(path)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["stop_reason"] == "completed"


def _remove_ray_sessions(procs: dict[int, str]) -> None:
    """Delete the /tmp/ray/session_* folders of a killed Ray (named in its command lines)."""
    for cmd in procs.values():
        for match in re.finditer(r"(/tmp/ray/session_[\w.-]+)", cmd):
            shutil.rmtree(match.group(1), ignore_errors=True)


# --------------------------------------------------------------------------- bad input
def test_classes_that_differ_from_the_dataset_exit_2(
        tmp_path: Path, sections: dict[str, Any], write_config: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = experiment(write_config, tmp_path / "c.yaml", sections,
                     data={"classes": ["water", "surf", "sand", "land"]})
    assert main(["train", str(cfg), "--name", "c"]) == 2
    assert "data.classes" in capsys.readouterr().err
    assert not run_dir_of(sections, "c").exists()


def test_a_dataset_of_other_settings_names_them(
        tmp_path: Path, sections: dict[str, Any], write_config: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = experiment(write_config, tmp_path / "s.yaml", sections,
                     data={"split": {"val": 0.3, "test": 0.1, "seed": 42}})
    assert main(["train", str(cfg), "--name", "s"]) == 2
    err = capsys.readouterr().err
    assert "prepared from different data settings (data.split.val 0.2 -> 0.3)" in err, err
    assert not run_dir_of(sections, "s").exists()


def test_a_missing_dataset_is_prepared_first(tmp_path: Path, sections: dict[str, Any],
                                             write_config: Any,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``raygym train`` prepares a dataset that is not there yet (as a search does), so bad
    data is prepare's one-line error, and nothing is left behind."""
    cfg = experiment(write_config, tmp_path / "m.yaml", sections,
                     data={"prepared": str(tmp_path / "nowhere"),
                           "images": str(tmp_path / "no_images")})
    assert main(["train", str(cfg), "--name", "m"]) == 2
    captured = capsys.readouterr()
    assert "preparing" in captured.out and "nowhere" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "no_images" in err[0] and "data.images" in err[0]
    assert not (tmp_path / "nowhere").exists() and not run_dir_of(sections, "m").exists()


def test_batch_larger_than_the_training_split_exits_2(
        tmp_path: Path, sections: dict[str, Any], prepared: PreparedDataset,
        write_config: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rows = prepared.rows("train")
    cfg = experiment(write_config, tmp_path / "b.yaml", sections,
                     train={"batch_size": rows + 1})
    assert main(["train", str(cfg), "--name", "b"]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size" in err and str(rows) in err


def test_resources_the_cluster_cannot_give_exit_2_quickly(
        tmp_path: Path, sections: dict[str, Any], write_config: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = experiment(write_config, tmp_path / "r.yaml", sections,
                     resources={"workers_per_trial": 8, "cpus_per_worker": 1})
    started = time.monotonic()
    assert main(["train", str(cfg), "--name", "r"]) == 2
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert "8 worker(s)" in err and "resources" in err
    assert not run_dir_of(sections, "r").exists()  # the same --name can be used again


# ------------------------------------------------------------------ run-folder helpers
def test_latest_checkpoint_takes_the_newest_complete_one(tmp_path: Path) -> None:
    ray_dir = tmp_path / "ray" / "run"
    assert latest_checkpoint(tmp_path) is None
    whole_checkpoint(ray_dir / "checkpoint_a", 1)
    two = whole_checkpoint(ray_dir / "checkpoint_b", 2)
    # Copies cut short by a kill are newer but not resumable: weights missing, or half there.
    (whole_checkpoint(ray_dir / "checkpoint_c", 3) / "best.safetensors").unlink()
    cut_short(whole_checkpoint(ray_dir / "checkpoint_d", 4) / "model.safetensors")
    assert latest_checkpoint(tmp_path) == two


def test_metrics_rows_keep_text_columns_and_truncate_exactly(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    for epoch in (1, 2, 3):
        append_metrics_row(path, {"epoch": epoch, "val_loss": 0.5 / epoch, "stop_reason": "",
                                  "node_id": "12e34", "precision": "fp32"})
    append_metrics_row(path, {"epoch": 4, "val_loss": math.nan, "stop_reason": "nan",
                              "node_id": "12e34", "precision": "fp32"})
    rows = read_metrics(path)
    assert rows[-1]["stop_reason"] == "nan" and rows[0]["stop_reason"] is None
    assert rows[0]["node_id"] == "12e34" and math.isnan(rows[-1]["val_loss"])
    original = path.read_text().splitlines()
    _truncate_metrics(path, 2)
    assert path.read_text().splitlines() == original[:3]  # header + epochs 1, 2, as written
    _truncate_metrics(path, 0)  # resuming without any checkpoint: every epoch is rerun
    assert path.read_text().splitlines() == original[:1]
