"""``raygym train``'s tracking: a real 2-epoch run logs one MLflow run (params, per-epoch
metrics, the model) to a local SQLite store and TensorBoard events into its run folder."""

from __future__ import annotations

import json
import logging
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raygym.cli import main
from raygym.config import validate_experiment
from raygym.data.dataset import PreparedDataset
from raygym.tracking import MISSING_EXTRA, MlflowRun
from raygym.train.run import read_metrics
from raygym.train.tracking import EpochLogger, TrainTracking

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")

TRACKED = ("val_mean_iou", "val_loss", "train_loss", "lr", "val_iou/water", "best_val_loss")


@pytest.fixture
def config_file(tmp_path: Path, prepared: PreparedDataset,
                make_s2_config: Callable[..., dict[str, Any]], write_config: Any) -> Path:
    s = make_s2_config(prepared.path)
    s["model"] = {"arch": "gym_unet", "filters": 4, "kernel": 3}
    s["train"] = {"batch_size": 8, "max_epochs": 2, "rampup_epochs": 0, "max_lr": 3e-3,
                  "precision": "fp32", "output_dir": str(tmp_path / "runs"),
                  "precise_bn_images": 16}
    return write_config(tmp_path / "train.yaml", **s)


@pytest.mark.slow
def test_train_logs_an_mlflow_run_and_tensorboard_events(
        config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        tensorboard_scalars: Callable[[Path], dict[str, Any]]) -> None:
    assert main(["train", str(config_file), "--name", "tracked",
                 "--set", "mlflow.enabled=true"]) == 0
    run_dir = tmp_path / "runs" / "tracked"
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]

    # the default store: runs/mlflow.db, artifacts beside it (not in the working directory)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("s2_test")
    assert experiment.artifact_location == (tmp_path / "runs" / "mlartifacts").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert f"mlflow run {run.info.run_id} in sqlite:///" in " ".join(
        capsys.readouterr().out.split())
    assert run.data.tags["raygym.run"] == "tracked"
    params = run.data.params
    assert params["model.filters"] == "4" and params["train.max_epochs"] == "2"
    assert params["data.classes"] == '["water", "surf", "wet_sand", "dry_land"]'
    assert "search.num_samples" not in params  # train logs what trains the model

    for key in TRACKED:
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2], key
        assert [m.value for m in history] == pytest.approx([r[key] for r in rows]), key
    # the exported model's scores: its kept epoch's, at that epoch
    card = json.loads((run_dir / "best" / "model_card.json").read_text())
    (kept,) = client.get_metric_history(run.info.run_id, "kept_val_mean_iou")
    assert kept.value == pytest.approx(card["metrics"]["val_mean_iou"])
    assert kept.step == card["training"]["best_epoch"]

    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"best", "curves.png", "metrics.csv", "config.yaml"}
    assert not any(p.name.startswith("events.out") for p in (tmp_path / "runs").iterdir())
    best = {a.path for a in client.list_artifacts(run.info.run_id, "best")}
    assert {"best/model.safetensors", "best/model_card.json", "best/config.yaml",
            "best/checksums.json"} <= best
    stored = Path(experiment.artifact_location.removeprefix("file://"))
    assert (stored / run.info.run_id / "artifacts" / "best" / "model.safetensors").is_file()

    # TensorBoard: every epoch's scalars under Tune's tags, step = epoch
    scalars = tensorboard_scalars(run_dir)
    for key in TRACKED:
        assert [s for s, _ in scalars[f"ray/tune/{key}"]] == [1, 2], key
        assert [v for _, v in scalars[f"ray/tune/{key}"]] == pytest.approx(
            [r[key] for r in rows], rel=1e-6), key


def test_enabled_without_the_extra_is_one_line_exit_2_before_anything(
        tmp_path: Path, make_s2_config: Callable[..., dict[str, Any]], write_config: Any,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sections = make_s2_config(tmp_path / "ds")  # never prepared: refused before that check
    sections["train"]["output_dir"] = str(tmp_path / "runs")
    config_file = write_config(tmp_path / "train.yaml", **sections)
    # Python's own way to make a module unimportable: None in sys.modules
    monkeypatch.setitem(sys.modules, "mlflow", None)
    code = main(["train", str(config_file), "--name", "refused",
                 "--set", "mlflow.enabled=true"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2
    assert err == [f"error: {config_file}: mlflow.enabled: {MISSING_EXTRA}"]
    assert not (tmp_path / "runs").exists()  # refused before the run folder or a store


# ---------------------------------------------------------------- the pieces, without Ray
@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for these tests (a new SQLite store runs MLflow's migrations: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_a_resumed_run_continues_its_mlflow_run_and_ends_with_its_outcome(
        tmp_path: Path, make_s2_config: Callable[..., dict[str, Any]], sqlite_uri: str,
        tensorboard_scalars: Callable[[Path], dict[str, Any]]) -> None:
    sections = make_s2_config(tmp_path / "ds")
    sections["train"]["output_dir"] = str(tmp_path / "runs")
    sections["mlflow"] = {"enabled": True, "tracking_uri": sqlite_uri}
    config = validate_experiment(sections)
    run_dir = tmp_path / "runs" / "r1"
    first = TrainTracking.start(config, run_dir)
    with pytest.raises(KeyboardInterrupt), first.active():
        raise KeyboardInterrupt
    client = first.mlflow_run.client
    assert client.get_run(first.mlflow_run.run_id).info.status == "KILLED"

    longer = config.model_copy(update={"train": config.train.model_copy(
        update={"max_epochs": 4})})  # what --resume may change
    again = TrainTracking.start(longer, run_dir)
    assert again.mlflow_run.run_id == first.mlflow_run.run_id
    # as Ray sends it to Train's controller; every rank reports, rank 0's values are kept
    logger = pickle.loads(pickle.dumps(again.callbacks[0]))
    logger.after_report(None, [{"epoch": 3, "val_mean_iou": 0.5, "stop_reason": "completed"},
                               {"epoch": 3, "val_mean_iou": 0.1}], None)
    with again.active():
        pass
    run = client.get_run(again.mlflow_run.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_epochs"] == "2"  # MLflow keeps a param's first value
    history = client.get_metric_history(run.info.run_id, "val_mean_iou")
    assert [(m.step, m.value) for m in history] == [(3, 0.5)]
    assert tensorboard_scalars(run_dir)["ray/tune/val_mean_iou"] == [(3, 0.5)]


def test_a_store_that_fails_mid_run_is_a_warning_not_a_failed_training(
        tmp_path: Path, sqlite_uri: str, caplog: pytest.LogCaptureFixture,
        tensorboard_scalars: Callable[[Path], dict[str, Any]]) -> None:
    gone = MlflowRun(sqlite_uri, "0" * 32)  # no such run
    logger = EpochLogger(tmp_path, gone)
    with caplog.at_level(logging.WARNING, logger="raygym.train.tracking"):
        for epoch, stop in ((1, ""), (2, "early-stopped")):
            logger.after_report(None, [{"epoch": epoch, "val_loss": 1.0 / epoch,
                                        "stop_reason": stop}], None)
    warned = [r for r in caplog.records if "not tracked" in r.getMessage()]
    assert len(warned) == 1  # once, not every epoch
    assert tensorboard_scalars(tmp_path)["ray/tune/val_loss"] == [(1, 1.0), (2, 0.5)]
