"""``raygym record SPACE``: a curve table of one's own data, recorded through the real search
path and replayed by ``raygym search SPACE --replay TABLE``."""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from raygym.errors import ConfigError
from raygym.search.record import (
    encode_cell,
    grid_values,
    recording_config,
    recording_space,
    seed_noise_text,
)
from raygym.search.replay import CurveTable, parse_cell
from raygym.search.space_config import Distribution, load_experiment

from . import one_error_line, run_cli, write_space


def test_grid_values_span_each_range_with_its_ends() -> None:
    def dist(kind: str, **kw: Any) -> Distribution:
        return Distribution(path="train.max_lr", kind=kind, **kw)  # type: ignore[arg-type]

    assert grid_values(dist("loguniform", low=1e-4, high=1e-2), 3) == [1e-4, 1e-3, 1e-2]
    assert grid_values(dist("uniform", low=0.0, high=0.5), 3) == [0.0, 0.25, 0.5]
    assert grid_values(dist("int", low=2, high=4), 5) == [2, 3, 4]  # distinct integers
    assert grid_values(dist("choice", values=("a", "b")), 7) == ["a", "b"]


@pytest.mark.parametrize("value", ["gym_unet", 8, 0.001, True, {"cce": 0.5, "dice": 0.5}])
def test_table_cells_read_back_as_the_values_written(value: Any) -> None:
    assert parse_cell(encode_cell(value)) == value
    assert type(parse_cell(encode_cell(value))) is type(value)


def _space(tmp_path: Path, demo_config: dict[str, Any], **train: Any) -> Path:
    sections = json.loads(json.dumps(demo_config))
    sections["name"] = "rec"
    sections["model"]["filters"] = {"choice": [2]}
    sections["train"].update(max_lr={"loguniform": [1e-3, 1e-2]}, max_epochs=2, patience=1,
                             **train)
    sections["search"] = {"max_concurrent": 2, "scheduler": "asha", "num_samples": 9,
                          "results_dir": str(tmp_path / "results")}
    sections["resources"] = {"workers_per_trial": 1, "cpus_per_worker": 1}
    return write_space(tmp_path / "space.yaml", sections)


def test_a_recording_is_a_grid_without_stopping(tmp_path: Path,
                                               demo_config: dict[str, Any]) -> None:
    config, space = load_experiment(_space(tmp_path, demo_config))
    rec = recording_config(config)
    assert rec.name == "rec-record"
    assert (rec.search.algorithm, rec.search.scheduler, rec.search.num_samples) == (
        "grid", "none", 1)
    assert rec.search.repeat_top == 0 and rec.train.patience > rec.train.max_epochs
    grid = recording_space(space, [3, 5], 2, "space.yaml")
    assert [(d.path, d.kind, list(d.values)) for d in grid] == [
        ("model.filters", "grid", [2]), ("train.max_lr", "grid", [1e-3, 1e-2]),
        ("train.seed", "grid", [3, 5])]


