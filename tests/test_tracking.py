"""raygym.tracking: where the MLflow store is, which results become metrics, and the store's
refusals as one-line errors (real SQLite stores in tmp folders; no Ray)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

from raygym.config import ExperimentConfig, validate_experiment
from raygym.errors import ConfigError
from raygym.tracking import (
    MISSING_EXTRA,
    epoch_metrics,
    find_or_start_run,
    flat_params,
    open_experiment,
    require_mlflow,
    store_for,
)

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")


def config(tmp_path: Path, **mlflow_section: Any) -> ExperimentConfig:
    return validate_experiment({
        "name": "tracked", "mlflow": {"enabled": True, **mlflow_section},
        "data": {"images": str(tmp_path / "i"), "labels": str(tmp_path / "l"),
                 "classes": ["water", "wet sand (2)"]}})


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One store for the module (a new SQLite store runs MLflow's migrations: seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def test_the_default_store_is_sqlite_beside_the_outputs(tmp_path: Path) -> None:
    store = store_for(config(tmp_path), tmp_path / "runs")
    assert store.uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert store.artifact_root == (tmp_path / "runs" / "mlartifacts").as_uri()
    assert store.experiment == "tracked"
    named = store_for(config(tmp_path, experiment_name="coast"), tmp_path)
    assert named.experiment == "coast"


def test_a_relative_sqlite_uri_resolves_against_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = store_for(config(tmp_path, tracking_uri="sqlite:///db/m.db"), tmp_path / "runs")
    assert store.uri == f"sqlite:///{tmp_path / 'db' / 'm.db'}"
    assert store.artifact_root == (tmp_path / "db" / "mlartifacts").as_uri()
    server = store_for(config(tmp_path, tracking_uri="http://127.0.0.1:5000"), tmp_path)
    assert (server.uri, server.artifact_root) == ("http://127.0.0.1:5000", None)


def test_a_tracking_uri_without_a_scheme_is_refused_naming_the_key(tmp_path: Path) -> None:
    raw = config(tmp_path).to_yaml_dict()
    raw["mlflow"]["tracking_uri"] = "mlruns"
    with pytest.raises(ConfigError) as err:
        validate_experiment(raw, "exp.yaml")
    assert str(err.value).startswith("exp.yaml: mlflow.tracking_uri: 'mlruns' is not a URI")
    assert "sqlite:///mlruns/mlflow.db" in str(err.value)


def test_the_missing_extra_is_refused_only_when_enabled(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # Python's own "not importable"
    with pytest.raises(ConfigError) as err:
        require_mlflow(config(tmp_path))
    assert str(err.value) == f"mlflow.enabled: {MISSING_EXTRA}"
    assert err.value.exit_code == 2
    off = config(tmp_path).model_copy(update={"mlflow": config(tmp_path).mlflow.model_copy(
        update={"enabled": False})})
    require_mlflow(off)  # tracking off: nothing to import


def test_epoch_metrics_keep_the_loops_finite_scores_by_mlflow_safe_names() -> None:
    result = {"epoch": 3, "lr": 1e-3, "train_loss": math.nan, "val_loss": 0.5,
              "val_mean_iou": 0.4, "val_iou/wet sand (2)": 0.25, "best_val_loss": math.inf,
              "best_epoch": 2, "rung_val_mean_iou": 0.35, "images_per_s": 10,
              "gflop_per_s": 1.5, "peak_share": 0.1, "epoch_seconds": 2.0,
              "stop_reason": "completed", "precision": "fp32", "node_id": "ab12",
              "workers": 1, "time_this_iter_s": 2.1, "training_iteration": 3, "done": True,
              "config": {"model.filters": 4}}
    assert epoch_metrics(result) == {
        "lr": 1e-3, "val_loss": 0.5, "val_mean_iou": 0.4, "val_iou/wet sand _2_": 0.25,
        "best_epoch": 2.0, "rung_val_mean_iou": 0.35, "images_per_s": 10.0,
        "gflop_per_s": 1.5, "peak_share": 0.1, "epoch_seconds": 2.0}


def test_flat_params_are_dotted_keys_with_json_lists_and_mappings() -> None:
    params = flat_params({"loss": {"name": {"dice": 0.5, "cce": 0.5}},
                          "data": {"classes": ["a", "b"], "split": {"val": 0.2}},
                          "model": {"encoder_weights": None}})
    assert params == {"loss.name.dice": "0.5", "loss.name.cce": "0.5",
                      "data.classes": '["a", "b"]', "data.split.val": "0.2",
                      "model.encoder_weights": "None"}


def test_mlflows_file_store_refusal_is_one_line_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = store_for(config(tmp_path, tracking_uri=(tmp_path / "mlruns").as_uri()), tmp_path)
    with pytest.raises(ConfigError) as err:
        open_experiment(store)
    text = str(err.value)
    assert text.startswith(f"mlflow.tracking_uri: cannot open the MLflow store {store.uri}: "
                           "The filesystem tracking backend")
    assert "\n" not in text and "leave it unset for a local SQLite store" in text


def test_a_deleted_experiment_is_refused_naming_the_key(tmp_path: Path,
                                                        sqlite_uri: str) -> None:
    store = store_for(config(tmp_path, tracking_uri=sqlite_uri, experiment_name="gone"),
                      tmp_path)
    client, experiment_id = open_experiment(store)
    client.delete_experiment(experiment_id)
    with pytest.raises(ConfigError, match=r"^mlflow.experiment_name: MLflow experiment "
                       r"'gone' in .* is deleted \(fix: restore it"):
        open_experiment(store)


def test_a_run_is_found_again_by_its_tags_and_set_running(tmp_path: Path,
                                                          sqlite_uri: str) -> None:
    store = store_for(config(tmp_path, tracking_uri=sqlite_uri, experiment_name="again"),
                      tmp_path)
    client, experiment_id = open_experiment(store)
    first = find_or_start_run(client, experiment_id, store.uri, name="r",
                              match={"raygym.run": "r"}, tags={"extra": "1"})
    first.log_params({"train.max_epochs": "2"})
    first.finish("KILLED")
    again = find_or_start_run(client, experiment_id, store.uri, name="r",
                              match={"raygym.run": "r"})
    assert again.run_id == first.run_id
    run = client.get_run(again.run_id)
    assert run.info.status == "RUNNING" and run.data.tags["extra"] == "1"
    again.log_params({"train.max_epochs": "5", "train.patience": "3"})  # MLflow refuses a
    assert client.get_run(again.run_id).data.params == {  # changed value: the first stays
        "train.max_epochs": "2", "train.patience": "3"}
    other = find_or_start_run(client, experiment_id, store.uri, name="s",
                              match={"raygym.run": "s"})
    assert other.run_id != first.run_id
