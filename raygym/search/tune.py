"""Thin Ray Tune adapter: searcher, scheduler, resources, storage, resume, live progress."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console

from raygym.config import ExperimentConfig
from raygym.search.live_table import LiveTrials, live_view
from raygym.search.space_config import SearchSpace
from raygym.search.time_budget import TimeBudget


def tune_storage(config: ExperimentConfig, out: Path) -> str:
    """Where Tune writes trials and checkpoints: ``search.storage_path`` or ``out/ray``."""
    return config.search.storage_path or str(out / "ray")


def experiment_path(config: ExperimentConfig, out: Path) -> str:
    """The Tune experiment's folder (path or URI): its snapshot, searcher state and trials."""
    return f"{tune_storage(config, out).rstrip('/')}/{config.name}"


def uses_optuna(config: ExperimentConfig) -> bool:
    """Optuna samples the trials, except for grid/random search and PBT, which refuses any
    search algorithm ("Search algorithms cannot be used with PBT"): PBT starts from random
    points and then explores by itself."""
    return config.search.algorithm == "optuna" and config.search.scheduler != "pbt"


def build_searcher(config: ExperimentConfig, space: SearchSpace, out: Path | None, *,
                   sampler: Any = None) -> Any:
    """The searcher ``raygym search`` uses; ``out`` None keeps the Optuna study in memory
    (the simulator), ``sampler`` replaces the configured one (the simulator's baselines)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    s = config.search
    if s.algorithm == "bohb":
        from raygym.search.bohb import BohbSearch

        # BOHB's model learns from the value the scheduler judges at each rung
        key, mode = s.judged
        return ConcurrencyLimiter(BohbSearch(
            space, metric=key, mode=mode, seed=s.seed,
            points_to_evaluate=[dict(p) for p in s.points_to_evaluate] or None),
            max_concurrent=s.max_concurrent)
    if not uses_optuna(config):
        # Tune's own random / grid generator over param_space, seeded by search.seed and
        # starting from search.points_to_evaluate like Optuna does
        return BasicVariantGenerator(points_to_evaluate=s.points_to_evaluate or None,
                                     max_concurrent=s.max_concurrent, random_state=s.seed)
    import optuna

    from raygym.search.optuna_search import TruthfulOptunaSearch
    from raygym.search.space import OptunaDefineByRun
    from raygym.search.study_storage import search_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = search_storage(out) if out is not None else None
    searcher = TruthfulOptunaSearch(
        space=OptunaDefineByRun(space), metric=s.metric, mode=s.mode,
        points_to_evaluate=s.points_to_evaluate or None,
        sampler=sampler or build_sampler(config), study_name=config.name, storage=storage,
        repeat_top=s.repeat_top, repeat_runs=s.repeat_runs,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=s.max_concurrent)


def build_sampler(config: ExperimentConfig) -> Any:
    """TPE as ``search.tpe`` sets it up (history bounded: :mod:`raygym.search.tpe`), seeded
    by ``search.seed``."""
    import optuna

    from raygym.search.tpe import BoundedTPESampler

    s, tpe = config.search, config.search.tpe
    startup = tpe.startup_trials if tpe.startup_trials is not None else min(
        10, max(2, s.num_samples // 3))
    import warnings

    # constant_liar: trials still running count as bad guesses, so parallel slots do not
    # all get the same configuration. multivariate / group are "experimental" in Optuna's
    # words (since 2.2 / 2.8): the warning would be printed for every search.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return BoundedTPESampler(
            seed=s.seed, constant_liar=True, n_startup_trials=startup,
            multivariate=tpe.multivariate, group=tpe.multivariate and tpe.group,
            max_history=tpe.max_history)


def judged_metric(config: ExperimentConfig) -> dict[str, str]:
    """The scheduler's own metric and mode, when it judges another value than the search
    metric (a smoothed one, the loss): run_tune then leaves Tune's (Tune refuses both);
    empty: Tune hands it search.metric."""
    key, mode = config.search.judged
    return {"metric": key, "mode": mode} if key != config.search.metric else {}


def stopping_scheduler(config: ExperimentConfig, grace: int) -> Any:
    """``search.scheduler`` asha, patient or median with its first judged epoch at ``grace``."""
    from ray.tune.schedulers import ASHAScheduler

    s, epochs = config.search, config.train.max_epochs
    judged = judged_metric(config)
    if s.scheduler == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                             grace_period=min(grace, epochs),
                             reduction_factor=s.reduction_factor, brackets=s.brackets,
                             **judged)
    if s.scheduler == "patient":
        from raygym.search.pruning import OptunaPrunerScheduler, patient_halving

        # Optuna's halving takes a whole reduction factor
        rule = patient_halving(grace_period=min(grace, epochs),
                               reduction_factor=max(2, round(s.reduction_factor)),
                               patience=s.prune_patience)
        return OptunaPrunerScheduler(rule, **(judged or {"metric": None, "mode": None}))
    from raygym.search.pruning import MedianWithoutYielding

    return MedianWithoutYielding(time_attr="training_iteration", grace_period=grace,
                                 min_samples_required=2, **judged)


def build_scheduler(config: ExperimentConfig, space: SearchSpace) -> Any:
    from ray.tune.schedulers import FIFOScheduler, PopulationBasedTraining

    s, epochs = config.search, config.train.max_epochs
    key, mode = s.judged
    judged = judged_metric(config)
    if s.algorithm == "bohb":
        # BOHB's own HyperBand: brackets start at max_t / eta^k epochs, trials pause at each
        # rung and the best 1/eta resume; no grace period (the smallest bracket sets it)
        from ray.tune.schedulers import HyperBandForBOHB

        return HyperBandForBOHB(time_attr="training_iteration", max_t=epochs,
                                reduction_factor=s.reduction_factor, metric=key, mode=mode)

    def served_in_order(scheduler: Any) -> Any:
        """``scheduler`` picking the next trial among the live ones (FirstComeFirstServed);
        with repeat_top, the leaders' repeats run to the end (SparingRepeats)."""
        from raygym.search.pruning import FirstComeFirstServed, SparingRepeats

        if s.repeat_top and uses_optuna(config):
            return SparingRepeats(scheduler)
        return FirstComeFirstServed(scheduler)

    if s.scheduler in ("asha", "patient", "median"):
        if s.grace_period == "auto":
            from raygym.search.pruning import LearntGrace

            # (a partial, not a closure: Tune pickles the scheduler with the experiment)
            return served_in_order(LearntGrace(functools.partial(stopping_scheduler, config),
                                               trials=s.grace_trials, max_epochs=epochs,
                                               **judged))
        return served_in_order(stopping_scheduler(config, int(s.grace_period or 1)))
    if s.scheduler == "pbt":
        from ray import tune

        mutations = {d.path: (tune.loguniform(d.low, d.high) if d.kind == "loguniform"
                              else tune.uniform(d.low, d.high)) for d in space}
        # synch: every perturbation waits for the whole population. Asynchronous PBT compares
        # a trial with whatever the others reported last; on a small machine trials start
        # seconds apart and often never overlap, and PBT then silently never exploits (seen
        # with 2 trials on 2 CPUs). (PBT takes no seed argument.)
        return PopulationBasedTraining(time_attr="training_iteration",
                                       perturbation_interval=max(1, int(s.grace_period or 1)),
                                       hyperparam_mutations=mutations, synch=True)
    return served_in_order(FIFOScheduler())


