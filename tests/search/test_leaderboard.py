"""The leaderboard's seed-noise line: the spread of repeated runs and the ties it implies."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from raygym.search.leaderboard import Leaderboard, noise_line

M = "val_mean_iou"


def _board(runs: list[tuple[dict, float, str]]) -> Leaderboard:
    """Rows ranked as build_leaderboard ranks them: by the mean of a configuration's runs."""
    means: dict[str, list[float]] = {}
    for params, v, _ in runs:
        means.setdefault(str(sorted(params.items())), []).append(v)
    rows = []
    for i, (params, v, status) in enumerate(runs):
        scores = means[str(sorted(params.items()))]
        rows.append({"trial_id": f"t{i}", "status": status, f"best_{M}": v, "params": params,
                     f"mean_best_{M}": sum(scores) / len(scores)})
    rows.sort(key=lambda r: -r[f"mean_best_{M}"])
    return Leaderboard(rows=rows, classes=["a"], param_keys=["f"], metric=M, mode="max")


def test_seed_noise_pools_the_repeated_runs_and_counts_the_ties(tmp_path: Path) -> None:
    board = _board([({"f": 2}, 0.50, "completed"), ({"f": 2}, 0.40, "completed"),   # mean .45
                    ({"f": 4}, 0.44, "completed"), ({"f": 4}, 0.42, "early-stopped"),  # .43
                    ({"f": 8}, 0.38, "completed"),                                  # .38
                    ({"f": 12}, 0.44, "asha-pruned")])  # pruned: neither spread nor tie
    noise = board.seed_noise()
    assert noise is not None and noise["repeated"] == 2
    # deviations +-0.05 and +-0.01 over 2 degrees of freedom
    assert noise["run_sd"] == pytest.approx(math.sqrt((2 * 0.05**2 + 2 * 0.01**2) / 2))
    assert noise["tied"] == 2  # f2 (rank 1) and f4 (0.02 below); f8 is 0.07 below
    board.write(tmp_path)
    assert "2 finished configurations are within that of rank 1" in (
        tmp_path / "leaderboard.md").read_text()
    assert board.summary(1.0)["seed_noise"] == noise


def test_no_seed_noise_without_a_repeated_run() -> None:
    board = _board([({"f": 2}, 0.5, "completed"), ({"f": 4}, 0.4, "completed")])
    assert board.seed_noise() is None and board.summary(1.0)["seed_noise"] is None
    lone = {"run_sd": 0.01, "repeated": 1, "tied": 1}
    assert "No other finished configuration" in noise_line(lone, M)


def test_the_printed_leaderboard_keeps_every_value_in_an_80_column_terminal(
        tmp_path: Path) -> None:
    from rich.console import Console

    from raygym.search.leaderboard import print_summary

    params = {"model.arch": "gym_resunet", "model.filters": 12,
              "loss.name": {"cce": 0.5, "dice": 0.5}, "train.max_lr": 0.0027}
    # two runs of one configuration (their mean shown) beside a pruned trial, as a search
    # with repeat_top prints them
    board = _board([(params, 0.5098, "completed"), (params, 0.5060, "completed"),
                    ({**params, "model.filters": 4}, 0.4, "asha-pruned")])
    for rank, row in enumerate(board.rows, start=1):
        row.update(rank=rank, epochs=8, run=rank - 1 if rank < 3 else 0,
                   trial_id=f"5612{rank}e77")  # Tune's 8-character ids
    console = Console(width=80, record=True, color_system=None)
    summary = {"status": {"completed": 2}, "trials": 2, "total_epochs": 16, "wall_s": 50.0}
    print_summary(board, [], tmp_path, summary, console)
    text = console.export_text()
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert all(len(line) <= 80 and line.endswith("│") for line in rows)  # nothing cut off
    assert "study: optuna-dashboard" not in text  # no optuna.journal (a random / grid search)
    (tmp_path / "optuna.journal").write_text("")
    console = Console(width=200, record=True, color_system=None)
    print_summary(board, [], tmp_path, summary, console)
    assert f"study: optuna-dashboard {tmp_path / 'optuna.journal'}" in console.export_text()
    params = [line.split("│")[-2].strip() for line in rows]
    assert "…" not in text and "arch=gym_resunet," in params  # whole, comma and all
    assert " ".join(params).count("filters=12,") == 2
    assert " ".join(params).count("loss=0.5cce+0.5dice,") == 3  # a weighted loss, whole


def test_a_recordings_seed_names_its_run_and_a_repeat_says_run(tmp_path: Path) -> None:
    from rich.console import Console

    from raygym.search.leaderboard import print_summary

    board = _board([({"f": 2, "train.seed": 0}, 0.5, "completed"),
                    ({"f": 2, "train.seed": 1}, 0.4, "completed"),
                    ({"f": 4, "train.seed": 0}, 0.3, "completed")])
    for rank, row in enumerate(board.rows, start=1):
        row.update(rank=rank, epochs=2, run=rank - 1 if rank < 3 else 0, trial_id=f"t{rank}")
    board.param_keys = ["f", "train.seed"]
    board.rows[2].update(run=1, repeat=1)  # a searcher's repeat of a trial at a searched seed
    console = Console(width=200, record=True, color_system=None)
    print_summary(board, [], tmp_path, {"status": {"completed": 3}, "trials": 3,
                                        "total_epochs": 6, "wall_s": 1.0}, console)
    params = [ln.split("│")[-2].strip() for ln in console.export_text().splitlines()
              if ln.startswith("│")]
    assert params == ["f=2, seed=0", "f=2, seed=1", "f=4, seed=0, run 2"]
