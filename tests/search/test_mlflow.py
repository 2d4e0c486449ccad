"""``raygym search`` with ``mlflow.enabled``: a real 2-trial search on S2 (64 x 64, up to 2
epochs) logs one MLflow run per trial under a run for the search, in a local SQLite store,
and everything in it matches what the search left on disk."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raygym.tracking import MISSING_EXTRA

from . import (
    one_error_line,
    read_leaderboard,
    run_cli,
    search_sections,
    shared_prepared,
    write_space,
)

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra: pip install -e '.[mlflow]'")

NAME = "s2_mlflow"
SEARCHED = ("model.arch", "model.filters", "loss.name", "train.max_lr")


def _sections(make_s2_config: Callable[..., dict[str, Any]], prepared: Path, results: Path
              ) -> dict[str, Any]:
    sections = search_sections(make_s2_config, prepared, results, NAME, num_samples=2,
                               max_concurrent=2, grace_period=1, reduction_factor=2)
    sections["train"]["max_epochs"] = 2
    return sections


@pytest.fixture(scope="module")
def search_out(tmp_path_factory: pytest.TempPathFactory, ray_session: None,
               make_s2_config: Callable[..., dict[str, Any]]) -> Path:
    tmp = tmp_path_factory.mktemp("mlflow")
    sections = _sections(make_s2_config, shared_prepared(tmp_path_factory), tmp / "results")
    code, _ = run_cli(["search", str(write_space(tmp / "space.yaml", sections)),
                       "--set", "mlflow.enabled=true"])
    assert code == 0
    return tmp / "results" / NAME


@pytest.fixture(scope="module")
def store(search_out: Path) -> tuple[Any, str]:
    """(a client of the default store, results/mlflow.db; the experiment's id)."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{search_out.parent / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(NAME)
    assert experiment.artifact_location == (search_out.parent / "mlartifacts").as_uri()
    return client, experiment.experiment_id


def _runs(store: tuple[Any, str]) -> tuple[Any, dict[str, Any]]:
    """(the search's run, {trial id: trial run})."""
    client, experiment_id = store
    runs = client.search_runs([experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("raygym.role") == "search"]
    trials = {r.data.tags["raygym.trial_id"]: r for r in runs if r is not parent}
    return parent, trials


@pytest.mark.slow
def test_one_run_per_trial_with_its_params_and_epoch_history(
        search_out: Path, store: tuple[Any, str]) -> None:
    client, _ = store
    board = read_leaderboard(search_out)
    parent, trials = _runs(store)
    assert set(trials) == {r["trial_id"] for r in board} and len(trials) == 2
    for row in board:
        run = trials[row["trial_id"]]
        tags = run.data.tags
        assert tags["raygym.search"] == NAME and tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        params = run.data.params
        assert set(params) == set(SEARCHED)  # the sampled values, nothing else
        for key in ("model.arch", "model.filters", "loss.name"):
            assert params[key] == row[key], key
        assert float(params["train.max_lr"]) == pytest.approx(float(row["train.max_lr"]),
                                                              rel=1e-5)
        # every epoch the trial ran, step = epoch, the values Tune recorded
        results = [json.loads(line) for line in (search_out / "ray" / NAME / row["trial_id"]
                                                 / "result.json").read_text().splitlines()]
        assert len(results) == int(row["epochs"])
        for key in ("val_mean_iou", "val_loss", "train_loss", "lr", "val_iou/surf"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [(m.step, m.value) for m in history] == [
                (r["epoch"], pytest.approx(r[key])) for r in results], key
        assert tags["raygym.status"] == row["status"]  # the leaderboard's words


@pytest.mark.slow
def test_the_search_run_holds_the_summary_and_the_best_models(
        search_out: Path, store: tuple[Any, str]) -> None:
    client, _ = store
    board = read_leaderboard(search_out)
    parent, trials = _runs(store)
    assert parent.info.status == "FINISHED" and parent.info.run_name == NAME
    assert parent.data.tags["best_trial"] == board[0]["trial_id"]
    # Ray's callback sets mlflow's process-wide URI; the caller's is given back
    assert mlflow.get_tracking_uri() != f"sqlite:///{search_out.parent / 'mlflow.db'}"
    assert parent.data.params["search.num_samples"] == "2"
    assert parent.data.metrics["trials"] == 2
    assert parent.data.metrics["total_epochs"] == sum(int(r["epochs"]) for r in board)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert names == {"best", "leaderboard.csv", "leaderboard.md", "search.json"}
    exported = sorted(p.name for p in (search_out / "best").iterdir())
    assert exported  # top_k 2: each trial with weights
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "best")}
    assert logged == {f"best/{n}" for n in exported}
    for rank, name in enumerate(exported, start=1):
        files = {a.path.rsplit("/", 1)[1]
                 for a in client.list_artifacts(parent.info.run_id, f"best/{name}")}
        assert {"model.safetensors", "model_card.json", "checksums.json"} <= files
        trial_id = name.split("_", 1)[1]
        assert client.get_run(trials[trial_id].info.run_id).data.tags["raygym.rank"] == str(
            rank)


def test_enabled_without_the_extra_is_one_line_exit_2(
        tmp_path: Path, make_s2_config: Callable[..., dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    sections = _sections(make_s2_config, tmp_path / "ds", tmp_path / "results")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # Python's own "not importable"
    space = write_space(tmp_path / "space.yaml", sections)
    code, err = run_cli(["search", str(space), "--set", "mlflow.enabled=true"], capsys)
    assert code == 2
    assert one_error_line(err) == f"error: {space}: mlflow.enabled: {MISSING_EXTRA}"
    assert not (tmp_path / "results").exists() and not (tmp_path / "ds").exists()


# ------------------------------------------------ the callback on its own (a real Tune Trial)
def test_trial_runs_log_decoded_active_params_at_step_epoch_and_only_warn_on_failure(
        tmp_path: Path, make_s2_config: Callable[..., dict[str, Any]], write_config: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from ray import cloudpickle
    from ray.tune.experiment import Trial

    from raygym.search.space import REPEAT_KEY
    from raygym.search.space_config import load_experiment
    from raygym.search.tracking import TrialRuns

    sections = make_s2_config(tmp_path / "ds")
    sections["model"] = {"arch": {"choice": ["gym_unet", "unet"]},
                         "encoder": {"choice": ["resnet18"], "when": {"model.arch": ["unet"]}}}
    sections["loss"] = {"name": {"choice": ["dice", {"dice": 0.5, "cce": 0.5}]}}
    sections["search"] = {"results_dir": str(tmp_path / "results")}
    sections["mlflow"] = {"enabled": True}
    config, space = load_experiment(write_config(tmp_path / "space.yaml", **sections))
    callback = TrialRuns(config, space)
    callback.setup()
    # Optuna's values: a weighted loss JSON-encoded, an inactive conditional key sampled
    trial = Trial("__fake", stub=True, trial_id="abc_00001", config={
        "model.arch": "gym_unet", "model.encoder": "resnet18",
        "loss.name": '{"cce": 0.5, "dice": 0.5}', REPEAT_KEY: 1})
    callback.log_trial_start(trial)
    # multi-worker trials: Tune's iteration counts reports, the loop's epoch is the step
    callback.log_trial_result(1, trial, {"epoch": 4, "val_mean_iou": 0.5, "done": False})
    run = callback.runs["abc_00001"]
    data = run.client.get_run(run.run_id).data
    assert data.params == {"model.arch": "gym_unet", "loss.name": '{"cce": 0.5, "dice": 0.5}',
                           REPEAT_KEY: "1"}
    assert data.tags["mlflow.parentRunId"] == callback.parent.run_id
    assert [(m.step, m.value) for m in run.client.get_metric_history(
        run.run_id, "val_mean_iou")] == [(4, 0.5)]
    # Tune pickles its callbacks (tuner.pkl) with Ray's cloudpickle
    assert cloudpickle.loads(cloudpickle.dumps(callback)).runs == {}

    # MLflow refuses to log to a deleted run: tracking fails, the search must not
    run.client.delete_run(run.run_id)
    with caplog.at_level(logging.WARNING, logger="raygym.search.tracking"):
        callback.log_trial_result(2, trial, {"epoch": 5, "val_mean_iou": 0.6})
        callback.log_trial_end(trial)
    warned = [r for r in caplog.records if "not tracked in MLflow" in r.getMessage()]
    assert len(warned) == 1 and "abc_00001" in warned[0].getMessage()
    assert callback.runs == {}


def test_a_ctrl_c_leaves_the_cut_trials_and_the_search_run_killed_not_pruned(
        tmp_path: Path, make_s2_config: Callable[..., dict[str, Any]],
        write_config: Any) -> None:
    from ray.tune.experiment import Trial

    from raygym.search.space_config import load_experiment
    from raygym.search.tracking import TrialRuns, log_search_summary

    sections = make_s2_config(tmp_path / "ds")
    sections["model"] = {"arch": {"choice": ["gym_unet", "gym_resunet"]}}
    sections["search"] = {"results_dir": str(tmp_path / "results"), "scheduler": "asha"}
    sections["mlflow"] = {"enabled": True}
    config, space = load_experiment(write_config(tmp_path / "space.yaml", **sections))
    callback = TrialRuns(config, space)
    callback.setup()
    done = Trial("__fake", stub=True, trial_id="abc_00001", config={"model.arch": "gym_unet"})
    cut = Trial("__fake", stub=True, trial_id="abc_00002", config={"model.arch": "gym_resunet"})
    for trial in (done, cut):
        callback.log_trial_start(trial)
        callback.log_trial_result(1, trial, {"epoch": 1, "val_mean_iou": 0.5})
    done.update_last_result({"epoch": 1, "done": True, "stop_reason": "completed"})
    cut.update_last_result({"epoch": 1, "val_mean_iou": 0.5})
    for trial in (done, cut):  # Tune ends the trials a Ctrl-C cuts as if ASHA had stopped them
        callback.log_trial_end(trial)
    client = mlflow.MlflowClient(tracking_uri=callback.store.uri)
    cut_run = client.search_runs(
        [callback._experiment_id], filter_string="tags.`raygym.trial_id` = 'abc_00002'")[0]
    assert cut_run.data.tags["raygym.status"] == "asha-pruned"

    out = tmp_path / "results" / config.name
    for name in ("rank1_abc_00002", "rank2_abc_00001"):  # what the export wrote
        (out / "best" / name).mkdir(parents=True)
        (out / "best" / name / "model_card.json").write_text("{}")
    log_search_summary(config, out, {"best_trial": "abc_00002", "trials": 2},
                       [out / "best" / "rank1_abc_00002", out / "best" / "rank2_abc_00001"],
                       {"abc_00002"})
    runs = _runs_by_trial(client, callback._experiment_id)
    assert runs["abc_00002"].data.tags["raygym.status"] == "interrupted"
    assert runs["abc_00002"].info.status == "KILLED"
    assert runs["abc_00001"].data.tags["raygym.status"] == "completed"
    assert runs["abc_00001"].info.status == "FINISHED"
    assert runs["search"].info.status == "KILLED"  # a --resume sets it running again
    assert runs["abc_00002"].data.tags["raygym.rank"] == "1"
    assert _logged_best(client, runs["search"]) == ["best/rank1_abc_00002/model_card.json",
                                                    "best/rank2_abc_00001/model_card.json"]

    # --resume: the cut trial goes on to its end, and the search ranks anew
    callback.log_trial_start(cut)
    assert client.get_run(runs["abc_00002"].info.run_id).info.status == "RUNNING"
    cut.update_last_result({"epoch": 2, "done": True, "stop_reason": "completed"})
    callback.log_trial_end(cut)
    shutil.rmtree(out / "best")  # the export after the resume
    (out / "best" / "rank1_abc_00001").mkdir(parents=True)
    (out / "best" / "rank1_abc_00001" / "model_card.json").write_text("{}")
    log_search_summary(config, out, {"best_trial": "abc_00001", "trials": 2},
                       [out / "best" / "rank1_abc_00001"])
    runs = _runs_by_trial(client, callback._experiment_id)
    assert runs["abc_00002"].data.tags["raygym.status"] == "completed"
    assert runs["abc_00002"].info.status == "FINISHED"
    assert "raygym.rank" not in runs["abc_00002"].data.tags  # the earlier end's rank is gone
    assert runs["abc_00001"].data.tags["raygym.rank"] == "1"
    assert runs["search"].info.status == "FINISHED"
    # and the search's run holds the best models of this end only
    assert _logged_best(client, runs["search"]) == ["best/rank1_abc_00001/model_card.json"]


def _logged_best(client: Any, run: Any) -> list[str]:
    """The files under the run's ``best/`` artifacts."""
    return sorted(f.path for d in client.list_artifacts(run.info.run_id, "best")
                  for f in client.list_artifacts(run.info.run_id, d.path))


def _runs_by_trial(client: Any, experiment_id: str) -> dict[str, Any]:
    """{trial id, or "search" for the search's run: the run}."""
    return {r.data.tags.get("raygym.trial_id", "search"): r
            for r in client.search_runs([experiment_id])}
