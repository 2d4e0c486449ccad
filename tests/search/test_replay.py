"""Curve tables, the ground truth they imply and replayed trials, on hand-made tables whose
answers are known; plus one small replayed search through real Tune (``raygym search SPACE
--replay TABLE``)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from raygym.errors import ConfigError, DataError
from raygym.search.replay import CurveTable, early_stopping, ground_truth, replay_results

from . import run_cli, write_space
from .curve_tables import SPACE, load_space, row, write_table


# ------------------------------------------------------------------------------ the table
def test_table_loads_configurations_and_curves(grid_table: Path) -> None:
    table = CurveTable.load(grid_table)
    assert len(table.configs) == 24 and table.seeds == [0, 1] and table.epochs == 8
    assert table.param_keys == ["model.arch", "model.filters", "loss.name", "train.max_lr"]
    assert table.configs[1] == {"model.arch": "gym_unet", "model.filters": 2,
                                "loss.name": "dice", "train.max_lr": 0.01}
    assert table.configs[3]["loss.name"] == {"cce": 0.5, "dice": 0.5}  # JSON decoded
    assert table.curves[(0, 1)]["val_mean_iou"].shape == (8,)


def test_a_gzipped_table_loads_as_the_plain_one(grid_table: Path, tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "grid.csv.gz"
    packed.write_bytes(gzip.compress(grid_table.read_bytes()))
    plain, table = CurveTable.load(grid_table), CurveTable.load(packed)
    assert table.configs == plain.configs and table.seeds == plain.seeds
    assert table.configs[3]["loss.name"] == {"cce": 0.5, "dice": 0.5}  # param cells as text
    np.testing.assert_array_equal(table.curves[(5, 1)]["val_loss"],
                                  plain.curves[(5, 1)]["val_loss"])


def test_match_snaps_numbers_and_refuses_unrecorded_values(grid_table: Path) -> None:
    table = CurveTable.load(grid_table)
    params = {"model.arch": "gym_resunet", "model.filters": 8,
              "loss.name": {"dice": 0.5, "cce": 0.5}, "train.max_lr": 0.0012}
    cid = table.match(params)
    assert table.configs[cid] == {**params, "train.max_lr": 0.001}
    # 0.004 is nearer 0.01 than 0.001 on a log scale (0.0032 is the midpoint)
    assert table.configs[table.match({**params, "train.max_lr": 0.004})]["train.max_lr"] == 0.01
    with pytest.raises(ConfigError, match="unet.*was not recorded"):
        table.match({**params, "model.arch": "unet"})
    with pytest.raises(ConfigError, match="varies model.filters"):
        table.match({k: v for k, v in params.items() if k != "model.filters"})


def test_bad_tables_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        CurveTable.load(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a curve table: no config_id"):
        CurveTable.load(bad)
    yaml_file = tmp_path / "space.yaml"  # a space given where the table goes
    yaml_file.write_text("name: x\ndata:\n  classes: [a, b]\nsearch: {num_samples: 2}\n")
    with pytest.raises(DataError, match=r"not a readable CSV curve table \(.+\) \(fix: ") as err:
        CurveTable.load(yaml_file)
    assert "\n" not in str(err.value)
    # a configuration whose every recorded trial failed: which one, and how to record it
    gap = [row(cid, ("gym_unet", 2, "dice", 0.001), 0, 1, 0.5, 0.5) for cid in (1, 2)]
    with pytest.raises(DataError, match=r"configuration\(s\) \[0\] have no rows") as err:
        CurveTable.load(write_table(tmp_path / "gap.csv", gap))
    assert "--retry-errored" in str(err.value)
    # the last configuration failed: ids still run 0..N-1, the card's grid tells
    both = [row(cid, ("gym_unet", 2, "dice", 0.001), 0, 1, 0.5, 0.5) for cid in (0, 1)]
    short = write_table(tmp_path / "short.csv", both)
    assert len(CurveTable.load(short).configs) == 2  # no card: nothing to tell by
    (tmp_path / "short.card.json").write_text(json.dumps({"grid": {"model.filters": [2, 4, 8]}}))
    with pytest.raises(DataError, match="holds 2 of the 3 configurations"):
        CurveTable.load(short)
    with pytest.raises(DataError, match="appears twice"):
        CurveTable.load(write_table(tmp_path / "twice.csv", [*both, both[0]]))


def test_space_check_names_the_key(grid_table: Path, tmp_path: Path) -> None:
    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path)
    table.check_space(space, 8, "val_mean_iou")
    with pytest.raises(ConfigError, match="train.max_epochs.*recorded 8"):
        table.check_space(space, 9, "val_mean_iou")
    with pytest.raises(ConfigError, match="no column val_mcc"):
        table.check_space(space, 8, "val_mcc")
    with pytest.raises(ConfigError, match="no column val_fw_iou") as err:
        table.check_space(space, 8, "val_mean_iou", "val_fw_iou")
    assert err.value.key == "train.monitor"
    table.check_space(space, 8, "val_mean_iou", classes=["a", "b"])
    with pytest.raises(ConfigError, match=r"recorded the classes \['a', 'b'\]") as err:
        table.check_space(space, 8, "val_mean_iou", classes=["water", "land"])
    assert err.value.key == "data.classes" and "data.classes: [a, b]" in str(err.value)


# --------------------------------------------------------------------------- ground truth
def test_early_stopping_follows_the_training_loop() -> None:
    loss = np.array([1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.76, 0.77])
    assert early_stopping(loss, patience=2, max_epochs=8) == (4, 2)  # 0.9, 0.85: 2 bad
    assert early_stopping(loss, patience=3, max_epochs=8) == (8, 5)  # 3 bad only at epoch 8
    assert early_stopping(loss, patience=9, max_epochs=6) == (6, 5)
    assert early_stopping(np.array([1.0, np.nan, 0.1]), patience=3, max_epochs=3) == (2, 1)
    assert early_stopping(np.array([np.nan]), patience=3, max_epochs=3) == (1, 0)


def test_early_stopping_on_a_score_keeps_its_best_epoch() -> None:
    """train.monitor: a score (higher is better, sign -1) decides; a NaN loss still ends the
    run, a NaN score never improves."""
    loss = np.array([1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.76, 0.77])
    iou = np.array([0.1, 0.3, 0.35, 0.34, 0.33, 0.36, 0.2, 0.2])
    assert early_stopping(loss, 2, 8, iou, -1.0) == (5, 3)  # 0.34, 0.33: 2 bad
    assert early_stopping(loss, 3, 8, iou, -1.0) == (8, 6)
    assert early_stopping(loss[:5], 3, 8, np.array([0.2, np.nan, np.nan, np.nan, 0.9]),
                          -1.0) == (4, 1)
    assert early_stopping(np.array([1.0, np.nan, 0.1]), 3, 3, iou[:3], -1.0) == (2, 1)


def test_ground_truth_and_replay_follow_the_monitor(tmp_path: Path) -> None:
    """One run whose loss is lowest at epoch 2 and whose IoU is highest at epoch 4."""
    p = ("gym_unet", 2, "dice", 0.001)
    curve = [(0.1, 1.0), (0.3, 0.5), (0.2, 0.6), (0.6, 0.7), (0.5, 0.8), (0.4, 0.9)]
    rows = [row(0, p, 0, e, iou, loss) for e, (iou, loss) in enumerate(curve, 1)]
    table = CurveTable.load(write_table(tmp_path / "t.csv", rows))
    on_loss = ground_truth(table, patience=2, max_epochs=6)
    on_iou = ground_truth(table, patience=2, max_epochs=6, monitor="val_mean_iou")
    assert (on_loss.scores[0], on_loss.epochs[0]) == (pytest.approx(0.3), 4.0)
    assert (on_iou.scores[0], on_iou.epochs[0]) == (pytest.approx(0.6), 6.0)
    results = list(replay_results(table, 0, 0, patience=2, max_epochs=6,
                                  metric="val_mean_iou", monitor="val_mean_iou"))
    assert len(results) == 6 and results[-1]["stop_reason"] == "early-stopped"
    assert [r["best_epoch"] for r in results] == [1, 2, 2, 4, 4, 4]
    # the kept epoch's validation loss, as the training loop reports it
    assert results[-1]["best_val_loss"] == pytest.approx(0.7)
    assert results[-1]["best_val_mean_iou"] == pytest.approx(0.6)


def test_ground_truth_on_a_table_with_a_known_answer(tmp_path: Path) -> None:
    """Config 0 improves then stalls (seed 0 stops at 4, keeps epoch 2; seed 1 runs all 5,
    keeps 5); config 1 keeps improving; config 2 fails on one seed (NaN at epoch 1)."""
    p = ("gym_unet", 2, "dice", 0.001)
    q = ("gym_unet", 4, "dice", 0.001)
    r = ("gym_unet", 8, "dice", 0.001)
    rows = []
    for e, (iou, loss) in enumerate([(0.1, 1.0), (0.5, 0.5), (0.6, 0.6), (0.7, 0.7),
                                     (0.2, 0.1)], 1):
        rows.append(row(0, p, 0, e, iou, loss))
    for e, (iou, loss) in enumerate([(0.1, 1.0), (0.2, 0.9), (0.3, 0.8), (0.4, 0.7),
                                     (0.6, 0.6)], 1):
        rows.append(row(0, p, 1, e, iou, loss))
        rows.append(row(1, q, 0, e, iou + 0.1, loss))
        rows.append(row(1, q, 1, e, iou + 0.1, loss))
        rows.append(row(2, r, 1, e, iou + 0.3, loss))
    rows.append(row(2, r, 0, 1, "nan", "nan"))
    table = CurveTable.load(write_table(tmp_path / "t.csv", rows))
    truth = ground_truth(table, patience=2, max_epochs=5)
    # config 0: seed 0 stops at epoch 4 keeping epoch 2 (0.5); seed 1 keeps epoch 5 (0.6)
    np.testing.assert_allclose(truth.scores, [0.55, 0.7, 0.9])
    np.testing.assert_allclose(truth.epochs, [4.5, 5.0, 3.0])  # config 2: 1 (NaN) and 5
    assert list(truth.ranks) == [3, 2, 1] and truth.best == pytest.approx(0.9)
    assert truth.grid_epochs == pytest.approx(12.5)
    assert truth.reached(1, 0.2) and not truth.reached(1, 0.19)


def test_a_replayed_trial_never_imports_torch(grid_table: Path, tmp_path: Path) -> None:
    """A replay trial's process validates its config and replays a curve without torch:
    importing it costs seconds of CPU per trial process, which at 32 trials on 2 cores was
    most of a rehearsal's overhead (``bench/bench_scale.py``)."""
    import subprocess
    import sys

    space = write_space(tmp_path / "space.yaml", SPACE)
    code = (
        "import sys\n"
        "import ray.tune\n"
        "from raygym.search.space_config import load_experiment\n"
        # what replay_trial imports when it runs
        "from raygym.search.replay import load_table, replay_results, replay_trial\n"
        "from raygym.search.space import REPEAT_KEY, trial_config\n"
        "from raygym.train.contract import NonFiniteLossError\n"
        f"config, space = load_experiment({str(space)!r})\n"
        "params = {'model.arch': 'gym_unet', 'model.filters': 2, 'loss.name': 'dice',"
        " 'train.max_lr': 0.001}\n"
        "trial, active = trial_config(params, config, space)\n"
        f"table = load_table({str(grid_table)!r})\n"
        "results = list(replay_results(table, table.match(active), 0, patience=3,"
        " max_epochs=8, metric='val_mean_iou', search=trial.search))\n"
        "print(len(results), 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["8", "False"]


def test_replayed_results_are_what_training_reports(grid_table: Path) -> None:
    table = CurveTable.load(grid_table)
    results = list(replay_results(table, 5, 1, patience=3, max_epochs=6,
                                  metric="val_mean_iou"))
    curve = table.curves[(5, 1)]
    assert [r["epoch"] for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r["training_iteration"] for r in results] == [1, 2, 3, 4, 5, 6]
    assert results[-1]["stop_reason"] == "completed"
    assert all(r["stop_reason"] == "" for r in results[:-1])
    kept = results[-1]["best_epoch"]
    assert results[-1]["best_val_mean_iou"] == pytest.approx(curve["val_mean_iou"][kept - 1])
    assert results[2]["val_mean_iou"] == pytest.approx(curve["val_mean_iou"][2])
    assert results[0]["epoch_seconds"] == pytest.approx(curve["seconds"][0])


def test_rung_metric_smooths_what_the_scheduler_judges(grid_table: Path, tmp_path: Path) -> None:
    from raygym.search.tune import build_scheduler

    config, space = load_space(tmp_path, rung_metric="mean3")
    s = config.search
    assert s.rung_value([0.1, 0.5, 0.2, 0.3]) == pytest.approx(1 / 3)
    assert s.rung_value([0.1, float("nan")]) == pytest.approx(0.1)
    assert math.isnan(s.rung_value([]))
    best = s.model_copy(update={"rung_metric": "max"})
    assert best.rung_value([0.1, 0.5, 0.2]) == 0.5
    assert best.model_copy(update={"mode": "min"}).rung_value([0.3, 0.1, 0.2]) == 0.1
    assert build_scheduler(config, space).metric == "rung_val_mean_iou"
    table = CurveTable.load(grid_table)
    results = list(replay_results(table, 2, 0, patience=9, max_epochs=4,
                                  metric="val_mean_iou", search=s))
    curve = table.curves[(2, 0)]["val_mean_iou"]
    assert results[3]["rung_val_mean_iou"] == pytest.approx(curve[1:4].mean())
    plain = load_space(tmp_path)[0].search
    assert plain.rung_key == "val_mean_iou"
    assert "rung_val_mean_iou" not in next(replay_results(
        table, 2, 0, patience=9, max_epochs=4, metric="val_mean_iou", search=plain))




# ---------------------------------------------------------------- through real Ray Tune
@pytest.mark.slow
def test_replayed_search_through_tune(grid_table: Path, tmp_path: Path, ray_session: None,
                                      capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    # rung_metric: ASHA gets its own metric (run_tune then passes Tune none); its grace is
    # learnt from the first 3 trials (LearntGrace in front of ASHA, inside SparingRepeats)
    sections["search"].update(num_samples=6, results_dir=str(tmp_path / "results"),
                              rung_metric="max", repeat_top=1, grace_period="auto",
                              grace_trials=3)
    space_file = write_space(tmp_path / "space.yaml", sections)
    from raygym.cli import main

    assert main(["search", str(space_file), "--replay", str(grid_table)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # (the console wraps long lines)
    assert "grace learnt from the first 3 trials" in printed
    assert re.search(r"grace period learnt from the first 3 trials run in full: trials "
                     r"judged from epoch [1-8]\b", printed)
    out = tmp_path / "results" / "replay-replay"  # a rehearsal's own folder
    saved = json.loads((out / "search.json").read_text())
    assert f"judged from epoch {saved['learnt_grace']}" in printed  # kept for the report
    verdict = saved["replay"]
    table = CurveTable.load(grid_table)
    truth = ground_truth(table, patience=3, max_epochs=8)
    assert verdict["grid_epochs"] == pytest.approx(truth.grid_epochs)
    assert verdict["grid_best"] == pytest.approx(truth.best)
    assert len(verdict["ranks"]) == 24
    # the fixture's winner leads on both training seeds: either seed alone confirms it
    assert verdict["noise"]["split_within"] == 1.0 and verdict["noise"]["run_sd"] < 0.05
    assert ("its best by half the training seeds is within 0.01 of its best by the other half "
            "in 100% of splits") in printed and "not a verdict" not in printed
    # every epoch the trials reported is counted; the leaderboard agrees
    with (out / "leaderboard.csv").open(newline="") as fh:
        board = list(csv.DictReader(fh))
    assert 1 <= len(board) <= 6
    assert verdict["epochs"] == sum(int(r["epochs"]) for r in board)
    found = verdict["found"]
    assert found is not None and found["rank"] == truth.ranks[table.match(found["params"])]
    assert not (out / "best").exists()  # nothing trained, nothing exported
    # repeat_top 1: a leader was trained again (run 1); the leaderboard ranks by the mean of
    # a configuration's runs, and both runs carry that mean
    repeated = [r for r in board if r["run"] == "1"]
    assert repeated
    for r in repeated:
        twin = [o for o in board if o["run"] == "0" and all(
            o[k] == r[k] for k in ("model.arch", "model.filters", "loss.name", "train.max_lr"))]
        assert len(twin) == 1
        mean = (float(r["best_val_mean_iou"]) + float(twin[0]["best_val_mean_iou"])) / 2
        assert float(r["mean_best_val_mean_iou"]) == pytest.approx(mean, abs=1e-5)
    means = [float(r["mean_best_val_mean_iou"]) for r in board]
    assert means == sorted(means, reverse=True)


def test_replay_refuses_a_space_the_table_cannot_replay(grid_table: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["model"]["filters"] = {"choice": [2, 16]}  # snapped: 16 -> 8, allowed
    sections["model"]["arch"] = {"choice": ["gym_unet", "unet"]}
    space_file = write_space(tmp_path / "space.yaml", sections)
    code, err = run_cli(["search", str(space_file), "--replay", str(grid_table)], capsys)
    assert code == 2
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "model.arch" in line[0] and "unet" in line[0]
    assert not (tmp_path / "results").exists()


def test_repeats_need_the_optuna_searcher(tmp_path: Path) -> None:
    from raygym.search.run import check_space

    config, space = load_space(tmp_path, algorithm="random", repeat_top=2)
    with pytest.raises(ConfigError, match="search.repeat_top"):
        check_space(config, space, "space.yaml")
    config, space = load_space(tmp_path, algorithm="random")  # the default: no error
    check_space(config, space, "space.yaml")
    assert config.search.repeat_top == 3 and config.search.tpe.multivariate


@pytest.mark.slow
def test_a_smoke_test_run_again_replaces_its_own_results_only(
        grid_table: Path, tmp_path: Path, ray_session: None,
        capsys: pytest.CaptureFixture) -> None:
    """The README's first command twice: a smoke test's (and a rehearsal's) results are
    scratch, in their own folder, so the second run replaces them (said in a line); a folder
    holding anything raygym did not write there, or a search that was neither, is refused as
    before, and one is never resumed as the other kind."""
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(results_dir=str(tmp_path / "results"))
    space_file = write_space(tmp_path / "space.yaml", sections)
    from raygym.cli import main

    argv = ["search", str(space_file), "--replay", str(grid_table), "--smoke-test"]
    assert main(argv) == 0
    out = tmp_path / "results" / "replay-smoke-replay"
    first = json.loads((out / "search.json").read_text())
    assert first["smoke_test"] is True and first["status"] == "finished"
    capsys.readouterr()
    assert main(argv) == 0
    assert "replacing the earlier smoke test's results" in capsys.readouterr().out
    assert json.loads((out / "search.json").read_text())["started"] != first["started"]
    for mine in ("notes.txt", ".my_notes.md", "evaluation_field_notes.txt"):
        (out / mine).write_text("mine")
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"not write there ({mine})" in err and "not replaced" in err, err
        assert (out / mine).read_text() == "mine"
        (out / mine).unlink()
    # the rehearsals never touched the folders of the real search and its smoke test
    assert sorted(p.name for p in out.parent.iterdir()) == ["replay-smoke-replay"]
    saved = json.loads((out / "search.json").read_text())
    (out / "search.json").write_text(json.dumps({**saved, "smoke_test": False,
                                                 "replay_table": None}))
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err
    # resumed as the other kind (a trained search as a rehearsal, a rehearsal as a trained
    # search): one line, where Tune's restore raised a traceback from inside Ray
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "a rehearsal (--replay) cannot resume it" in err and "Traceback" not in err
    (out / "search.json").write_text(json.dumps(saved))
    assert main(["search", str(space_file), "--set", f"name={out.name}", "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"rehearsal on a recorded table; resume it with --replay {grid_table}" in err
    assert "Traceback" not in err
