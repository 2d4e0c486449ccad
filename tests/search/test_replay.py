"""Curve tables, the ground truth they imply, replayed trials, and the search simulator's
figures, on hand-made tables whose answers are known; plus one small replayed search through
real Tune (``raygym search SPACE --replay TABLE``)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raygym.errors import ConfigError, DataError
from raygym.search.replay import (
    CurveTable,
    early_stopping,
    ground_truth,
    replay_results,
    replay_seed_index,
)
from raygym.search.simulate import (
    SearchTrace,
    chosen_at,
    epochs_to_target,
    simulate,
    summarize,
    top_k_funnel,
)
from raygym.search.space_config import load_experiment

from . import run_cli, write_space

COLUMNS = ["config_id", "param:model.arch", "param:model.filters", "param:loss.name",
           "param:train.max_lr", "seed", "epoch", "val_mean_iou", "val_loss", "train_loss",
           "lr", "seconds", "val_iou/a", "val_iou/b"]
ARCHS, FILTERS, LRS = ["gym_unet", "gym_resunet"], [2, 4, 8], [0.001, 0.01]
LOSSES = ["dice", {"cce": 0.5, "dice": 0.5}]
WINNER = ("gym_resunet", 8, json.dumps(LOSSES[1], sort_keys=True), 0.001)


def write_table(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def row(cid: int, params: tuple[Any, ...], seed: int, epoch: int, iou: float, loss: float,
        seconds: float = 1.0) -> list[Any]:
    return [cid, *params, seed, epoch, iou, loss, loss, 1e-3, seconds, iou, iou]


@pytest.fixture(scope="module")
def grid_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 configurations x 2 seeds x 8 epochs: saturating curves, one clear winner
    (WINNER, plateau 0.8); the others plateau at 0.3-0.5, bigger models higher."""
    rows, rng = [], np.random.default_rng(0)
    points = list(itertools.product(ARCHS, FILTERS, LOSSES, LRS))
    for cid, (arch, filters, loss, lr) in enumerate(points):
        params = (arch, filters, json.dumps(loss, sort_keys=True) if isinstance(loss, dict)
                  else loss, lr)
        plateau = 0.8 if params == WINNER else 0.3 + 0.2 * cid / len(points)
        for seed, epoch in itertools.product((0, 1), range(1, 9)):
            iou = plateau * (1 - math.exp(-epoch / 2)) + rng.normal(0, 0.005)
            rows.append(row(cid, params, seed, epoch, iou, 1 - iou, 0.5 + filters / 8))
    return write_table(tmp_path_factory.mktemp("curves") / "grid.csv", rows)


SPACE = {
    "name": "replay",
    "data": {"images": "nowhere/images", "labels": "nowhere/labels", "classes": ["a", "b"]},
    "model": {"arch": {"choice": ARCHS}, "filters": {"choice": FILTERS}},
    "loss": {"name": {"choice": LOSSES}},
    "train": {"max_lr": {"choice": LRS}, "max_epochs": 8, "patience": 3,
              "rampup_epochs": 1},
    "search": {"num_samples": 24, "max_concurrent": 2, "grace_period": 1,
               "reduction_factor": 3},
}


def load_space(tmp_path: Path, **search: Any) -> tuple[Any, Any]:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(search)
    return load_experiment(write_space(tmp_path / "space.yaml", sections))


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


# ------------------------------------------------------------------------------- metrics
def test_search_metrics_on_hand_made_traces(grid_table: Path) -> None:
    table = CurveTable.load(grid_table)
    truth = ground_truth(table, patience=3, max_epochs=8)
    winner = int(np.argmin(truth.ranks))
    other = int(np.argmax(truth.ranks))
    grid = truth.grid_epochs
    early = SearchTrace(epochs=np.arange(1, 101), chosen=np.array(
        [-1] * 4 + [other] * 6 + [winner] * 90), trials=10, pruned=5, sim_seconds=1.0)
    never = SearchTrace(epochs=np.arange(1, 101), chosen=np.full(100, other), trials=10,
                        pruned=5, sim_seconds=1.0)
    assert epochs_to_target(early, truth) == 11
    assert epochs_to_target(never, truth) == math.inf
    assert chosen_at(early, 4) == -1 and chosen_at(early, 10) == other
    assert chosen_at(early, 10.5) == other and chosen_at(early, 11) == winner
    out = summarize([early, never, early], truth)
    assert out["to_best"][1] == pytest.approx(11 / grid)  # median of (11, inf, 11)
    assert out["reached"] == pytest.approx(2 / 3)
    assert out["top1"][0.5] == pytest.approx(2 / 3)
    assert out["anytime"][1.0] == pytest.approx(truth.scores[winner])  # median of 3
    out = summarize([early, never, never], truth)
    assert out["to_best"][:2] == (pytest.approx(11 / grid), math.inf)
    assert out["anytime"][1.0] == pytest.approx(truth.scores[other])


