"""``search.time_budget``: a run of ``raygym search`` stops itself when its wall time is spent,
as a Ctrl-C stops it, writes what finished and exits 0; ``--resume`` goes on with a budget of
its own. Replayed searches through real Tune in this process (no training): a search of far
more trials than a few seconds can run, so the budget, not the count, ends it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from raygym.config.run import duration_text, parse_duration
from raygym.errors import ConfigError
from raygym.search.resume import read_search_json, resume_fingerprint
from raygym.search.time_budget import TimeBudget, check_time_budget

from . import leaderboard_by_trial, one_error_line, run_cli, write_space
from .curve_tables import SPACE, load_space

TRIALS = 400  # far more than the budget lets start


@pytest.mark.slow
def test_the_budget_stops_the_search_and_resume_goes_on(grid_table: Path, tmp_path: Path,
                                                        ray_session: None,
                                                        capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(num_samples=TRIALS, algorithm="random", scheduler="none",
                              repeat_top=0, results_dir=str(tmp_path / "results"))
    space = str(write_space(tmp_path / "space.yaml", sections))
    search = ["search", space, "--replay", str(grid_table)]

    assert run_cli([*search, "--set", "search.time_budget=3s", "--dry-run"])[0] == 0
    assert ("would stop after 3s (search.time_budget); --resume would go on from there"
            in " ".join(capsys.readouterr().out.split()))

    assert run_cli([*search, "--set", "search.time_budget=3s"])[0] == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "time budget 3s spent:" in printed, printed[-2000:]
    assert f"{' '.join(search)} --set search.time_budget=3s --resume" in printed
    assert "more trials, going on from" not in printed  # not a finished search
    out = tmp_path / "results" / "replay-replay"
    saved = read_search_json(out)
    assert saved["status"] == "stopped" and saved["stopped_by"] == "search.time_budget 3s"
    first = leaderboard_by_trial(out)
    assert 0 < len(first) < TRIALS
    assert {r["status"] for r in first.values()} <= {"completed", "early-stopped",
                                                      "interrupted"}

    # another budget is no change of the search: --resume takes it and goes on
    assert run_cli([*search, "--resume", "--time-budget", "2s"])[0] == 0
    assert "time budget 2s spent:" in " ".join(capsys.readouterr().out.split())
    saved = read_search_json(out)
    assert saved["status"] == "stopped" and saved["stopped_by"] == "search.time_budget 2s"
    board = leaderboard_by_trial(out)
    assert len(first) < len(board) < TRIALS
    for tid, row in first.items():  # what finished before stays as it was scored
        if row["status"] != "interrupted":
            assert board[tid]["best_val_mean_iou"] == row["best_val_mean_iou"]


def test_a_budget_changes_nothing_a_resume_compares(tmp_path: Path) -> None:
    config, _ = load_space(tmp_path)
    budgeted, _ = load_space(tmp_path / "b", time_budget="8h")
    assert budgeted.search.time_budget == 8 * 3600
    assert resume_fingerprint(budgeted) == resume_fingerprint(config)
    # ... while the search's own settings still count
    other, _ = load_space(tmp_path / "c", seed=1)
    assert resume_fingerprint(other) != resume_fingerprint(config)
    # a search recorded before the budget and the encoder's scale existed resumes: its
    # fingerprint is the hash of its sections without them
    import hashlib

    older = config.to_yaml_dict()
    del older["search"]["time_budget"]
    del older["train"]["encoder_lr_scale"], older["train"]["encoder_lr_epochs"]
    picked = {s: older[s] for s in ("name", "data", "model", "loss", "train", "search")}
    assert resume_fingerprint(config) == hashlib.sha256(
        json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize(("text", "seconds", "shown"), [
    ("8h", 28800, "8h"), ("1h30m", 5400, "1h30m"), ("90m", 5400, "1h30m"), ("45s", 45, "45s"),
    ("2d", 172800, "2d"), ("3600", 3600, "1h"), (" 1h 5m ", 3900, "1h5m"), (0.5, 0.5, "0s")])
def test_durations(text: str | float, seconds: float, shown: str) -> None:
    assert parse_duration(text) == seconds
    assert duration_text(seconds) == shown


@pytest.mark.parametrize("value", ["8 hours", "h", "-5", 0])
def test_a_bad_budget_is_refused_by_key(value: str | int, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_space(tmp_path, time_budget=value)
    text = str(info.value)
    assert "search.time_budget" in text and "\n" not in text
    if value in ("8 hours", "h"):
        assert "e.g. 45m, 8h, 1h30m" in text


def test_where_no_budget_can_be_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config, _ = load_space(tmp_path, time_budget="1h")
    client = config.model_copy(update={"resources": config.resources.model_copy(
        update={"address": "ray://head:10001"})})
    with pytest.raises(ConfigError, match="through Ray Client"):
        check_time_budget(client)
    check_time_budget(config)  # here, on the main thread: kept

    refused: list[Exception] = []

    def off_main() -> None:
        try:
            check_time_budget(config)
        except ConfigError as err:
            refused.append(err)

    thread = threading.Thread(target=off_main)
    thread.start()
    thread.join()
    assert refused and "main thread" in str(refused[0])

    # a recording trains every curve to its end
    sections = json.loads(json.dumps(SPACE))
    sections["search"]["time_budget"] = "1h"
    space = str(write_space(tmp_path / "record.yaml", sections))
    code, err = run_cli(["record", space, "--seeds", "0", "--dry-run"], capsys)
    assert code == 2 and "search.time_budget" in one_error_line(err)


def test_the_time_left() -> None:
    budget = TimeBudget(3600.0)
    assert 3590 < budget.left() <= 3600
    assert budget.left_text().startswith("stops in 1h") and "(time budget 1h)" in \
        budget.left_text()
    assert TimeBudget(1.0, started=0.0).left() == 0.0
