"""``raygym search SPACE --replay TABLE --searches N``: many simulated searches of SPACE's
settings beside raygym's defaults, random search and the grid, on a hand-made table whose
answer is known (``curve_tables.py``: one clear winner, configuration 22 of 24)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raygym.search.rehearse import fresh_noise_shares, rehearsal_rows, rehearse
from raygym.search.replay import CurveTable, ground_truth

from . import one_error_line, run_cli, write_space
from .curve_tables import SPACE, load_space


def test_rows_set_yours_beside_the_defaults_random_and_the_grid(grid_table: Path,
                                                                tmp_path: Path) -> None:
    table = CurveTable.load(grid_table)
    config, _ = load_space(tmp_path, scheduler="asha", repeat_top=2)
    rows = {r.name: r for r in rehearsal_rows(config, table)}
    assert list(rows) == ["yours", "defaults", "random", "grid"]
    assert rows["yours"].config is config and rows["yours"].sampler == "tpe"
    # random search keeps your scheduler and repeats; only the sampler changes
    random = rows["random"].config.search
    assert rows["random"].sampler == "random"
    assert (random.scheduler, random.grace_period, random.repeat_top) == ("asha", 1, 2)
    # raygym's defaults keep your budget and take every other search key as shipped, the
    # grace period derived from your training (1-epoch warm-up: judged from epoch 2)
    defaults = rows["defaults"].config.search
    assert (defaults.num_samples, defaults.max_concurrent) == (24, 2)
    assert (defaults.scheduler, defaults.grace_period, defaults.repeat_top) == ("asha", 2, 3)
    assert rows["grid"].config.search.num_samples == len(table.configs) == 24
    # settings that are the defaults get no second row of them
    plain = json.loads(json.dumps(SPACE))
    plain["search"] = {"num_samples": 24, "max_concurrent": 2}
    from raygym.search.space_config import load_experiment

    config, _ = load_experiment(write_space(tmp_path / "plain.yaml", plain))
    assert [r.name for r in rehearsal_rows(config, table)] == ["yours", "random", "grid"]


def test_rehearsal_on_a_table_with_a_known_answer(grid_table: Path, tmp_path: Path) -> None:
    table = CurveTable.load(grid_table)
    config, space = load_space(tmp_path, seed=5, repeat_top=0)
    truth = ground_truth(table, patience=3, max_epochs=8)
    winner = int(np.argmin(truth.ranks))
    assert winner == 22  # factorial order: the grid meets it near its end
    out = rehearse(config, space, table, searches=3, workers=1)
    assert out["search_seeds"] == [5, 7] and out["grid_epochs"] == truth.grid_epochs
    assert out["grid_best"] == truth.best and out["configurations"] == 24
    rows = {r["name"]: r for r in out["rows"]}
    assert list(rows) == ["yours", "defaults", "random", "grid"]
    assert all(r["searches"] == 3 for r in rows.values())
    grid = rows["grid"]
    # the grid reaches the winner only after every configuration before it ran to its
    # early stop, and hands it back at the end of its budget, on every search seed
    before = truth.epochs[:winner].sum() / truth.grid_epochs
    assert grid["to_best"][0] >= before and grid["reached"] == 1.0
    assert grid["top1"][0.5] == 0.0 and grid["anytime"][1.0] == pytest.approx(truth.best)
    assert grid["pruned"] == 0 and grid["trials"] == 24
    # the others lie far more than one standard error below the winner
    assert grid["noise_at_50"] == 0.0
    # the winner stands far above the others: TPE finds it within the grid's budget
    assert rows["yours"]["reached"] == 1.0
    assert rows["yours"]["to_best"][1] < grid["to_best"][1]


def test_each_search_is_judged_on_a_seed_it_never_replayed(grid_table: Path,
                                                          tmp_path: Path) -> None:
    """A third seed (the second's curves, shifted): each search replays the table without one
    seed and its hand-back at half the grid's epochs is scored on that seed alone. The
    winner stands out on every seed (the table's best in every fold); the grid, in
    factorial order, has not reached it by then (configuration 22 of 24)."""
    import pandas as pd

    frame = pd.read_csv(grid_table)
    third = frame[frame["seed"] == 1].assign(seed=2)
    third["val_mean_iou"] += 0.01  # seed 2 scores every configuration 0.01 higher
    path = tmp_path / "three_seeds.csv"
    pd.concat([frame, third]).to_csv(path, index=False)
    table = CurveTable.load(path)
    config, space = load_space(tmp_path, seed=0, repeat_top=2)
    truth = ground_truth(table, patience=3, max_epochs=8)
    out = rehearse(config, space, table, searches=6, workers=1)
    rows = {r["name"]: r for r in out["rows"]}
    winner = truth.per_seed[22]  # its kept score on seeds 0, 1, 2
    # 6 searches: seeds 0-5 leave out recorded seeds 0, 1, 2, 0, 1, 2 in turn
    assert out["best_unseen"] == pytest.approx(winner.mean())
    first_half = truth.per_seed[:12].max(axis=0)  # the grid has seen at most these by 50 %
    assert rows["grid"]["unseen_at_50"] <= first_half.mean() + 1e-9 < 0.6
    # TPE hands back the winner by then in most searches; nothing scores above it
    assert 0.7 < rows["yours"]["unseen_at_50"] <= winner.mean() + 1e-9
    # with more runs per configuration than a fold keeps (2 seeds), no such score
    config, space = load_space(tmp_path, seed=0, repeat_top=2, repeat_runs=3)
    out = rehearse(config, space, table, searches=3, workers=1)
    assert {r["name"]: r["unseen_at_50"] for r in out["rows"]}["yours"] is None


def test_fresh_noise_replays_one_seed_and_is_judged_by_the_others(grid_table: Path,
                                                                 tmp_path: Path) -> None:
    """Search seed k replays recorded seed k mod S alone, with the other seeds' grid epochs
    as its budget, and is judged by their mean; a one-seed table has no fresh noise."""
    from raygym.search.replay import config_truth
    from raygym.search.simulate import simulate

    table = CurveTable.load(grid_table)
    assert table.seeds == [0, 1]
    config, space = load_space(tmp_path, seed=0, repeat_top=0)
    calls: list[tuple[list[int], int, float]] = []

    def run(config: Any, alone: CurveTable, seed: int, budget: float) -> Any:
        calls.append((alone.seeds, seed, budget))
        assert {k[1] for k in alone.curves} == set(alone.seeds)
        return simulate(config, space, alone, seed=seed, max_epochs_spent=budget)

    shares = fresh_noise_shares(config, table, [4, 5, 6], run)
    judge = {s: config_truth(config, table.without_seed(s)) for s in (0, 1)}
    assert calls == [([0], 4, judge[0].grid_epochs), ([1], 5, judge[1].grid_epochs),
                     ([0], 6, judge[0].grid_epochs)]
    # the winner stands out on each seed alone: TPE finds it within the budget every time
    assert shares is not None and len(shares) == 3
    assert all(0 < x <= 1 for x in shares)
    assert fresh_noise_shares(config, table.only_seed(0), [0], run) is None


def test_the_command_prints_the_rows_and_writes_nothing(grid_table: Path,
                                                        tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(results_dir=str(tmp_path / "results"), repeat_top=0)
    space_file = write_space(tmp_path / "space.yaml", sections)
    from raygym.cli import main

    assert main(["search", str(space_file), "--replay", str(grid_table), "--searches", "2"]) == 0
    printed = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in printed.splitlines()
             if re.match(r"(yours|defaults|random|grid)\s+\S+%", ln)}
    assert list(lines) == ["yours", "defaults", "random", "grid"]
    # the same figures as the simulator gives in this process (the command ran its rows
    # in worker processes)
    from raygym.search.space_config import load_experiment

    config, space = load_experiment(space_file)
    grid = rehearse(config, space, CurveTable.load(grid_table), searches=2,
                    workers=1)["rows"][-1]
    assert lines["grid"][1:4] == [f"{x:.0%}" for x in grid["to_best"]]
    # truth at 50 %; no score on an unseen seed from a table of 2 seeds
    assert lines["grid"][-3:-1] == [f"{grid['anytime'][0.5]:.3f}", "-"]
    # reach on the table's seeds, then on fresh noise
    assert lines["grid"][4:6] == [f"{grid['reached']:.0%}", f"{grid['reached_fresh']:.0%}"]
    words = " ".join(printed.split())  # (the console wraps long lines)
    assert "grid: every configuration of the table once (24 trials)" in words
    assert ("yours: at most 24 trials, TPE (multivariate) + ASHA (grace 1, reduction factor "
            "3)") in words
    assert "every search replays one recorded training seed for all its configurations" in words
    assert not (tmp_path / "results").exists()


def test_searches_without_a_table_or_with_resume_are_one_line(grid_table: Path,
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture
                                                               ) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["search"]["results_dir"] = str(tmp_path / "results")
    space_file = write_space(tmp_path / "space.yaml", sections)
    code, err = run_cli(["search", str(space_file), "--searches", "3"], capsys)
    assert code == 2 and "--replay TABLE" in one_error_line(err)
    code, err = run_cli(["search", str(space_file), "--replay", str(grid_table),
                         "--searches", "3", "--resume"], capsys)
    assert code == 2 and "nothing to resume" in one_error_line(err)
    # a third run of a leader would replay one of the table's 2 seeds again
    code, err = run_cli(["search", str(space_file), "--replay", str(grid_table),
                         "--searches", "3", "--set", "search.repeat_runs=3"], capsys)
    assert code == 2 and "search.repeat_runs" in one_error_line(err)
    assert "repeat_runs <= 2" in err
    assert not (tmp_path / "results").exists()


def test_the_shipped_rehearsal_spaces_fit_their_tables() -> None:
    """``bench/curves/<table>.space.yaml``: the README's rehearsal command on each."""
    from raygym.search.space_config import load_experiment

    curves = Path(__file__).parents[2] / "bench" / "curves"
    spaces = sorted(curves.glob("*.space.yaml"))
    assert len(spaces) >= 2
    for space_file in spaces:
        base = space_file.name.removesuffix(".space.yaml")
        table_file = next(p for p in curves.glob(f"{base}.csv*") if p.suffix in (".csv", ".gz"))
        config, space = load_experiment(space_file)
        table = CurveTable.load(table_file)
        table.check_space(space, config.train.max_epochs, config.search.metric,
                          config.train.monitor, list(config.data.classes))
        assert config.train.max_epochs == table.epochs
        assert config.search.num_samples == len(table.configs)
        assert [r.name for r in rehearsal_rows(config, table)] == ["yours", "random", "grid"]
