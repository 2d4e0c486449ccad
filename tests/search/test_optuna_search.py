"""TruthfulOptunaSearch without Tune's loop: a real Optuna study, driven as Tune drives it."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search import Searcher

from raygym.search.optuna_search import TruthfulOptunaSearch
from raygym.search.space import OptunaDefineByRun, enumerate_points
from raygym.search.space_config import Distribution, SearchSpace
from raygym.search.study_storage import (
    LEGACY_STUDY_FILE,
    STUDY_FILE,
    open_study_storage,
    search_storage,
)

SPACE = SearchSpace(dists=[
    Distribution(path="model.arch", kind="choice", values=("gym_unet", "gym_resunet")),
    Distribution(path="loss.name", kind="choice", values=("dice", "cce")),
])


def _space(trial: Any) -> None:
    trial.suggest_categorical("model.arch", ["gym_unet", "gym_resunet"])
    trial.suggest_categorical("loss.name", ["dice", "cce"])


def _searcher(seed: int = 0, define_by_run: bool = False) -> TruthfulOptunaSearch:
    """``define_by_run``: raygym's space (enumerable); else a plain function (not)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return TruthfulOptunaSearch(
        space=OptunaDefineByRun(SPACE) if define_by_run else _space,
        metric="val_mean_iou", mode="max",
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=2),
        study_name="t", storage=optuna.storages.InMemoryStorage())


def _score(config: dict[str, Any]) -> float:
    return {"gym_unet": 0.5, "gym_resunet": 0.3}[config["model.arch"]] + (
        0.1 if config["loss.name"] == "dice" else 0.0)


def _finish(searcher: TruthfulOptunaSearch, trial_id: str, config: dict[str, Any],
            pruned: bool) -> None:
    value = _score(config)
    result = {"val_mean_iou": value, "best_val_mean_iou": value, "training_iteration": 2,
              "stop_reason": "" if pruned else "completed"}
    searcher.on_trial_result(trial_id, {**result, "training_iteration": 1})
    searcher.on_trial_complete(trial_id, result)