def mend_checkpoints(exp_path: str) -> list[str]:
    """Before a restore: re-create (empty) each checkpoint folder that Tune's newest snapshot
    names for an unfinished trial but that no longer exists; returns those folders.

    Tune deletes a trial's older checkpoint (``num_to_keep``) the moment it registers a newer
    one, and writes that to the snapshot only at its next sync, so a driver killed in between
    leaves a snapshot naming a deleted checkpoint; Tune's restore then fails the trial ("does
    not exist on storage anymore") and every retry fails the same way. With the folder back,
    the trial starts and :func:`raygym.search.trainable.fetch_checkpoint` resumes it from the
    newer checkpoint beside it. Reads the snapshot with Ray's own (internal) loaders
    (:func:`raygym.compat.snapshot_trials`); if those change, nothing is mended and a
    warning says so.
    """
    import logging
    import posixpath

    import pyarrow.fs as pafs

    from raygym.compat import snapshot_trials, storage_filesystem

    log = logging.getLogger(__name__)
    created: list[str] = []
    try:
        fs, fs_path = storage_filesystem(exp_path)
        for trial in snapshot_trials(exp_path):
            if trial.status == "TERMINATED" or trial.checkpoint is None:
                continue
            # the snapshot's absolute paths may predate a move: rebase on exp_path
            trial_dir = posixpath.join(fs_path, trial.trial_dir_name)
            folder = posixpath.join(trial_dir, posixpath.basename(trial.checkpoint))
            if (fs.get_file_info(trial_dir).type == pafs.FileType.Directory
                    and fs.get_file_info(folder).type == pafs.FileType.NotFound):
                fs.create_dir(folder)
                created.append(folder)
    except Exception as exc:  # noqa: BLE001 - a check on Ray's internals, never fatal
        log.warning("could not check the checkpoints named in %s: %s", exp_path, exc)
    return created


