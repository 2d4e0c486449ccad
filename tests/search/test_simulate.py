"""The search simulator (raygym's searcher and Tune's schedulers in simulated time) and its
figures, on hand-made traces and tables whose answers are known."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raygym.errors import ConfigError
from raygym.search.replay import CurveTable, ground_truth, replay_seed_index
from raygym.search.simulate import (
    SearchTrace,
    chosen_at,
    epochs_to_target,
    simulate,
    summarize,
    top_k_funnel,
)

from .curve_tables import load_space


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
