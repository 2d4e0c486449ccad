"""``raygym search SPACE --resume`` with a larger ``search.num_samples``: the search grows
(``raygym.search.resume``). Replayed searches through real Tune (no training), so each run
takes seconds; what may not grow is refused with one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from raygym.errors import ConfigError
from raygym.report.overview import growth_text
from raygym.search.resume import Growth, check_growth, growth_hint, read_search_json

from . import leaderboard_by_trial, one_error_line, run_cli, write_space
from .curve_tables import SPACE, load_space


@pytest.mark.slow
def test_a_finished_search_grows_and_keeps_its_trials(grid_table: Path, tmp_path: Path,
                                                      ray_session: None,
                                                      capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(num_samples=3, results_dir=str(tmp_path / "results"),
                              repeat_top=0)
    space = str(write_space(tmp_path / "space.yaml", sections))
    replay = ["--replay", str(grid_table)]
    assert run_cli(["search", space, *replay])[0] == 0
    out = tmp_path / "results" / "replay-replay"
    first = leaderboard_by_trial(out)
    assert len(first) == 3
    printed = " ".join(capsys.readouterr().out.split())
    assert (f"more trials, going on from what this search learnt: raygym search {space} "
            f"--replay {grid_table} --resume --set search.num_samples=6") in printed

    grow = ["--resume", "--set", "search.num_samples=5"]
    assert run_cli(["search", space, *replay, *grow, "--dry-run"])[0] == 0
    assert "would go on: growing the search from 3 to 5 trials" in " ".join(
        capsys.readouterr().out.split())
    assert "grown" not in read_search_json(out)  # a dry run writes nothing

    # a count that shrinks, or another change beside the count: one line, nothing written
    before = (out / "search.json").read_bytes()
    code, err = run_cli(["search", space, *replay, "--resume", "--set",
                         "search.num_samples=2"], capsys)
    assert code == 2 and "search.num_samples: is 2, but the search" in one_error_line(err)
    assert "can grow, not shrink" in err
    code, err = run_cli(["search", space, *replay, *grow, "--set", "train.patience=4"],
                        capsys)
    assert code == 2 and "train.patience 3 -> 4" in one_error_line(err)
    assert (out / "search.json").read_bytes() == before

    assert run_cli(["search", space, *replay, *grow])[0] == 0
    assert "growing the search from 3 to 5 trials: the 3 trial(s) run so far stay" in " ".join(
        capsys.readouterr().out.split())
    board = leaderboard_by_trial(out)
    assert len(board) == 5
    for tid, row in first.items():  # the first trials stay, as they were scored
        assert board[tid]["best_val_mean_iou"] == row["best_val_mean_iou"]
    saved = read_search_json(out)
    assert saved["status"] == "finished" and saved["config"]["search"]["num_samples"] == 5
    [grown] = saved["grown"]
    assert (grown["from"], grown["to"], grown["trials_before"]) == (3, 5, 3)
    assert grown["epochs_before"] == sum(int(r["epochs"]) for r in first.values())
    assert saved["replay"]["epochs"] == sum(int(r["epochs"]) for r in board.values())
    # the same Optuna study went on: one study trial per Tune trial, none left running
    from raygym.search.study_storage import open_study_storage

    study = optuna.load_study(study_name="replay-replay",
                              storage=open_study_storage(out / "optuna.journal"))
    asked = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(asked) == 5
    assert {t.state for t in study.trials} <= {optuna.trial.TrialState.COMPLETE,
                                               optuna.trial.TrialState.PRUNED}

    # resumed again with the new count: the same search, nothing more runs
    assert run_cli(["search", space, *replay, "--resume", "--set",
                    "search.num_samples=5"])[0] == 0
    assert len(leaderboard_by_trial(out)) == 5 and len(read_search_json(out)["grown"]) == 1
    assert growth_text(read_search_json(out)).startswith("3 -> 5 trials (")


def test_searches_that_cannot_grow_are_refused_by_key(tmp_path: Path) -> None:
    out = tmp_path / "results"
    cases = [({"algorithm": "grid"}, "search.algorithm"),
             ({"algorithm": "bohb", "repeat_top": 0}, "search.algorithm"),
             ({"scheduler": "pbt", "algorithm": "random"}, "search.scheduler")]
    for search, key in cases:
        config, _ = load_space(tmp_path, **search)
        with pytest.raises(ConfigError, match=key) as err:
            check_growth(config, Growth(before=3, after=5), out)
        assert "search.num_samples 3" in str(err.value)
    config, _ = load_space(tmp_path)
    check_growth(config, Growth(before=3, after=5), out)  # optuna + asha: grows
    cluster = config.model_copy(update={"resources": config.resources.model_copy(
        update={"address": "ray://head:10001"})})
    with pytest.raises(ConfigError, match="resources.address.*Ray Client"):
        check_growth(cluster, Growth(before=3, after=5), out)


def test_a_rerun_without_resume_is_told_how_to_grow(tmp_path: Path) -> None:
    from raygym.search.resume import resume_fingerprint

    config, space = load_space(tmp_path, num_samples=3)
    saved = {"space_fingerprint": space.fingerprint(),
             "config_fingerprint": resume_fingerprint(config),
             "config": config.to_yaml_dict()}
    assert growth_hint(saved, config, space) == ""  # the same search
    bigger, _ = load_space(tmp_path, num_samples=8)
    assert growth_hint(saved, bigger, space) == " and grow it from 3 to 8 trials"
    other, _ = load_space(tmp_path, num_samples=8, seed=1)
    assert growth_hint(saved, other, space) == ""  # another change: not a growth