def test_top_k_funnel_on_hand_made_traces(grid_table: Path) -> None:
    """Started / ran to its end / handed back, each by the budget, for a top-3 configuration."""
    truth = ground_truth(CurveTable.load(grid_table), patience=3, max_epochs=8)
    best, worst = int(np.argmin(truth.ranks)), int(np.argmax(truth.ranks))
    half = 0.5 * truth.grid_epochs
    epochs = np.arange(1, int(truth.grid_epochs) + 1)

    def trace(chosen: int, started: float, ended: float, completed: bool) -> SearchTrace:
        return SearchTrace(epochs=epochs, chosen=np.full(len(epochs), chosen), trials=2,
                           pruned=0, sim_seconds=1.0, order=[worst, best],
                           started=[0, int(started)], ended=[8.0, ended],
                           completed=[True, completed])

    found = trace(best, 1, 9, True)  # the best ran to its end early and is handed back
    missed = trace(worst, 1, 9, True)  # ... ran, but another is handed back
    pruned = trace(worst, 1, 4, False)  # ... stopped by the scheduler
    late = trace(worst, half + 1, math.inf, False)  # ... suggested after the budget
    out = top_k_funnel([found, missed, pruned, late], truth, 0.5)
    assert out == {"started": 0.75, "completed": 0.5, "chosen": 0.25}
    assert top_k_funnel([late], truth, 1.0)["started"] == 1.0


# ----------------------------------------------------------------------------- simulator
def test_each_search_seed_draws_its_own_seed_assignment() -> None:
    """A configuration's runs replay distinct recorded seeds, the same ones again for the same
    search seed. Shared (raygym's training: every trial on ``train.seed`` + its run): all
    configurations' run r replay one seed, drawn per search seed; per trial: every
    configuration draws its own, so search seeds draw many different grids."""
    n_seeds, configs = 4, range(30)
    for draw in ("shared", "per_trial"):
        for search_seed in (0, 7):
            for cid in configs:
                runs = [replay_seed_index(n_seeds, cid, search_seed, r, draw)
                        for r in range(n_seeds)]
                assert sorted(runs) == list(range(n_seeds))
                assert runs == [replay_seed_index(n_seeds, cid, search_seed, r, draw)
                                for r in range(n_seeds)]
    shared = [{replay_seed_index(n_seeds, cid, s, 0) for cid in configs} for s in range(100)]
    assert all(len(firsts) == 1 for firsts in shared)
    assert {next(iter(firsts)) for firsts in shared} == set(range(n_seeds))
    grids = {tuple(replay_seed_index(n_seeds, cid, s, 0, "per_trial") for cid in configs)
             for s in range(100)}
    assert len(grids) == 100
    # every recorded seed is a configuration's first run about as often (30 x 100 draws)
    firsts = np.bincount([g[c] for g in grids for c in configs], minlength=n_seeds)
    assert firsts.min() > 0.2 * 3000


def test_simulated_grid_costs_what_the_grid_costs(grid_table: Path, tmp_path: Path) -> None:
    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path, max_concurrent=1)
    truth = ground_truth(table, patience=3, max_epochs=8)
    trace = simulate(config, space, table, seed=0, max_epochs_spent=math.inf,
                     algorithm="grid")
    assert trace.trials == 24 and trace.pruned == 0
    assert sorted(trace.order) == list(range(24))
    # both seeds' curves early-stop at the same epoch in this table: replayed == mean
    assert trace.epochs[-1] == pytest.approx(truth.grid_epochs)
    assert chosen_at(trace, trace.epochs[-1]) == int(np.argmin(truth.ranks))


def test_simulated_tpe_asha_prunes_never_repeats_and_is_seeded(grid_table: Path,
                                                               tmp_path: Path) -> None:
    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path, num_samples=24, repeat_top=0)
    truth = ground_truth(table, patience=3, max_epochs=8)
    first = simulate(config, space, table, seed=3, max_epochs_spent=truth.grid_epochs)
    again = simulate(config, space, table, seed=3, max_epochs_spent=truth.grid_epochs)
    assert first.order == again.order and list(first.chosen) == list(again.chosen)
    assert len(set(first.order)) == len(first.order)  # no configuration trained twice
    assert first.pruned > 0
    assert first.epochs[-1] <= truth.grid_epochs
    # ASHA stops trials at rungs 1 and 3: fewer epochs per trial than the grid's 8
    assert first.epochs[-1] / first.trials < 8
    # each trial's start and end in epochs spent: those the scheduler stopped did not complete
    # (inf: still running when the budget ran out)
    assert sum(not ok and e < math.inf for ok, e in zip(
        first.completed, first.ended, strict=True)) == first.pruned
    assert all(s + n <= e and (e <= first.epochs[-1] or e == math.inf) for s, e, n in zip(
        first.started, first.ended, first.ran, strict=True))