def test_conditional_keys_and_a_searched_seed_are_one_line_errors(
        tmp_path: Path, demo_config: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    path = _space(tmp_path, demo_config)
    sections = yaml.safe_load(path.read_text())
    sections["model"]["dropout"] = {"choice": [0.0, 0.1], "when": {"model.filters": [2]}}
    write_space(path, sections)
    code, err = run_cli(["record", str(path)], capsys)
    assert code == 2 and "model.dropout" in one_error_line(err) and "when" in err
    sections["model"].pop("dropout")
    sections["train"]["seed"] = {"choice": [0, 1]}
    write_space(path, sections)
    config, space = load_experiment(path)
    with pytest.raises(ConfigError, match="--seeds"):
        recording_space(space, [0], 3, str(path))
    assert not (tmp_path / "results").exists()


def test_record_then_replay(tmp_path: Path, demo_config: dict[str, Any], ray_session: None,
                            capsys: pytest.CaptureFixture) -> None:
    space_file = _space(tmp_path, demo_config)
    made_by = ["record", str(space_file), "--seeds", "0", "1", "--points", "2",
               "--set", "train.patience=1"]
    code, _ = run_cli(made_by, capsys)
    assert code == 0
    out = tmp_path / "results" / "rec-record"
    table = CurveTable.load(out / "curves.csv")
    assert table.param_keys == ["model.filters", "train.max_lr"]
    assert table.configs == [{"model.filters": 2, "train.max_lr": 1e-3},
                             {"model.filters": 2, "train.max_lr": 1e-2}]
    assert (table.seeds, table.epochs) == ([0, 1], 2)  # patience 1 did not stop anything
    for curve in table.curves.values():
        assert len(curve["val_loss"]) == 2 and np.all(curve["seconds"] > 0)
        assert np.all((curve["val_mean_iou"] >= 0) & (curve["val_mean_iou"] <= 1))
    # the seed is each run's training seed: two seeds of one configuration train differently
    assert not np.array_equal(table.curves[(0, 0)]["train_loss"],
                              table.curves[(0, 1)]["train_loss"])
    # each row is what its trial reported: the leaderboard's kept epoch, found in the table
    with (out / "leaderboard.csv").open(newline="") as fh:
        board = list(csv.DictReader(fh))
    assert len(board) == 4 and {r["status"] for r in board} == {"completed"}
    # the seeds are runs of one configuration: ranked by their mean, numbered by seed
    means: dict[str, list[float]] = {}
    for r in board:
        means.setdefault(r["train.max_lr"], []).append(float(r["best_val_mean_iou"]))
    for r in board:
        mean = sum(means[r["train.max_lr"]]) / 2
        assert float(r["mean_best_val_mean_iou"]) == pytest.approx(mean, abs=1e-5)
        assert int(r["run"]) == int(r["train.seed"])
    order = [float(r["mean_best_val_mean_iou"]) for r in board]
    assert order == sorted(order, reverse=True) and board[0]["train.max_lr"] == board[1][
        "train.max_lr"]
    assert "Seed noise: 2 configuration(s) trained more than once" in (
        out / "leaderboard.md").read_text()
    # what a rank on the table is worth, as the rehearsal judges it (the user's patience)
    config, _ = load_experiment(space_file, overrides={"train.patience": 1})
    assert seed_noise_text(config, out / "curves.csv", 2).startswith("the table's noise:")
    assert "record 3 or more" in seed_noise_text(config, out / "curves.csv", 1)
    assert "once its failed trials are recorded" in seed_noise_text(
        config, out / "curves.csv", 2, left_out=1)
    by_loss = config.model_copy(update={"search": config.search.model_copy(
        update={"metric": "val_loss", "mode": "min"})})
    assert "for a metric to maximise" in seed_noise_text(by_loss, out / "curves.csv", 2)
    for r in board:
        cid = table.match({"model.filters": int(r["model.filters"]),
                           "train.max_lr": float(r["train.max_lr"])})
        curve = table.curves[(cid, int(r["train.seed"]))]
        kept = curve["val_mean_iou"][int(r["best_epoch"]) - 1]
        assert kept == pytest.approx(float(r["best_val_mean_iou"]), abs=1e-6)
    card = json.loads((out / "curves.card.json").read_text())
    assert card["seeds"] == [0, 1] and card["configurations"] == 2 and card["epochs"] == 2
    assert card["grid"] == {"model.filters": [2], "train.max_lr": [0.001, 0.01]}
    # a second recording into the same table is refused, and the table is left as it was
    before = (out / "curves.csv").read_bytes()
    code, err = run_cli(["record", str(space_file)], capsys)
    assert code == 2 and "--resume" in one_error_line(err)
    assert (out / "curves.csv").read_bytes() == before
    # --resume of a finished recording trains nothing and writes the same table again
    code, _ = run_cli([*made_by, "--resume"], capsys)
    assert code == 0 and (out / "curves.csv").read_bytes() == before
    # the card's command makes the table again: the user's --set kept, --resume left out
    card = json.loads((out / "curves.card.json").read_text())
    assert card["command"] == shlex.join(["raygym", *made_by])
    # --add: the seeds the table lacks, recorded on their own and added; the rows there kept
    code, err = run_cli([*made_by, "--set", "train.batch_size=3", "--add"], capsys)
    assert code == 2 and "(train.batch_size differs)" in one_error_line(err)
    code, err = run_cli([*made_by[:3], "1", "--add", *made_by[5:]], capsys)
    assert code == 2 and "are in the table already" in one_error_line(err)
    code, _ = run_cli([*made_by[:3], "1", "2", "--add", *made_by[5:]], capsys)
    assert code == 0 and (tmp_path / "results" / "rec-record-add-2" / "leaderboard.csv").exists()
    added = CurveTable.load(out / "curves.csv")
    assert added.seeds == [0, 1, 2] and added.configs == table.configs
    for (cid, seed), curve in table.curves.items():
        for key, values in curve.items():
            np.testing.assert_array_equal(added.curves[(cid, seed)][key], values)
    assert not np.array_equal(added.curves[(0, 2)]["train_loss"],
                              added.curves[(0, 1)]["train_loss"])
    card = json.loads((out / "curves.card.json").read_text())
    assert card["seeds"] == [0, 1, 2] and [a["seeds"] for a in card["added"]] == [[2]]
    assert card["command"] == shlex.join(["raygym", *made_by])  # how the table began
    # the first recording resumed afterwards keeps the added seed's rows and the card's record
    from raygym.cli import main

    assert main([*made_by, "--resume"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert CurveTable.load(out / "curves.csv").seeds == [0, 1, 2]
    card = json.loads((out / "curves.card.json").read_text())
    assert card["seeds"] == [0, 1, 2] and [a["seeds"] for a in card["added"]] == [[2]]
    # the search the table was recorded for replays on it, by the line the recording printed:
    # the recording's --set values in it (else it would search epochs the table lacks)
    hint = re.search(r"rehearse search settings on it: (.*)", printed)
    assert hint is not None
    assert shlex.split(hint.group(1)) == ["raygym", "search", str(space_file), "--set",
                                          "train.patience=1", "--replay",
                                          str(out / "curves.csv")]
    code, _ = run_cli(shlex.split(hint.group(1))[1:], capsys)
    assert code == 0
    saved = json.loads((tmp_path / "results" / "rec-replay" / "search.json").read_text())
    verdict = saved["replay"]
    assert verdict["configurations"] == 2 and verdict["found"] is not None


def test_settings_that_change_no_run_are_not_compared_and_a_bad_card_is_one_line(
        tmp_path: Path, demo_config: dict[str, Any]) -> None:
    from raygym.search.record import _read_card, _settings_differ

    config, _ = load_experiment(_space(tmp_path, demo_config))
    rec = recording_config(config)
    card = json.loads(json.dumps(rec.to_yaml_dict()))
    card["grid"] = {"model.filters": [2]}
    card["train"]["output_dir"] = "/elsewhere/runs"  # another working directory
    card["train"]["no_such_key"] = 1  # a key of another raygym's schema
    card["train"]["batch_size"] = 99
    assert _settings_differ(card, rec, {"model.filters": [2]}, ["a"], ["a"]) == [
        "train.batch_size"]
    assert _settings_differ(card, rec, {"model.filters": [4]}, ["a"], ["b"])[::2] == [
        "the grid", "the columns"]
    (tmp_path / "t.csv").write_text("config_id\n")
    (tmp_path / "t.card.json").write_text("{cut short")
    with pytest.raises(ConfigError, match="card is missing or unreadable"):
        _read_card(tmp_path / "t.csv")