@pytest.mark.parametrize("define_by_run", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_discrete_space_is_tried_once_per_point_then_the_search_ends(
        seed: int, define_by_run: bool) -> None:
    searcher = _searcher(seed, define_by_run)
    seen = []
    for i in range(10):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        assert isinstance(config, dict)
        key = (config["model.arch"], config["loss.name"])
        assert key not in seen, f"{key} trained twice"
        seen.append(key)
        flat = {"model.arch": key[0], "loss.name": key[1]}
        _finish(searcher, f"t{i}", flat, pruned=i % 2 == 1)
    assert len(seen) == 4  # all 4 points, each once, and then FINISHED instead of a repeat
    study = searcher._ot_study
    repeats = [t for t in study.get_trials() if "duplicate_of" in t.user_attrs]
    for t in repeats:  # each repeat carries its twin's outcome, so TPE's picture is unchanged
        twin = study.trials[t.user_attrs["duplicate_of"]]
        assert t.params == twin.params and t.state == twin.state
        assert t.value == twin.value and t.intermediate_values == twin.intermediate_values
    real = [t for t in study.get_trials() if "duplicate_of" not in t.user_attrs]
    assert len(real) == 4
    assert {t.state for t in real} == {TrialState.COMPLETE, TrialState.PRUNED}
    if define_by_run:  # the untried point is queued after a repeat: at most one per trial
        assert len(repeats) <= len(real)


def test_enumerate_points_follows_conditions_and_refuses_continuous_keys() -> None:
    arch = Distribution(path="model.arch", kind="choice", values=("gym_unet", "unet"))
    enc = Distribution(path="model.encoder", kind="choice", values=("resnet18", "resnet34"),
                       when={"model.arch": ("unet",)})
    filters = Distribution(path="model.filters", kind="int", low=2, high=3)
    points = enumerate_points(SearchSpace(dists=[arch, enc, filters]))
    assert points is not None and len(points) == (1 + 2) * 2
    assert {"model.arch": "gym_unet", "model.filters": 3} in points
    assert {"model.arch": "unet", "model.encoder": "resnet34", "model.filters": 2} in points
    lr = Distribution(path="train.max_lr", kind="loguniform", low=1e-5, high=1e-3)
    assert enumerate_points(SearchSpace(dists=[arch, lr])) is None


def test_a_running_configuration_is_not_handed_out_again_at_once() -> None:
    """Two slots: constant liar keeps TPE off the configuration still running."""
    searcher = _searcher()
    first = searcher.suggest("a")
    second = searcher.suggest("b")
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first != second


@pytest.mark.parametrize("study_file", [STUDY_FILE, LEGACY_STUDY_FILE])
def test_restore_fails_trials_asked_after_the_last_saved_state(tmp_path, study_file) -> None:
    """A driver killed between an ask and Tune's next save leaves a RUNNING orphan; in the
    journal (a search's study) and in an older search's SQLite study, resumed."""
    if study_file == LEGACY_STUDY_FILE:
        optuna.storages.RDBStorage(f"sqlite:///{tmp_path / LEGACY_STUDY_FILE}")
    assert not (tmp_path / STUDY_FILE).exists()

    def make() -> TruthfulOptunaSearch:
        return TruthfulOptunaSearch(
            space=_space, metric="val_mean_iou", mode="max",
            sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, n_startup_trials=2),
            study_name="t", storage=search_storage(tmp_path))

    searcher = make()
    first = searcher.suggest("a")
    assert isinstance(first, dict)
    _finish(searcher, "a", first, pruned=False)
    assert isinstance(searcher.suggest("b"), dict)  # still running when the state is saved
    searcher.save(str(tmp_path / "searcher.pkl"))
    searcher.suggest("c")  # asked after the save: an orphan once the driver dies

    restored = make()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert (tmp_path / STUDY_FILE).exists() == (study_file == STUDY_FILE)
    storage = open_study_storage(tmp_path / study_file)
    study = optuna.load_study(study_name="t", storage=storage)
    states = {t.number: t.state for t in study.trials}
    assert states == {0: TrialState.COMPLETE, 1: TrialState.RUNNING, 2: TrialState.FAIL}
    assert study.trials[2].user_attrs == {"orphaned": True}
    # Tune goes on running "c" (its snapshot knew it): its results are not recorded, and
    # that is no error for the trial
    _finish(restored, "c", {"model.arch": "gym_resunet", "loss.name": "dice"}, pruned=False)
    assert optuna.load_study(study_name="t", storage=storage).trials[2].state == TrialState.FAIL
    # the restored searcher still finishes the trial it knows
    _finish(restored, "b", {"model.arch": "gym_unet", "loss.name": "cce"}, pruned=True)
    assert optuna.load_study(study_name="t", storage=storage).trials[1].state == TrialState.PRUNED


def test_an_older_sqlite_study_runs_in_wal_mode_and_restores_its_twin_index(tmp_path) -> None:
    """An older search's SQLite study, resumed: WAL + synchronous=NORMAL (commits without
    fsync; bench_scale), kept on the engine a restored searcher unpickles; the in-memory twin
    index is rebuilt from the study."""
    from raygym.compat import optuna_study, rdb_storage

    def make() -> TruthfulOptunaSearch:
        return TruthfulOptunaSearch(
            space=_space, metric="val_mean_iou", mode="max",
            sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, n_startup_trials=2),
            study_name="t", storage=search_storage(tmp_path))

    def pragmas(searcher: TruthfulOptunaSearch) -> tuple[str, int]:
        engine = rdb_storage(optuna_study(searcher)).engine  # type: ignore[union-attr]
        with engine.connect() as conn:
            return (conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                    conn.exec_driver_sql("PRAGMA synchronous").scalar())

    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / LEGACY_STUDY_FILE}")
    searcher = make()
    assert pragmas(searcher) == ("wal", 1)  # 1: NORMAL
    first = searcher.suggest("a")
    assert isinstance(first, dict)
    _finish(searcher, "a", first, pruned=True)
    params = optuna_study(searcher).trials[0].params
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = make()
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert pragmas(restored) == ("wal", 1)
    twin = restored._finished_twin(params)
    assert twin is not None and twin.number == 0 and twin.state == TrialState.PRUNED


