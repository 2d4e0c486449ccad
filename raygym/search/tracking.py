"""``raygym search``'s MLflow tracking (``mlflow.enabled``): one MLflow run per trial through
Ray's ``MLflowLoggerCallback``, nested under one run for the search that ends up holding the
search's summary, leaderboard and exported best models.

Ray's callback sets up the store and experiment; raygym's subclass logs the trial's sampled
values as Optuna and the leaderboard see them (decoded, conditional keys only when active)
instead of Tune's raw config, logs the loop's scores with step = epoch (Tune's
``training_iteration`` counts reports, not epochs, in multi-worker trials) and finds a
restored trial's run again instead of starting a second one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from raygym.config import ExperimentConfig
from raygym.search.leaderboard import INTERRUPTED, STOP_PRUNED
from raygym.search.space import REPEAT_KEY, active_params
from raygym.search.space_config import SearchSpace
from raygym.tracking import (
    PARENT_TAG,
    ROLE_TAG,
    SEARCH_TAG,
    TRIAL_TAG,
    MlflowRun,
    Store,
    epoch_metrics,
    find_or_start_run,
    find_run,
    finite_numbers,
    flat_params,
    open_experiment,
    param_value,
    require_mlflow,
    runs_with_tag,
    store_for,
)
from raygym.train.contract import finished

logger = logging.getLogger(__name__)
# What a finished search logs on its run (names in the results folder)
SEARCH_FILES = ("leaderboard.csv", "leaderboard.md", "search.json")
RANK_TAG = "raygym.rank"  # on an exported trial's run: its rank among the search's best


def search_store(config: ExperimentConfig) -> Store:
    """The search's MLflow store (default: ``search.results_dir/mlflow.db``)."""
    return store_for(config, config.search.results_dir)


def search_run(config: ExperimentConfig) -> MlflowRun:
    """The search's own run (found again on a resume), its fixed settings as params.

    Called when the search starts, before Ray: a missing extra or an unusable store is
    refused there, before anything is written."""
    require_mlflow(config)
    store = search_store(config)
    client, experiment_id = open_experiment(store)
    run = find_or_start_run(client, experiment_id, store.uri, name=config.name,
                            match={SEARCH_TAG: config.name, ROLE_TAG: "search"},
                            tags={"raygym.command": "search"})
    run.log_params(flat_params(config.to_yaml_dict()))
    return run


def check_tracking(config: ExperimentConfig, *, replay: Any = None) -> None:
    """When the search starts, before Ray and before anything is written: with
    ``mlflow.enabled`` the extra is installed and the store opens (the experiment is
    created there if new)."""
    if config.mlflow.enabled and replay is None:
        require_mlflow(config)
        open_experiment(search_store(config))


def tracking_callbacks(config: ExperimentConfig, space: SearchSpace, *, replay: Any = None
                       ) -> list[Any]:
    """Tune callbacks for ``run_tune``: ``[TrialRuns]`` with ``mlflow.enabled``, else none.
    A replayed search (recorded curves, no training) is not tracked: its scores are not
    models' scores."""
    if not config.mlflow.enabled or replay is not None:
        return []
    return [TrialRuns(config, space)]


