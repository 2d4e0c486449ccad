"""OptunaSearch that tells the truth about trials a scheduler stopped.

Ray's stock ``OptunaSearch`` records an ASHA-stopped trial as COMPLETE with its last value,
which biases TPE toward short runs (see ../shared/RAY_NOTES.md). Here a trial is COMPLETE only
when its own loop finished (``stop_reason`` completed / early-stopped), with the value of the
epoch whose weights were kept; a scheduler-stopped trial is PRUNED, keeping the per-epoch
intermediate values that ``on_trial_result`` reported; an errored trial is FAIL.

It also never trains one configuration twice. TPE on a discrete space (architectures x
filters x losses) suggests finished configurations again, and a seeded run of the same
configuration gives the same result: such a suggestion is recorded at once with its twin's
outcome (user attribute ``duplicate_of``) and the untried point nearest to it (most
parameters in common) is queued as the next ask. When every point of a discrete space has
been tried, the search ends before ``num_samples``.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

logger = logging.getLogger(__name__)

# Backstop on asks per suggestion; with the nearest untried point queued after a repeat,
# a second ask normally suffices.
MAX_REPEATS = 20


class TruthfulOptunaSearch(OptunaSearch):
    """``OptunaSearch`` with PRUNED for scheduler-stopped trials and no repeated configurations
    (see module docstring)."""

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for _ in range(MAX_REPEATS):
            if not self._untried():
                break
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            ot_trial = self._ot_trials[trial_id]
            twin = self._finished_twin(ot_trial.params)
            if twin is None:
                return config
            self._record_as_twin(ot_trial, twin)
            del self._ot_trials[trial_id]  # the next super().suggest asks again
            untried = self._untried()
            if untried:  # steer that ask to the untried point nearest to TPE's choice
                nearest = max(untried, key=lambda p: sum(p.get(k) == v
                                                         for k, v in ot_trial.params.items()))
                self._ot_study.enqueue_trial(nearest, skip_if_exists=True)
        logger.info("every configuration of the search space has been tried: search ends")
        return Searcher.FINISHED

    def _untried(self) -> list[dict[str, Any]]:
        """Points of a discrete space no trial has taken (finished, running or queued); one
        placeholder point when the space is continuous (never exhausted)."""
        from optuna.trial import TrialState

        from raygym.search.space import OptunaDefineByRun, enumerate_points

        if not hasattr(self, "_all_points"):
            space = self._space
            self._all_points = (enumerate_points(space.space)
                                if isinstance(space, OptunaDefineByRun) else None)
        if self._all_points is None:
            return [{}]
        taken = [t.params for t in self._ot_study.get_trials(deepcopy=False) if t.state in (
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
        return [p for p in self._all_points if p not in taken]

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._fail_orphans()

    def _fail_orphans(self) -> None:
        """Trials asked after the last saved searcher state (the driver died in between) stay
        RUNNING in the study for ever, and TPE's constant liar would count them as bad
        guesses: record them as FAIL (user attribute ``orphaned``)."""
        from optuna.trial import TrialState

        known = {t.number for t in self._ot_trials.values()}
        for trial in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in known:
                continue
            try:
                self._ot_study._storage.set_trial_user_attr(trial._trial_id, "orphaned", True)
                self._ot_study.tell(trial.number, state=TrialState.FAIL)
            except Exception as exc:  # noqa: BLE001 - bookkeeping only
                logger.warning("optuna could not close orphan trial %s: %s", trial.number, exc)

    def _finished_twin(self, params: dict[str, Any]) -> Any:
        """A COMPLETE or PRUNED trial of the study with exactly these parameters, or None."""
        from optuna.trial import TrialState

        for trial in self._ot_study.get_trials(deepcopy=False,
                                               states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if trial.params == params:
                return trial
        return None

    def _record_as_twin(self, ot_trial: Any, twin: Any) -> None:
        from optuna.trial import TrialState

        ot_trial.set_user_attr("duplicate_of", twin.number)
        for step, value in sorted(twin.intermediate_values.items()):
            ot_trial.report(value, step)
        if twin.state == TrialState.COMPLETE:
            self._ot_study.tell(ot_trial, twin.value)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        # A trial Tune restored but this searcher's saved state never heard of (driver killed
        # between the two files' syncs; its Optuna trial was closed as orphaned) has nothing
        # to report to; and an Optuna error must not fail a trial that trains fine.
        if trial_id not in self._ot_trials:
            return
        try:
            super().on_trial_result(trial_id, result)
        except Exception as exc:  # noqa: BLE001 - bookkeeping only
            logger.warning("optuna could not record a result of trial %s: %s", trial_id, exc)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        from optuna.trial import TrialState

        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        finished = bool(result and result.get("stop_reason") in ("completed", "early-stopped"))
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
            self._ot_study.tell(ot_trial, value, state=state)
        except Exception as exc:  # noqa: BLE001 - never take the search down for bookkeeping
            logger.warning("optuna could not record trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def _report_last(self, ot_trial: Any, result: dict[str, Any]) -> None:
        metric, step = result.get(str(self.metric)), result.get("training_iteration")
        if not isinstance(metric, int | float) or metric != metric or step is None:
            return
        try:
            if int(step) not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
                ot_trial.report(float(metric), int(step))
        except Exception as exc:  # noqa: BLE001 - bookkeeping only
            logger.warning("optuna could not record the last result of %s: %s",
                           ot_trial.number, exc)