def test_simulated_repeats_race_the_leaders(grid_table: Path, tmp_path: Path) -> None:
    """repeat_top: the searcher's repeats replay the table's other seed; the hand-back is
    the configuration with the best mean, which for a repeated one is its ground truth."""
    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path, num_samples=40, repeat_top=3, scheduler="none")
    truth = ground_truth(table, patience=3, max_epochs=8)
    trace = simulate(config, space, table, seed=1, max_epochs_spent=math.inf)
    counts = {c: trace.order.count(c) for c in set(trace.order)}
    assert len(counts) == 24 and max(counts.values()) == 2
    assert 3 <= sum(n == 2 for n in counts.values()) < 24
    final = int(trace.chosen[-1])
    assert counts[final] == 2 and final == int(np.argmin(truth.ranks))


def test_simulated_repeats_are_not_stopped_by_the_scheduler(grid_table: Path,
                                                           tmp_path: Path) -> None:
    """With ASHA, a configuration's second run (its repeat) runs as long as its first
    (the table's seeds early-stop alike), so the mean the leaderboard ranks by is a mean of
    full runs."""
    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path, num_samples=40, repeat_top=3)
    trace = simulate(config, space, table, seed=1, max_epochs_spent=math.inf)
    assert trace.pruned > 0
    firsts: dict[int, int] = {}
    repeats = 0
    for cid, ran in zip(trace.order, trace.ran, strict=True):
        if cid in firsts:
            repeats += 1
            assert ran >= firsts[cid]  # a leader finished its first run; so does its repeat
        else:
            firsts[cid] = ran
    assert repeats >= 3


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
    out = tmp_path / "results" / "replay"
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


# ---------------------------------------------------------------------- BOHB (bohb extra)
def _bohb_installed() -> bool:
    from raygym.search.bohb import bohb_installed

    return bohb_installed()


needs_bohb = pytest.mark.skipif(not _bohb_installed(), reason="needs the bohb extra")


def test_a_bohb_config_loads_without_the_extra(tmp_path: Path) -> None:
    """A model artifact's config.yaml carries its search section: it must load anywhere."""
    config, _ = load_space(tmp_path, algorithm="bohb")
    assert config.search.algorithm == "bohb"


