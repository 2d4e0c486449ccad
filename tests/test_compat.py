"""Each private Ray / Optuna attribute of ``raygym.compat`` on real objects: a real
``OptunaSearch``, real studies (in memory and SQLite, as a search keeps them) and a real Tune
experiment. A failure here names what an upgrade moved."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from raygym.compat import (
    SamplerStudyView,
    completed_trial_ids,
    intermediate_values,
    live_optuna_trials,
    optuna_study,
    rdb_storage,
    searcher_space,
    set_trial_user_attr,
    snapshot_trials,
    storage_filesystem,
    tuner_run_config,
)
from raygym.search.live_table import LiveTrialsCallback
from raygym.search.space import OptunaDefineByRun
from raygym.search.space_config import Distribution, SearchSpace

SPACE = SearchSpace(dists=[
    Distribution(path="model.arch", kind="choice", values=("gym_unet", "gym_resunet")),
    Distribution(path="model.filters", kind="int", low=2, high=8),
])


def test_optuna_search_internals() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = OptunaDefineByRun(SPACE)
    searcher = OptunaSearch(space=space, metric="val_mean_iou", mode="max",
                            sampler=optuna.samplers.RandomSampler(seed=0),
                            storage=optuna.storages.InMemoryStorage(), study_name="compat")
    config = searcher.suggest("t0")
    assert isinstance(config, dict)
    assert searcher_space(searcher) is space
    study = optuna_study(searcher)
    assert isinstance(study, optuna.Study) and len(study.trials) == 1
    live = live_optuna_trials(searcher)
    assert list(live) == ["t0"] and isinstance(live["t0"], optuna.Trial)
    assert live["t0"].params == config
    assert completed_trial_ids(searcher) == set()
    searcher.on_trial_complete("t0", {"val_mean_iou": 0.5})
    assert completed_trial_ids(searcher) == {"t0"}
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 0.5
    # a trial id removed from the live trials is asked again (TruthfulOptunaSearch relies on it)
    searcher.suggest("t1")
    del live_optuna_trials(searcher)["t1"]
    searcher.suggest("t1")
    assert len(study.trials) == 3 and "t1" in live_optuna_trials(searcher)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_study_storage_internals(kind: str, tmp_path: Path) -> None:
    storage: Any = (optuna.storages.InMemoryStorage() if kind == "memory" else
                    optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    study = optuna.create_study(storage=storage, study_name="compat")
    trial = study.ask()
    trial.report(0.25, 1)
    trial.report(0.5, 2)
    assert intermediate_values(trial) == {1: 0.25, 2: 0.5}
    [frozen] = study.get_trials(deepcopy=False)
    set_trial_user_attr(study, frozen, "orphaned", True)
    assert study.trials[0].user_attrs == {"orphaned": True}
    backend = rdb_storage(study)
    assert (backend is storage) if kind == "sqlite" else backend is None


def test_storage_filesystem_of_a_local_folder(tmp_path: Path) -> None:
    fs, path = storage_filesystem(str(tmp_path))
    assert isinstance(fs, pyarrow.fs.LocalFileSystem) and path == str(tmp_path)


def test_tune_snapshot_and_restored_run_config(tmp_path: Path, ray_session: None) -> None:
    def two_checkpoints(config: dict[str, Any]) -> None:  # local: pickled by value
        for epoch in (1, 2):
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, "state.json").write_text("{}")
                tune.report({"epoch": epoch},
                            checkpoint=tune.Checkpoint.from_directory(folder))

    run_config = tune.RunConfig(name="compat", storage_path=str(tmp_path), verbose=0,
                                callbacks=[LiveTrialsCallback()],
                                checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
    tuner = tune.Tuner(two_checkpoints, run_config=run_config,
                       tune_config=tune.TuneConfig(num_samples=1))
    own = tuner_run_config(tuner)
    assert own is not None and own.name == "compat"
    tuner.fit()

    exp = tmp_path / "compat"
    [trial] = snapshot_trials(str(exp))
    assert trial.status == "TERMINATED" and trial.trial_id
    assert (exp / trial.trial_dir_name).is_dir()
    assert trial.checkpoint is not None
    assert Path(trial.checkpoint).name == "checkpoint_000001"  # the last one registered
    assert snapshot_trials(str(tmp_path)) == []  # no snapshot there

    restored = tuner_run_config(tune.Tuner.restore(str(exp), trainable=two_checkpoints))
    assert isinstance(restored, tune.RunConfig)
    [callback] = restored.callbacks
    assert isinstance(callback, LiveTrialsCallback) and callback.view is None


@pytest.mark.parametrize("searcher", ["optuna", "random"])
def test_a_restored_search_grows_to_the_new_count(searcher: str, tmp_path: Path,
                                                  ray_session: None) -> None:
    """Tune restores a finished 2-trial search with the count it had; grown to 4, it runs 2
    more trials, and the first 2 are not run again."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from raygym.compat import grow_restored_search

    def score(config: dict[str, Any]) -> None:  # local: pickled by value
        tune.report({"score": float(config["x"])})

    def search_alg() -> Any:
        if searcher == "random":
            return BasicVariantGenerator(random_state=0)
        return ConcurrencyLimiter(OptunaSearch(
            metric="score", mode="max", sampler=optuna.samplers.RandomSampler(seed=0)),
            max_concurrent=1)

    param_space = {"x": tune.uniform(0, 1)}
    tuner = tune.Tuner(score, param_space=param_space,
                       run_config=tune.RunConfig(name="grow", storage_path=str(tmp_path),
                                                 verbose=0),
                       tune_config=tune.TuneConfig(num_samples=2, search_alg=search_alg(),
                                                   metric="score", mode="max"))
    first = {r.metrics["trial_id"]: r.metrics["score"] for r in tuner.fit()}
    assert len(first) == 2

    exp = str(tmp_path / "grow")
    again = tune.Tuner.restore(exp, trainable=score, param_space=param_space)
    assert grow_restored_search(again, 4)
    grid = again.fit()
    scores = {r.metrics["trial_id"]: r.metrics["score"] for r in grid}
    assert len(scores) == 4 and {k: scores[k] for k in first} == first
    assert len(set(scores.values())) == 4  # new points, not the first two again
    assert len(snapshot_trials(exp)) == 4

    # restored once more without growing: nothing new runs
    unchanged = tune.Tuner.restore(exp, trainable=score, param_space=param_space).fit()
    assert len(unchanged) == 4