def test_leading_configurations_are_trained_once_more_on_the_next_seed() -> None:
    """repeat_top 1: the finished leader is repeated (run 1) before any new ask; Optuna
    never hears of the repeat; a configuration runs at most twice; the search ends only
    once no running trial can still earn a repeat."""
    from raygym.search.space import REPEAT_KEY, config_key

    searcher = _searcher(define_by_run=True)
    searcher.repeat_top = 1
    first = searcher.suggest("a")
    assert isinstance(first, dict) and REPEAT_KEY not in first
    _finish(searcher, "a", first, pruned=False)  # the only finished one: the leader
    again = searcher.suggest("b")
    assert again == {**first, REPEAT_KEY: 1}
    asked = len(searcher._ot_study.trials)
    _finish(searcher, "b", {k: v for k, v in first.items()}, pruned=False)
    assert len(searcher._ot_study.trials) == asked  # the repeat is not an Optuna trial
    assert searcher.mean_scores() == {config_key(first): pytest.approx(_score(first))}
    seen = [config_key(first)] * 2
    for i in range(10):
        config = searcher.suggest(f"c{i}")
        if config == Searcher.FINISHED:
            break
        assert isinstance(config, dict)
        seen.append(config_key(config))
        assert config.get(REPEAT_KEY, 0) in (0, 1)
        _finish(searcher, f"c{i}", {k: v for k, v in config.items() if k != REPEAT_KEY},
                pruned=False)
    assert max(seen.count(k) for k in set(seen)) == 2
    assert len(set(seen)) == 4  # every point once, leaders twice, then FINISHED
    # while a trial runs that could still earn a repeat, the search waits instead of ending
    waiting = _searcher(define_by_run=True)
    waiting.repeat_top = 4
    configs = [waiting.suggest(f"w{i}") for i in range(4)]
    assert all(isinstance(c, dict) for c in configs)
    assert waiting.suggest("w4") is None
    _finish(waiting, "w0", configs[0], pruned=False)
    assert waiting.suggest("w5") == {**configs[0], REPEAT_KEY: 1}


def test_a_leader_is_raced_up_to_repeat_runs_while_its_mean_leads() -> None:
    """repeat_runs 3: a finished leader is trained again while its mean keeps it among the
    best repeat_top, at most 3 runs in all; one whose repeat drags its mean below another
    configuration's is not trained a third time."""
    from raygym.search.space import REPEAT_KEY

    def finish(searcher: TruthfulOptunaSearch, trial_id: str, value: float) -> None:
        result = {"val_mean_iou": value, "best_val_mean_iou": value, "training_iteration": 2,
                  "stop_reason": "completed"}
        searcher.on_trial_result(trial_id, {**result, "training_iteration": 1})
        searcher.on_trial_complete(trial_id, result)

    searcher = _searcher(define_by_run=True)
    searcher.repeat_top, searcher.repeat_runs = 1, 3
    first = searcher.suggest("a")
    assert isinstance(first, dict)
    finish(searcher, "a", 0.6)
    assert searcher.suggest("b") == {**first, REPEAT_KEY: 1}
    finish(searcher, "b", 0.6)
    assert searcher.suggest("c") == {**first, REPEAT_KEY: 2}
    finish(searcher, "c", 0.6)
    fresh = searcher.suggest("d")  # three runs: no fourth
    assert isinstance(fresh, dict) and REPEAT_KEY not in fresh and fresh != first
    # a new leader whose repeat falls below the first configuration's mean stops at two runs
    finish(searcher, "d", 0.9)
    assert searcher.suggest("e") == {**fresh, REPEAT_KEY: 1}
    finish(searcher, "e", 0.1)  # mean 0.5 < 0.6
    third = searcher.suggest("f")
    assert isinstance(third, dict) and REPEAT_KEY not in third