def drop_replaced_checkpoints(grid: Any, mended: list[str], exp_path: str) -> list[str]:
    """After a restore that :func:`mend_checkpoints` mended: in each mended trial's folder,
    remove raygym's checkpoints (a ``state.json`` in them) other than the one Tune registered
    last, once the trial finished without an error; returns the removed folders.

    The newer checkpoint such a trial resumed from was never registered with the restored
    Tune, so ``num_to_keep`` never deletes it: it would stay beside the final one, with a
    higher number than it. ``grid``: Tune's ``ResultGrid`` (each result's ``path``,
    ``checkpoint`` and ``error``).
    """
    import logging
    import posixpath

    import pyarrow.fs as pafs

    from raygym.compat import storage_filesystem

    if not mended:
        return []
    removed: list[str] = []
    try:
        fs, fs_path = storage_filesystem(exp_path)
        trial_dirs = {posixpath.dirname(folder) for folder in mended}
        for result in grid:
            trial_dir = posixpath.join(fs_path, posixpath.basename(str(result.path)))
            if (trial_dir not in trial_dirs or result.error is not None
                    or result.checkpoint is None):
                continue
            kept = posixpath.basename(str(result.checkpoint.path))
            for info in fs.get_file_info(pafs.FileSelector(trial_dir)):
                name = posixpath.basename(info.path)
                if (info.type == pafs.FileType.Directory and name.startswith("checkpoint_")
                        and name != kept and fs.get_file_info(posixpath.join(
                            info.path, "state.json")).type == pafs.FileType.File):
                    fs.delete_dir(info.path)
                    removed.append(info.path)
    except Exception as exc:  # noqa: BLE001 - tidying, never fatal
        logging.getLogger(__name__).warning("could not tidy the checkpoints in %s: %s",
                                            exp_path, exc)
    return removed


@contextlib.contextmanager
def _env_default(key: str, value: str | None) -> Iterator[None]:
    """``key=value`` in the environment while inside, unless the user set it (or value None)."""
    if value is None or key in os.environ:
        yield
        return
    os.environ[key] = value
    try:
        yield
    finally:
        os.environ.pop(key, None)