def test_a_trial_stopped_while_paused_is_snapshotted_terminated(tmp_path: Path,
                                                              ray_session: None) -> None:
    """A scheduler pauses one trial, a snapshot is taken (the other trial's checkpoint forces
    one), then it stops the paused trial, as HyperBand's brackets do: Tune's last snapshot
    says TERMINATED inside ``tune_snapshots_paused_stops`` (PAUSED without it: the search
    would read as interrupted, and a resume would run the trial again)."""
    import contextlib
    import time

    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from raygym.compat import tune_snapshots_paused_stops

    def epochs(config: dict[str, Any]) -> None:  # local: pickled by value
        if config["x"] == 1:
            time.sleep(3)  # the other trial reports and pauses first
        for epoch in (1, 2, 3):
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, "state.json").write_text("{}")
                tune.report({"score": epoch}, checkpoint=tune.Checkpoint.from_directory(folder))

    class PauseThenStop(FIFOScheduler):
        """Pauses the first trial to report, never resumes it, and stops it (paused) at the
        other trial's second epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.paused: Any = None

        def on_trial_result(self, controller: Any, trial: Any, result: dict) -> str:
            if self.paused is None:
                self.paused = trial
                return TrialScheduler.PAUSE
            if (trial is not self.paused and self.paused.status == "PAUSED"
                    and result["training_iteration"] >= 2):
                controller.stop_trial(self.paused)
            return TrialScheduler.CONTINUE

        def choose_trial_to_run(self, controller: Any) -> Any:
            return next((t for t in controller.get_trials() if t.status == "PENDING"), None)

    statuses = {}
    for patched in (False, True):
        tuner = tune.Tuner(
            epochs, param_space={"x": tune.grid_search([0, 1])},
            tune_config=tune.TuneConfig(scheduler=PauseThenStop()),
            run_config=tune.RunConfig(name=f"paused-{patched}", storage_path=str(tmp_path),
                                      verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
        with tune_snapshots_paused_stops() if patched else contextlib.nullcontext():
            assert sorted(r.metrics["score"] for r in tuner.fit()) == [1, 3]
        statuses[patched] = sorted(t.status for t in snapshot_trials(
            str(tmp_path / f"paused-{patched}")))
    assert statuses == {False: ["PAUSED", "TERMINATED"],  # Tune's own: the bug is still there
                        True: ["TERMINATED", "TERMINATED"]}


def test_tbx_callback_writes_through_the_given_writer(tmp_path: Path, ray_session: None
                                                      ) -> None:
    """Tune's TensorBoard logger, given raygym's writer: the only event file of each trial is
    raygym's (Tune adds no logger of its own beside it), with Tune's tags, steps and HParams."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raygym.compat import tbx_callback_with_writer
    from raygym.event_files import TensorBoardWriter

    made: list[str] = []

    class Recording(TensorBoardWriter):
        def __init__(self, logdir: str, **kwargs: Any) -> None:
            super().__init__(logdir, **kwargs)
            made.append(self.path)

    def three_reports(config: dict[str, Any]) -> None:
        for step in (1, 2, 3):
            tune.report({"val_mean_iou": step / 10})

    callback = tbx_callback_with_writer(Recording)
    tune.Tuner(three_reports, param_space={"filters": tune.grid_search([2, 4])},
               run_config=tune.RunConfig(name="tbx", storage_path=str(tmp_path), verbose=0,
                                         callbacks=[callback])).fit()
    files = sorted(tmp_path.glob("tbx/*/events.out.tfevents.*"))
    # written in the driver's staging folder, then synced to the storage path
    assert sorted(Path(p).parts[-2:] for p in made) == sorted(f.parts[-2:] for f in files)
    assert len(files) == 2
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        assert [(e.step, round(e.value, 6)) for e in acc.Scalars("ray/tune/val_mean_iou")] == [
            (1, 0.1), (2, 0.2), (3, 0.3)]
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


