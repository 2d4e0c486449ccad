"""Reading a results folder leniently: a bare leaderboard, Tune's trial folders (damaged lines,
repeated epochs, the ``progress.csv`` fallback), and a clear error for anything else."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from raygym.errors import DataError
from raygym.report import build_report, load_results, read_history, trial_root
from raygym.report.results import category_order, parse_cell

from . import VAL_LOSS_SEARCH, write_bare_leaderboard, write_trial_folders


def test_report_refuses_non_results_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a raygym search results folder"):
        build_report(tmp_path)
    with pytest.raises(DataError, match="not found"):
        build_report(tmp_path / "missing")
    (tmp_path / "metrics.csv").write_text("epoch,val_loss\n1,0.5\n")  # a train run
    with pytest.raises(DataError, match="a train run, not a search") as info:
        build_report(tmp_path)
    assert info.value.fix is not None and "raygym evaluate" in info.value.fix


def test_damaged_search_json_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "search.json").write_text("{not json")
    with pytest.raises(DataError, match="search.json is damaged"):
        load_results(tmp_path)


def test_bare_leaderboard_infers_metric_and_space(tmp_path: Path) -> None:
    """Without search.json: the metric from the ``best_*`` column, its mode from the name, the
    searched keys between ``node_id`` and ``error``, and their kinds from the values."""
    res = load_results(write_bare_leaderboard(tmp_path))
    assert (res.name, res.metric, res.mode) == (tmp_path.name, "val_mean_iou", "max")
    assert res.param_keys == ["model.filters", "loss.name"]
    assert res.space == [{"path": "model.filters", "kind": "choice", "values": [4, 2]},
                         {"path": "loss.name", "kind": "choice", "values": ["dice", "cce"]}]
    assert [r["trial_id"] for r in res.scored_rows()] == ["01234567", "123e4567", "abcdef12"]
    assert res.status("deadbeef") == "failed" and res.status("nowhere") == "unknown"
    assert math.isnan(res.value({"best_val_mean_iou": ""}))
    assert "no Tune trial folders" in res.trials_note and res.histories == {}


def test_trial_folders_histories_and_params(tmp_path: Path) -> None:
    res = load_results(write_trial_folders(tmp_path / "rep", VAL_LOSS_SEARCH))
    assert trial_root(res.path, res.info) == tmp_path / "rep" / "ray" / "rep"
    assert (res.metric, res.mode, res.trials_note) == ("val_loss", "min", "")
    assert sorted(res.histories) == ["t1", "t2", "t3"]
    assert [r["epoch"] for r in res.histories["t1"]] == [1, 2, 3]
    assert res.trial_params["t2"] == {"model.filters": 4, "loss.name": "cce"}
    assert res.trial_ids() == ["t3", "t1", "t2"]  # leaderboard order


def test_trial_root_remote_storage(tmp_path: Path) -> None:
    info = {"name": "rep", "config": {"search": {"storage_path": "s3://bucket/tune"}}}
    assert trial_root(tmp_path, info) is None
    (tmp_path / "search.json").write_text(json.dumps(info))
    assert "remote storage" in load_results(tmp_path).trials_note


def test_read_history_skips_damage_and_keeps_last_report(tmp_path: Path) -> None:
    """A line cut mid-write is skipped; a restored trial's repeated epoch keeps its last
    report; sorted by epoch."""
    (tmp_path / "result.json").write_text("\n".join([
        json.dumps({"epoch": 2, "val_loss": 0.5}), json.dumps({"epoch": 1, "val_loss": 0.9}),
        json.dumps({"epoch": 2, "val_loss": 0.4}), '{"epoch": 3, "val_lo']) + "\n")
    assert read_history(tmp_path) == [{"epoch": 1, "val_loss": 0.9},
                                      {"epoch": 2, "val_loss": 0.4}]


def test_read_history_from_progress_csv(tmp_path: Path) -> None:
    """No result.json: ``progress.csv``, numbers parsed, trial ids kept as text."""
    (tmp_path / "progress.csv").write_text("trial_id,training_iteration,val_loss\n"
                                           "123e4567,2,0.5\n123e4567,1,0.75\n")
    assert read_history(tmp_path) == [
        {"trial_id": "123e4567", "training_iteration": 1, "val_loss": 0.75},
        {"trial_id": "123e4567", "training_iteration": 2, "val_loss": 0.5}]


def test_parse_cell_and_category_order() -> None:
    assert [parse_cell(t) for t in ("3", "0.5", "[1, 2]", "{bad", "dice")] == [
        3, 0.5, [1, 2], "{bad", "dice"]
    spec = {"values": [8, {"b": 1, "a": 2}, 2]}
    assert category_order(spec, [2, 16, {"a": 2, "b": 1}, 16]) == [
        "8", '{"a": 2, "b": 1}', "2", "16"]
