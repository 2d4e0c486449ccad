"""OptunaSearch that tells the truth about trials a scheduler stopped.

Ray's stock ``OptunaSearch`` records an ASHA-stopped trial as COMPLETE with its last value,
which biases TPE toward short runs (seen with ray 2.60). Here a trial is COMPLETE only
when its own loop finished (``stop_reason`` completed / early-stopped), with the value of the
epoch whose weights were kept; a scheduler-stopped trial is PRUNED, keeping the per-epoch
intermediate values that ``on_trial_result`` reported; an errored trial is FAIL.

It also never trains one configuration twice. TPE on a discrete space (architectures x
filters x losses) suggests finished configurations again, and a seeded run of the same
configuration gives the same result: such a suggestion is recorded at once with its twin's
outcome (user attribute ``duplicate_of``) and the untried point nearest to it (most
parameters in common) is queued as the next ask; a suggestion of a configuration that is
still training (parallel slots) is closed as FAIL (``duplicate_of_running``), which TPE
ignores, and asked again the same way. When every point of a discrete space has
been tried, the search ends before ``num_samples``.

With ``repeat_top`` k > 0 it also races the leaders, as SMAC's intensification does: a
configuration whose trial finishes (its own loop ended) with a mean score among the best k
is trained once more, with the next training seed, before new configurations are asked for,
and again while its mean keeps it among the best k, up to ``repeat_runs`` runs.
Such a repeat is a Tune trial whose config carries ``REPEAT_KEY`` (the run index, added to
``train.seed``); Optuna never hears of it. :meth:`mean_scores` gives each configuration's mean
over its runs, by which the leaderboard ranks.

Scale: the twin checks keep their own indexes (configuration key -> trial) in memory
instead of asking the study on each suggestion, and the study itself lives in Optuna's journal
file (:mod:`raygym.search.study_storage`; 1,000-trial measurements in ``bench/RESULTS.md``,
bench_scale).
"""

from __future__ import annotations

import logging
from typing import Any

from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from raygym.compat import (
    completed_trial_ids,
    intermediate_values,
    live_optuna_trials,
    optuna_study,
    rdb_storage,
    searcher_space,
    set_trial_user_attr,
)
from raygym.search.space import REPEAT_KEY, config_key
from raygym.search.study_storage import fast_sqlite
from raygym.train.contract import finished as loop_finished

logger = logging.getLogger(__name__)

# Backstop on asks per suggestion; with the nearest untried point queued after a repeat,
# a second ask normally suffices.
MAX_REPEATS = 20


class TruthfulOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with PRUNED for scheduler-stopped trials and no repeated configurations
    (see module docstring)."""

    def __init__(self, *args: Any, repeat_top: int = 0, repeat_runs: int = 2,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.repeat_top = repeat_top
        self.repeat_runs = repeat_runs  # a configuration is trained at most this often
        self._runs: dict[str, dict[str, float]] = {}  # config key -> {trial: best value}
        self._params_of: dict[str, dict[str, Any]] = {}  # trial -> its config
        self._queued: list[tuple[dict[str, Any], int]] = []  # repeats waiting for a slot
        self._live: set[str] = set()
        self._index_trials()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._queued:
            params, run = self._queued.pop(0)
            return self._started(trial_id, {**params, REPEAT_KEY: run})
        for _ in range(MAX_REPEATS):
            if not self._untried():
                break
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            ot_trial = live_optuna_trials(self)[trial_id]
            params = ot_trial.params
            twin = self._finished_twin(params)
            running = None if twin else self._running_twin(trial_id, params)
            if twin is None and running is None:
                self._running_keys[trial_id] = (ot_trial.number, config_key(params))
                return self._started(trial_id, config)
            if twin is not None:
                self._record_as_twin(ot_trial, twin)
            else:  # its twin is still training: no outcome to copy, and no second run
                ot_trial.set_user_attr("duplicate_of_running", running)
                optuna_study(self).tell(ot_trial, state=TrialState.FAIL)
            del live_optuna_trials(self)[trial_id]  # the next super().suggest asks again
            untried = self._untried()
            if untried:  # steer that ask to the untried point nearest to TPE's choice
                nearest = max(untried, key=lambda p: sum(p.get(k) == v
                                                         for k, v in params.items()))
                optuna_study(self).enqueue_trial(nearest, skip_if_exists=True)
        if self.repeat_top and self._live:
            return None  # a running trial may still earn a repeat
        logger.info("every configuration of the search space has been tried: search ends")
        return Searcher.FINISHED

    def _started(self, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
        self._params_of[trial_id] = config
        self._live.add(trial_id)
        return config

    def mean_scores(self) -> dict[str, float]:
        """{config key: mean best score over its runs so far} (repeats included)."""
        return {k: sum(v.values()) / len(v) for k, v in self._runs.items() if v}

    def _record_run(self, trial_id: str, result: dict[str, Any] | None, finished: bool) -> None:
        """Keep a trial's score by configuration; queue a repeat for a finished leader."""
        self._live.discard(trial_id)
        params = self._params_of.get(trial_id)
        value = (result or {}).get(f"best_{self.metric}", (result or {}).get(str(self.metric)))
        if params is None or not isinstance(value, int | float) or value != value:
            return
        sign = 1.0 if self.mode == "max" else -1.0
        key = config_key(params)
        self._runs.setdefault(key, {})[trial_id] = sign * float(value)
        if not (finished and self.repeat_top):
            return
        means = self.mean_scores()
        leaders = sorted(means, key=lambda k: means[k], reverse=True)[: self.repeat_top]
        queued = sum(1 for p, _ in self._queued if config_key(p) == key)
        runs = len(self._runs[key]) + queued
        if key in leaders and runs < self.repeat_runs:
            base = {k: v for k, v in params.items() if k != REPEAT_KEY}
            self._queued.append((base, runs))

    def _untried(self) -> list[dict[str, Any]]:
        """Points of a discrete space no trial has taken (finished, running or queued); one
        placeholder point when the space is continuous (never exhausted)."""
        from raygym.search.space import OptunaDefineByRun, enumerate_points

        if not hasattr(self, "_all_points"):
            space = searcher_space(self)
            self._all_points = (enumerate_points(space.space)
                                if isinstance(space, OptunaDefineByRun) else None)
        if self._all_points is None:
            return [{}]
        taken = set(self._told_keys) | {key for _, key in self._running_keys.values()}
        return [p for p in self._all_points if config_key(p) not in taken]

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # a searcher saved before repeats existed
        for name, empty in (("repeat_top", 0), ("repeat_runs", 2), ("_runs", {}),
                            ("_params_of", {}),
                            ("_queued", []), ("_live", set())):
            if not hasattr(self, name):
                setattr(self, name, empty)
        backend = rdb_storage(optuna_study(self))
        if backend is not None:  # an older search's SQLite study: the unpickled engine
            # lost the WAL hook
            fast_sqlite(backend)
        self._fail_orphans()
        self._index_trials()

    def _index_trials(self) -> None:
        """Build the twin indexes from the study (at start and after a restore: one read).

        ``_told_keys``: configuration key -> number of a COMPLETE or PRUNED trial;
        ``_running_keys``: Tune trial id -> (number, key) of the trials this searcher asked
        and has not told yet."""
        self._told_keys: dict[str, int] = {}
        self._running_keys: dict[str, tuple[int, str]] = {}
        study = optuna_study(self)
        if study is None:  # OptunaSearch builds its study later, in set_search_properties
            return
        for t in study.get_trials(deepcopy=False,
                                  states=(TrialState.COMPLETE, TrialState.PRUNED)):
            self._told_keys.setdefault(config_key(t.params), t.number)
        for trial_id, trial in live_optuna_trials(self).items():
            self._running_keys[trial_id] = (trial.number, config_key(trial.params))

    def _fail_orphans(self) -> None:
        """Trials asked after the last saved searcher state (the driver died in between) stay
        RUNNING in the study for ever, and TPE's constant liar would count them as bad
        guesses: record them as FAIL (user attribute ``orphaned``)."""
        from optuna.trial import TrialState

        study = optuna_study(self)
        known = {t.number for t in live_optuna_trials(self).values()}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in known:
                continue
            try:
                set_trial_user_attr(study, trial, "orphaned", True)
                study.tell(trial.number, state=TrialState.FAIL)
            except Exception as exc:  # noqa: BLE001 - bookkeeping only
                logger.warning("optuna could not close orphan trial %s: %s", trial.number, exc)

    def _running_twin(self, trial_id: str, params: dict[str, Any]) -> int | None:
        """The number of another running trial with exactly these parameters, or None."""
        key = config_key(params)
        for other, (number, other_key) in self._running_keys.items():
            if other != trial_id and other_key == key:
                return number
        return None

    def _finished_twin(self, params: dict[str, Any]) -> Any:
        """A COMPLETE or PRUNED trial of the study with exactly these parameters, or None
        (the study is read only on a hit)."""
        number = self._told_keys.get(config_key(params))
        if number is None:
            return None
        for trial in optuna_study(self).get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if trial.number == number:
                return trial
        return None

    def _record_as_twin(self, ot_trial: Any, twin: Any) -> None:
        from optuna.trial import TrialState

        ot_trial.set_user_attr("duplicate_of", twin.number)
        for step, value in sorted(twin.intermediate_values.items()):
            ot_trial.report(value, step)
        if twin.state == TrialState.COMPLETE:
            optuna_study(self).tell(ot_trial, twin.value)
        else:
            optuna_study(self).tell(ot_trial, state=TrialState.PRUNED)
        self._told_keys.setdefault(config_key(twin.params), twin.number)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        # A trial Tune restored but this searcher's saved state never heard of (driver killed
        # between the two files' syncs; its Optuna trial was closed as orphaned) has nothing
        # to report to; and an Optuna error must not fail a trial that trains fine.
        if trial_id not in live_optuna_trials(self):  # also: a repeat run, its trial closed
            return
        try:
            super().on_trial_result(trial_id, result)
        except Exception as exc:  # noqa: BLE001 - bookkeeping only
            logger.warning("optuna could not record a result of trial %s: %s", trial_id, exc)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        from optuna.trial import TrialState

        finished = loop_finished(result)
        if trial_id in self._params_of and trial_id in self._live:
            self._record_run(trial_id, None if error else result, finished)
        if trial_id in completed_trial_ids(self) or trial_id not in live_optuna_trials(self):
            return
        ot_trial = live_optuna_trials(self)[trial_id]
        if result and not error:
            # Tune does not pass the result on which a scheduler said STOP to
            # on_trial_result (ASHA says STOP at every rung it prunes, and at max_t): record
            # it here, or a trial pruned at its first rung has no intermediate value at all.
            self._report_last(ot_trial, result)
        value = None
        if error or not result:
            state = TrialState.FAIL
        elif finished:
            state = TrialState.COMPLETE
            metric = str(self.metric)
            value = result.get(f"best_{metric}", result.get(metric))
            if value is None or value != value:  # NaN
                state, value = TrialState.FAIL, None
        else:
            state = TrialState.PRUNED
        if state != TrialState.COMPLETE:
            value = None
        try:
            optuna_study(self).tell(ot_trial, value, state=state)
        except Exception as exc:  # noqa: BLE001 - never take the search down for bookkeeping
            logger.warning("optuna could not record trial %s: %s", trial_id, exc)
        number_key = self._running_keys.pop(trial_id, None)
        if number_key is not None and state in (TrialState.COMPLETE, TrialState.PRUNED):
            self._told_keys.setdefault(number_key[1], number_key[0])
        completed_trial_ids(self).add(trial_id)

    def _report_last(self, ot_trial: Any, result: dict[str, Any]) -> None:
        metric, step = result.get(str(self.metric)), result.get("training_iteration")
        if not isinstance(metric, int | float) or metric != metric or step is None:
            return
        try:
            if int(step) not in intermediate_values(ot_trial):
                ot_trial.report(float(metric), int(step))
        except Exception as exc:  # noqa: BLE001 - bookkeeping only
            logger.warning("optuna could not record the last result of %s: %s",
                           ot_trial.number, exc)