# ---------------------------------------------------------------------- Ray core internals
def test_ray_auth_config_can_be_refreshed() -> None:
    import ray._raylet as raylet

    from raygym.compat import refresh_ray_auth_config

    assert callable(raylet.Config.initialize)
    assert callable(raylet.AuthenticationTokenLoader.instance().reset_cache)
    refresh_ray_auth_config()  # re-reads this process's (unchanged) environment


def test_the_multi_node_constant_is_where_raygym_sets_it(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    from ray._private import ray_constants

    from raygym.compat import disable_multi_node_address_rewrite

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    disable_multi_node_address_rewrite()
    assert ray_constants.ENABLE_RAY_CLUSTER is False


def test_session_dir_of_the_running_ray(ray_session: None) -> None:
    from raygym.compat import session_dir

    path = Path(session_dir())
    assert path.is_dir() and path.name.startswith("session_")


def test_sampler_study_view_is_what_tpe_reads(tmp_path: Path) -> None:
    """TPESampler reads trials through ``Study._get_trials`` (the view's override): a view that
    hides every trial leaves TPE in its random start-up phase, one that shows them all does not;
    on SQLite the view's reads come from the study's per-ask cache."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, direction="maximize")
    for x in range(12):
        study.enqueue_trial({"x": x / 10})
    study.optimize(lambda t: -abs(t.suggest_float("x", 0.0, 1.0) - 0.3), n_trials=12)
    seen: list[int] = []

    def hide_all(trials: list[Any]) -> list[Any]:
        seen.append(len(trials))
        return []

    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=10)
    trial = study.ask()
    frozen = study._storage.get_trial(trial._trial_id)  # the live trial, as samplers get it
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    sampler.sample_independent(SamplerStudyView(study, hide_all), frozen, "x", dist)
    assert seen and seen[0] >= 12  # TPE asked for the trials, the view saw all of them
    view = SamplerStudyView(study, lambda trials: trials)
    assert len(view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) == 12
    assert view.direction == study.direction  # everything else is the study's own


def test_tune_reuses_actors_fully_keeps_idle_ones_up_to_the_limit() -> None:
    from ray.tune.execution import tune_controller

    from raygym.compat import tune_reuses_actors_fully

    original = tune_controller._ObjectCache
    reuse = tune_controller.TuneController._maybe_reuse_cached_actor
    tunes_own = original(may_keep_one=True)  # as TuneController builds it
    assert tunes_own.cache_object("1 CPU", "a") and not tunes_own.cache_object("1 CPU", "b")
    with tune_reuses_actors_fully(3):
        cache = tune_controller._ObjectCache(may_keep_one=True)
        assert tune_controller.TuneController._maybe_reuse_cached_actor is not reuse
    assert tune_controller._ObjectCache is original  # restored after the block
    assert tune_controller.TuneController._maybe_reuse_cached_actor is reuse
    assert [cache.cache_object("1 CPU", x) for x in "abcd"] == [True, True, True, False]
    assert list(cache.flush_cached_objects()) == []  # kept between Tune's steps
    assert cache.pop_cached_object("1 CPU") == "a" and cache.num_cached_objects == 2
    assert list(cache.flush_cached_objects(force_all=True)) == ["b", "c"]  # the search's end
    assert cache.num_cached_objects == 0


def test_tune_reuses_actors_fully_runs_every_trial_in_the_first_actors(
        tmp_path: Path, ray_session: None) -> None:
    from raygym.compat import tune_reuses_actors_fully

    def three_reports(config: dict[str, Any]) -> None:
        for step in range(3):
            tune.report({"step": step})

    tuner = tune.Tuner(
        tune.with_resources(three_reports, {"cpu": 1}),
        param_space={"x": tune.grid_search(list(range(8)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(name="reuse", storage_path=str(tmp_path), verbose=0))
    with tune_reuses_actors_fully(2):
        grid = tuner.fit()
    assert len(grid) == 8 and not grid.errors
    # Both actors asked for at the start run trials. Tune alone gives the first idle actor
    # to the trial whose own actor is still starting and stops that one (seen: all 8 trials
    # in one process in some runs).
    pids = {r.metrics["pid"] for r in grid}
    assert len(pids) == 2, pids


def test_a_ctrl_c_that_tune_caught_is_told_apart_from_a_normal_end() -> None:
    """Tune's own handler (the one ``Tuner.fit`` installs): on a Ctrl-C it stops the run and
    puts back the handler it found, which is how ``watch_tune_sigint`` tells; on a normal end
    it stays. Both ways the handler from before is back afterwards."""
    import os
    import signal

    from ray.tune.tune import _setup_signal_catching

    from raygym.compat import watch_tune_sigint

    before = signal.getsignal(signal.SIGINT)
    with watch_tune_sigint() as quiet:
        _setup_signal_catching()  # what Tuner.fit does first
    assert not quiet.caught and signal.getsignal(signal.SIGINT) is before
    with watch_tune_sigint() as stopped:
        event = _setup_signal_catching()
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while Tune runs: Tune's handler takes it
        assert event.wait(5)
    assert stopped.caught and signal.getsignal(signal.SIGINT) is before
    # a second Ctrl-C, after Tune gave the handler back: KeyboardInterrupt, as by default
    with pytest.raises(KeyboardInterrupt), watch_tune_sigint() as twice:
        _setup_signal_catching()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # handled here, in the main thread
    assert twice.caught and signal.getsignal(signal.SIGINT) is before


def test_stop_tune_run_ends_a_fit_as_a_ctrl_c_does(tmp_path: Path, ray_session: None) -> None:
    """Called from the driver loop of a real ``Tuner.fit`` once a trial has reported: the fit
    returns with that trial unfinished in Tune's snapshot (a resume goes on with it), the
    SIGINT handler from before is back; off the main thread it does nothing."""
    import signal
    import threading
    import time

    from raygym.compat import stop_tune_run, watch_tune_sigint

    def slow(config: dict[str, Any]) -> None:  # local: pickled by value
        for epoch in range(1, 100):
            time.sleep(0.1)
            tune.report({"epoch": epoch})

    class StopAtFirstResult(tune.Callback):
        stopped: bool | None = None

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            if self.stopped is None:
                self.stopped = stop_tune_run()

    callback = StopAtFirstResult()
    before = signal.getsignal(signal.SIGINT)
    with watch_tune_sigint() as sigint:
        tuner = tune.Tuner(slow, tune_config=tune.TuneConfig(num_samples=1),
                           run_config=tune.RunConfig(name="stop", storage_path=str(tmp_path),
                                                     verbose=0, callbacks=[callback]))
        started = time.monotonic()
        tuner.fit()
    assert callback.stopped is True and time.monotonic() - started < 9  # not its 10 s
    assert sigint.caught and signal.getsignal(signal.SIGINT) is before
    [trial] = snapshot_trials(str(tmp_path / "stop"))
    assert trial.status not in ("TERMINATED", "ERROR")

    off_main: list[bool] = []
    thread = threading.Thread(target=lambda: off_main.append(stop_tune_run()))
    thread.start()
    thread.join()
    assert off_main == [False]