class TrialRuns(MLflowLoggerCallback):
    """One MLflow run per trial (tags ``raygym.search``, ``raygym.trial_id``, nested under
    the search's run); params: the trial's sampled values; metrics: each epoch's scores."""

    def __init__(self, config: ExperimentConfig, space: SearchSpace) -> None:
        store = search_store(config)
        super().__init__(tracking_uri=store.uri, experiment_name=store.experiment,
                         tags={SEARCH_TAG: config.name})
        self.config, self.space, self.store = config, space, store
        self.runs: dict[str, MlflowRun] = {}
        self.parent: MlflowRun | None = None
        self._client: Any = None
        self._experiment_id = ""
        self._caller_uri: str | None = None
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks (tuner.pkl)
        return {**self.__dict__, "_client": None, "runs": {}, "parent": None}

    def setup(self, *args: Any, **kwargs: Any) -> None:
        import mlflow

        # first: creates the experiment with raygym's artifact folder, which Ray's setup
        # (it passes none) then finds
        self.parent = search_run(self.config)
        # Ray's setup sets mlflow's process-wide tracking URI: given back at the end, for a
        # caller of raygym.run_search that uses mlflow itself
        self._caller_uri = mlflow.get_tracking_uri()
        super().setup(*args, **kwargs)
        self._client, self._experiment_id = open_experiment(self.store)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        import mlflow

        super().on_experiment_end(trials, **info)
        if self._caller_uri:
            mlflow.set_tracking_uri(self._caller_uri)

    def log_trial_start(self, trial: Any) -> None:
        with self._warn_once(trial):
            self._start(trial)

    def _start(self, trial: Any) -> None:
        if trial.trial_id in self.runs:
            return
        if self._client is None:
            self._client, self._experiment_id = open_experiment(self.store)
        parent = {PARENT_TAG: self.parent.run_id} if self.parent is not None else {}
        run = find_or_start_run(
            self._client, self._experiment_id, self.store.uri,
            name=f"{self.config.name}_{trial.trial_id}",
            match={SEARCH_TAG: self.config.name, TRIAL_TAG: trial.trial_id},
            tags={"trial_name": str(trial), **parent})
        params = {k: param_value(v) for k, v in active_params(self.space, trial.config).items()}
        if REPEAT_KEY in trial.config:  # a repeat of a leading configuration: its run index
            params[REPEAT_KEY] = param_value(trial.config[REPEAT_KEY])
        run.log_params(params)
        self.runs[trial.trial_id] = run

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        with self._warn_once(trial):
            if trial.trial_id not in self.runs:
                self._start(trial)
            step = int(result.get("epoch") or iteration)
            self.runs[trial.trial_id].log_metrics(epoch_metrics(result), step)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run = self.runs.pop(trial.trial_id, None)
        if run is None:
            return
        # the leaderboard's status words: failed, completed / early-stopped, asha-pruned ...
        last = trial.last_result or {}
        status = ("failed" if failed else str(last["stop_reason"]) if finished(last)
                  else STOP_PRUNED[self.config.search.scheduler])
        with self._warn_once(trial):
            run.set_tags({"raygym.status": status})
            run.finish("FAILED" if failed else "FINISHED")

    @contextmanager
    def _warn_once(self, trial: Any) -> Iterator[None]:
        """A store that fails mid-search (a server gone) costs tracking, not the search."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - the search goes on; one warning says so
            if not self._warned:
                logger.warning("trial %s not tracked in MLflow (%s: %s); the search goes on",
                               trial.trial_id, type(err).__name__, err)
                self._warned = True


def log_search_summary(config: ExperimentConfig, out: Path, summary: dict[str, Any],
                       exported: list[Path], interrupted: frozenset[str] | set[str] = frozenset(),
                       stopped: bool = False) -> None:
    """After the export: the summary's numbers as metrics and ``best_trial`` as a tag on the
    search's run, each exported trial's rank as a tag on its run, and with
    ``log_artifacts`` the leaderboard, ``search.json`` and ``best/`` on the search's run.

    ``interrupted``: ids of the trials a Ctrl-C cut short. Tune ended them as if its
    scheduler had, so their runs are re-tagged ``interrupted`` and they and the search's
    run end ``KILLED`` (a ``--resume`` sets them running again). ``stopped``: a Ctrl-C ended
    the search (also between trials, when it cut no trial short): its run ends ``KILLED``."""
    if not config.mlflow.enabled:
        return
    try:
        _log_summary(config, out, summary, exported, interrupted, stopped or bool(interrupted))
    except Exception as err:  # noqa: BLE001 - the search's results are on disk all the same
        logger.warning("the search's MLflow run was not completed (%s: %s)",
                       type(err).__name__, err)


def _log_summary(config: ExperimentConfig, out: Path, summary: dict[str, Any],
                 exported: list[Path], interrupted: frozenset[str] | set[str],
                 stopped: bool) -> None:
    run = search_run(config)
    numbers = {k: v for k, v in summary.items() if k != "status"}
    numbers.update({f"trials_{k}": v for k, v in (summary.get("status") or {}).items()})
    numbers.update({f"seed_noise_{k}": v for k, v in (summary.get("seed_noise") or {}).items()})
    run.log_metrics(finite_numbers(numbers), step=0)
    run.set_tags({"best_trial": str(summary.get("best_trial"))})
    client, experiment_id = open_experiment(search_store(config))
    # an earlier end of this search (before a --resume) ranked other trials: not any more
    for run_id in runs_with_tag(client, experiment_id, {SEARCH_TAG: config.name}, RANK_TAG):
        client.delete_tag(run_id, RANK_TAG)
    for rank, folder in enumerate(exported, start=1):  # rank<N>_<trial id>
        trial_id = folder.name.split("_", 1)[1]
        found = find_run(client, experiment_id, {SEARCH_TAG: config.name, TRIAL_TAG: trial_id})
        if found is not None:
            client.set_tag(found, RANK_TAG, str(rank))
    for trial_id in sorted(interrupted):
        found = find_run(client, experiment_id, {SEARCH_TAG: config.name, TRIAL_TAG: trial_id})
        if found is not None:
            client.set_tag(found, "raygym.status", INTERRUPTED)
            client.set_terminated(found, status="KILLED")
    if config.mlflow.log_artifacts:
        for name in SEARCH_FILES:
            run.log_artifact(out / name)
        # an earlier end of this search (before a --resume) logged other best models
        if not run.delete_artifacts("best"):
            logger.warning("the search's MLflow run keeps the best/ models of its earlier "
                           "ends beside these (the artifact store cannot delete)")
        if exported:
            run.log_artifact(out / "best", "best")
    run.finish("KILLED" if stopped else "FINISHED" if summary.get("best_trial")
               else "FAILED")