@pytest.mark.skipif(_bohb_installed(), reason="the bohb extra is installed: nothing is missing")
def test_bohb_without_the_extra_is_one_line_before_ray(grid_table: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(algorithm="bohb", results_dir=str(tmp_path / "results"))
    space_file = write_space(tmp_path / "space.yaml", sections)
    code, err = run_cli(["search", str(space_file), "--replay", str(grid_table)], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(line) == 1 and "raygym[bohb]" in line[0], err
    assert "search.algorithm" in line[0] and "Traceback" not in err
    assert not (tmp_path / "results").exists()


@needs_bohb
def test_config_space_keeps_types_choices_and_conditions(tmp_path: Path) -> None:
    from raygym.search.space import active_params, config_space, from_config_space

    sections = json.loads(json.dumps(SPACE))
    sections["train"]["max_lr"] = {"loguniform": [1e-4, 1e-2]}
    sections["model"]["kernel"] = {"int": [3, 7], "when": {"model.arch": ["gym_resunet"]}}
    config, space = load_experiment(write_space(tmp_path / "space.yaml", sections))
    cs = config_space(space, seed=0)
    assert sorted(cs.keys()) == sorted(space.paths())
    seen_kernel = {True: 0, False: 0}
    for sampled in cs.sample_configuration(200):
        params = from_config_space(space, dict(sampled))
        has_kernel = "model.kernel" in params
        # the conditional key comes exactly when its condition holds
        assert has_kernel == (params["model.arch"] == "gym_resunet")
        seen_kernel[has_kernel] += 1
        assert params["loss.name"] in LOSSES  # the weighted loss decoded back to a dict
        assert type(params["model.filters"]) is int and params["model.filters"] in FILTERS
        assert 1e-4 <= params["train.max_lr"] <= 1e-2 and type(params["train.max_lr"]) is float
        if has_kernel:
            assert type(params["model.kernel"]) is int and 3 <= params["model.kernel"] <= 7
        assert active_params(space, params) == params
    assert min(seen_kernel.values()) > 50


@needs_bohb
def test_bohb_never_suggests_a_configuration_twice(tmp_path: Path) -> None:
    from ray.tune.search import Searcher

    from raygym.search.bohb import BohbSearch
    from raygym.search.space import config_key

    config, space = load_space(tmp_path)
    searcher = BohbSearch(space, metric="val_mean_iou", mode="max", seed=0, max_concurrent=0)
    keys = []
    for i in range(24):
        params = searcher.suggest(f"t{i}")
        assert isinstance(params, dict)
        keys.append(config_key(params))
        searcher.on_trial_result(f"t{i}", {"val_mean_iou": 0.1 * (i % 5), "training_iteration": 1,
                                           "hyperband_info": {"budget": 1}})
        searcher.on_trial_complete(f"t{i}")
    assert len(set(keys)) == 24  # every point of the 24-point space, once
    assert searcher.suggest("t24") == Searcher.FINISHED


@needs_bohb
def test_simulated_bohb_pauses_halves_and_is_seeded(grid_table: Path, tmp_path: Path) -> None:
    """HyperBandForBOHB through the simulator: trials pause at rungs and the worse are
    stopped there (pruned), fewer epochs than the grid, same seed same search."""
    table = CurveTable.load(grid_table)
    # patience 8: trials run to their rungs (early-stopped trials would leave the brackets)
    config, space = load_space(tmp_path, algorithm="bohb", repeat_top=0)
    config = config.model_copy(update={"train": config.train.model_copy(
        update={"patience": 8})})
    first = simulate(config, space, table, seed=2, max_epochs_spent=math.inf)
    again = simulate(config, space, table, seed=2, max_epochs_spent=math.inf)
    assert first.order == again.order and list(first.chosen) == list(again.chosen)
    assert len(set(first.order)) == len(first.order) == 24
    assert first.pruned > 0 and first.epochs[-1] < 24 * 8


def test_bohb_refuses_another_scheduler(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.scheduler.*bohb"):
        load_space(tmp_path, algorithm="bohb", scheduler="median", repeat_top=0)


@pytest.mark.slow
@needs_bohb
def test_replayed_bohb_search_through_tune_resumes_paused_trials(
        grid_table: Path, tmp_path: Path, ray_session: None,
        capsys: pytest.CaptureFixture) -> None:
    """Real Tune pauses replayed trials at HyperBand's rungs and resumes them from their
    checkpoint: each trial's epochs run 1, 2, ... without a gap or a restart."""
    sections = json.loads(json.dumps(SPACE))
    sections["train"]["patience"] = 8
    sections["search"].update(num_samples=12, algorithm="bohb", repeat_top=0,
                              results_dir=str(tmp_path / "results"))
    space_file = write_space(tmp_path / "space.yaml", sections)
    code, _ = run_cli(["search", str(space_file), "--replay", str(grid_table)], capsys)
    assert code == 0
    out = tmp_path / "results" / "replay"
    progress = sorted((out / "ray").rglob("progress.csv"))
    assert len(progress) == 12
    lengths = []
    for path in progress:
        with path.open(newline="") as fh:
            epochs = [int(r["epoch"]) for r in csv.DictReader(fh)]
        assert epochs == list(range(1, len(epochs) + 1))
        lengths.append(len(epochs))
    assert min(lengths) < 8 <= max(lengths)  # some stopped at a rung, some ran the budget


# ------------------------------------------------- learning-curve-aware stopping settings
@pytest.mark.parametrize("search", [{"scheduler": "patient", "prune_patience": 0},
                                    {"rung_on": "val_loss"}])
def test_simulated_lc_aware_stopping_prunes_and_is_seeded(grid_table: Path, tmp_path: Path,
                                                          search: dict[str, Any]) -> None:
    from raygym.search.tune import build_scheduler

    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path, repeat_top=0, grace_period=2, **search)
    scheduler = build_scheduler(config, space).base  # inside FirstComeFirstServed
    assert (scheduler.metric, getattr(scheduler, "_mode", None)) == (
        ("val_loss", "min") if "rung_on" in search else (None, None))
    truth = ground_truth(table, patience=3, max_epochs=8)
    traces = [simulate(config, space, table, seed=seed, max_epochs_spent=truth.grid_epochs)
              for seed in range(6)]
    again = simulate(config, space, table, seed=4, max_epochs_spent=truth.grid_epochs)
    assert traces[4].order == again.order and list(traces[4].chosen) == list(again.chosen)
    # this table's curves are nearly noise-free, so a trial is stopped in only some searches
    pruning = [tr for tr in traces if tr.pruned > 0]
    assert pruning and all(tr.epochs[-1] / tr.trials < 8 for tr in pruning)


def test_rung_on_val_loss_refuses_a_smoothed_metric(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.rung_metric.*rung_on"):
        load_space(tmp_path, rung_on="val_loss", rung_metric="max")