def run_tune(config: ExperimentConfig, space: SearchSpace, out: Path, *, resume: bool,
             retry_errored: bool, console: Console, replay: Any = None,
             learnt: dict[str, Any] | None = None, grow: bool = False,
             time_budget: TimeBudget | None = None) -> Any:
    """Fit (or restore and finish) the Tuner; returns Tune's ``ResultGrid``. ``grow``: the
    restored search goes on to ``search.num_samples`` trials in all. ``learnt``
    receives what the search learnt on the way (``learnt_grace``: grace_period auto's epoch)
    and ``interrupted``: True where Tune returned because of a Ctrl-C. ``time_budget``:
    the run stops as a Ctrl-C stops it once that is spent (its ``reached`` says so).

    ``replay``: a :class:`~raygym.search.replay.CurveTable` whose curves the trials replay.
    """
    import logging

    from ray import tune

    from raygym.compat import (
        grow_restored_search,
        tune_reuses_actors_fully,
        tune_snapshots_paused_stops,
        tuner_run_config,
        watch_tune_sigint,
    )
    from raygym.data.dataset import PreparedDataset
    from raygym.ray_runtime import TRIAL_SLOT, trial_slots, trial_start_limit
    from raygym.search.space import budget, tune_param_space
    from raygym.search.trainable import trial_in_process, trial_with_trainer

    # Failed trials are reported once each, in the live table and the leaderboard; Tune's
    # own multi-page tracebacks for them would bury the table.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    s, r = config.search, config.resources
    storage = tune_storage(config, out)
    if replay is not None:
        from raygym.search.replay import replay_trial

        fn = tune.with_parameters(replay_trial, config=config, space=space,
                                  table_path=str(replay.path))
        resources = {"cpu": r.cpus_per_worker}
    elif r.workers_per_trial == 1:
        dataset = PreparedDataset(config.data.prepared)
        # Loaded once here; Tune puts the arrays in the object store and every trial maps
        # them read-only instead of re-reading Parquet.
        train = dataset.load_numpy("train")
        val = dataset.load_numpy("val") if dataset.has_split("val") else None
        fn = tune.with_parameters(trial_in_process, config=config, train=train, val=val,
                                  space=space)
        resources: dict[str, float] = {"cpu": r.cpus_per_worker}
        if r.gpus_per_worker:
            resources["gpu"] = r.gpus_per_worker
    else:
        dataset = PreparedDataset(config.data.prepared)
        # Read once, here, while every CPU is free: a lazy read inside a trial waits forever
        # for a CPU that its own Train workers hold (2 CPUs, 2 workers: Ray Data starves).
        train_ds = dataset.ray_dataset("train").materialize()
        fn = tune.with_parameters(trial_with_trainer, config=config, space=space,
                                  train_ds=train_ds,
                                  train_storage=f"{storage.rstrip('/')}/train_runs")
        # the trial only drives a TorchTrainer: no CPU of its own (0.01 CPU left 2 workers x
        # 1 CPU waiting for ever on a 2-CPU machine); Tune rejects an empty bundle, so 1 byte
        resources = {"cpu": 0, "memory": 1}
    local = trial_slots() == s.max_concurrent  # a local Ray raygym started for this search
    if local:
        resources[TRIAL_SLOT] = 1
    trainable = tune.with_resources(fn, resources)
    total = budget(space, s.num_samples, config.train.max_epochs, s.algorithm)["trials"]
    live = LiveTrials(config, console, total, time_budget)
    from raygym.compat import tbx_callback_with_writer
    from raygym.event_files import TensorBoardWriter
    from raygym.search.tracking import tracking_callbacks  # MLflow runs (mlflow.enabled)

    # Tune's TensorBoard logger with a cheaper writer (Tune adds its own only without one)
    callbacks = [live.callback, tbx_callback_with_writer(TensorBoardWriter),
                 *tracking_callbacks(config, space, replay=replay)]
    if time_budget is not None:
        callbacks.append(TimeBudgetCallback(time_budget))
    run_config = tune.RunConfig(
        name=config.name, storage_path=storage, verbose=0, callbacks=callbacks,
        # PBT restores one trial from another's checkpoint, chosen when the bottom trial
        # reports; by the time that trial has restarted, the donor may have written several
        # newer ones (seen: 3 on 2 busy CPUs, "checkpoint does not exist on storage
        # anymore"). So PBT keeps them all (disk: a few model copies per epoch per trial).
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=None if s.scheduler == "pbt" else 1),
        failure_config=tune.FailureConfig(max_failures=s.max_failures),
    )
    exp_path = experiment_path(config, out)
    scheduler = None  # (a restored experiment brings its own)
    mended: list[str] = []
    with live_view(console) as view:
        live.live = view
        if resume and tune.Tuner.can_restore(exp_path):
            mended = mend_checkpoints(exp_path)
            for folder in mended:
                console.print(f"[yellow]note:[/] {folder} had been replaced by a newer "
                              "checkpoint when the search stopped; that trial resumes from "
                              "the newer one")
            tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=retry_errored)
            restored = tuner_run_config(tuner)
            if restored is not None:  # its callbacks are pickled copies, not fed to this view
                restored.callbacks = callbacks
            if grow and not grow_restored_search(tuner, s.num_samples):
                # (check_growth refuses Ray Client before anything is written)
                raise RuntimeError("cannot grow this search: Tune restored no local Tuner, or "
                                   "a search algorithm raygym does not build")
        else:
            searcher = build_searcher(config, space, out)
            scheduler = build_scheduler(config, space)
            param_space = ({} if uses_optuna(config) or s.algorithm == "bohb" else
                           tune_param_space(space, exhaustive_grid=s.algorithm == "grid"))
            tuner = tune.Tuner(
                trainable, param_space=param_space,
                tune_config=tune.TuneConfig(
                    metric=None if scheduler.metric else s.metric,
                    mode=None if scheduler.metric else s.mode, search_alg=searcher,
                    scheduler=scheduler,
                    num_samples=s.num_samples,
                    max_concurrent_trials=None,  # the searcher limits concurrency
                    # run the next trial in the finished trial's process: no new Python
                    # process importing torch per trial (seconds each on a small machine).
                    # Not for TorchTrainer trials: their function outlives Tune's 2 s reset
                    # wait and the next trial would fail ("reuse requires reset_config()").
                    # On a cluster too: with Tune's own reuse a trial took the first idle
                    # actor and stopped its own, starting on another node (seen: all trials
                    # on the head); tune_reuses_actors_fully below lets it wait for its own.
                    reuse_actors=r.workers_per_trial == 1 or replay is not None,
                    trial_dirname_creator=lambda t: t.trial_id),
                run_config=run_config,
            )
        # Tune starts a process for every pending trial at once, and each imports Ray Tune
        # (~1.6 s of CPU): more at once than the machines have cores only delays them all (32
        # on 2 cores: the first epoch began after 24-29 s; 2 at a time: after 2 s).
        cores = trial_start_limit()
        starting = str(cores) if cores < s.max_concurrent else None
        # the searcher's concurrency is the most actors that can ever be idle at once
        with tune_reuses_actors_fully(s.max_concurrent), tune_snapshots_paused_stops(), \
                _env_default("TUNE_MAX_PENDING_TRIALS_PG", starting), \
                watch_tune_sigint() as sigint:
            grid = tuner.fit()
    # Tune returned as if done: say it was not (the budget's stop puts back the marker too)
    if learnt is not None and sigint.caught and not (time_budget and time_budget.reached):
        learnt["interrupted"] = True
    drop_replaced_checkpoints(grid, mended, exp_path)
    from raygym.search.pruning import learnt_grace_of

    console.print()
    if scheduler is not None and (grace := learnt_grace_of(scheduler)) is not None:
        console.print(f"grace period learnt from the first {s.grace_trials} trials run in "
                      f"full: trials judged from epoch {grace}")
        if learnt is not None:
            learnt["learnt_grace"] = grace
    return grid


class TimeBudgetCallback(Callback):
    """Stops the Tune run (:func:`raygym.compat.stop_tune_run`) at the first step of the
    driver loop past the budget's end."""

    def __init__(self, budget: TimeBudget) -> None:
        self.budget: TimeBudget | None = budget

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment's snapshot; a deadline on this
        # driver's monotonic clock means nothing to another process (a resume brings its own)
        return {"budget": None}

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        budget = self.budget
        if budget is None or time.monotonic() < budget.stop_at:
            return
        from raygym.compat import stop_tune_run

        self.budget = None  # once: the loop ends at its next check
        budget.reached = stop_tune_run()
