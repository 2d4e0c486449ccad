"""Optuna's pruners as a Ray Tune scheduler (``search.scheduler: patient``).

Tune's schedulers judge a trial at a rung by its value there and nothing else. Optuna's
pruners read a trial's whole learning curve. ``search.scheduler: patient`` stops a trial only
when two of them agree (:class:`AllOf`): successive halving (Optuna's
``SuccessiveHalvingPruner``, the asynchronous rule of Tune's ASHA, rungs at
``grace_period * reduction_factor**k`` epochs) puts it below the cut of its rung, *and* its
curve has stalled (Optuna's ``PatientPruner`` without a wrapped pruner: the best of its last
``prune_patience + 1`` epochs is worse than its best before them). A trial that is still
climbing runs on to the next rung.

Why not ``PatientPruner(SuccessiveHalvingPruner(...))``, Optuna's own composition: the wrapped
pruner is then asked only about stalled trials, and successive halving records a trial's value
at a rung only when asked, so the rising trials are missing from every rung and a stalled
trial competes only with other stalled ones (a test shows it). :class:`AllOf` asks both.

The adapter keeps its own in-memory Optuna study (one Optuna trial per Tune trial, the
scheduler's metric reported at each epoch); it is independent of the searcher, so it works
with TPE, random search or BOHB's sampler alike. Public Optuna API only.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.pruners import BasePruner
from ray.tune.schedulers import FIFOScheduler, MedianStoppingRule, TrialScheduler


class AllOf(BasePruner):
    """Prune only when every one of ``pruners`` says so; each is asked every time (some
    record state when asked, e.g. successive halving its rung values)."""

    def __init__(self, *pruners: BasePruner) -> None:
        self.pruners = pruners

    def prune(self, study: Any, trial: Any) -> bool:
        votes = [p.prune(study, trial) for p in self.pruners]  # no short-circuit: see above
        return all(votes)


def patient_halving(*, grace_period: int, reduction_factor: int, patience: int) -> AllOf:
    """``search.scheduler: patient``'s rule (see module docstring)."""
    import warnings

    import optuna

    halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=grace_period,
                                                     reduction_factor=reduction_factor)
    with warnings.catch_warnings():  # "experimental" in Optuna's words (since 2.8)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        stalled = optuna.pruners.PatientPruner(None, patience=patience)
    return AllOf(halving, stalled)


class OptunaPrunerScheduler(FIFOScheduler):
    """A Tune scheduler that asks an Optuna pruner after every result.

    ``pruner``: any ``optuna.pruners.BasePruner``; ``metric`` / ``mode``: the result key it
    reads (None: Tune's, through ``set_search_properties``); ``time_attr``: the step.
    """

    def __init__(self, pruner: Any, *, metric: str | None = None, mode: str | None = None,
                 time_attr: str = "training_iteration") -> None:
        super().__init__()
        self._pruner = pruner
        self._metric, self._mode = metric, mode
        self._time_attr = time_attr
        self._study: Any = None
        self._trials: dict[str, Any] = {}  # Tune trial id -> Optuna trial
        self._pruned: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def study(self) -> Any:
        if self._study is None:
            import optuna

            self._study = optuna.create_study(
                direction="maximize" if self._mode == "max" else "minimize",
                pruner=self._pruner, storage=optuna.storages.InMemoryStorage())
        return self._study

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._trials[trial.trial_id] = self.study().ask()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        ot = self._trials.get(trial.trial_id)
        value, step = result.get(str(self._metric)), result.get(self._time_attr)
        if ot is None or step is None or not isinstance(value, int | float):
            return TrialScheduler.CONTINUE
        if value == value:  # NaN: nothing to judge (the loop stops a diverged run itself)
            ot.report(float(value), int(step))
        if ot.should_prune():
            self._pruned.add(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any,
                          result: dict[str, Any]) -> None:
        self._close(trial.trial_id, (result or {}).get(str(self._metric)))

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._close(trial.trial_id, None, failed=True)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._close(trial.trial_id, None, failed=True)

    def _close(self, trial_id: str, value: Any, failed: bool = False) -> None:
        """Tell the study how the trial ended: PRUNED if this scheduler stopped it, else
        COMPLETE with its last value (the median pruners compare against these), else FAIL."""
        from optuna.trial import TrialState

        ot = self._trials.pop(trial_id, None)
        if ot is None:
            return
        study = self.study()
        if trial_id in self._pruned:
            study.tell(ot, state=TrialState.PRUNED)
        elif not failed and isinstance(value, int | float) and not math.isnan(value):
            study.tell(ot, float(value))
        else:
            study.tell(ot, state=TrialState.FAIL)

    def debug_string(self) -> str:
        return f"Optuna pruner {type(self._pruner).__name__}: {len(self._pruned)} stopped"


class MedianWithoutYielding(MedianStoppingRule):
    """Tune's ``MedianStoppingRule`` (hard stop) that never pauses a trial.

    When fewer than ``min_samples_required`` other trials have reached a trial's epoch and a
    trial is waiting, Tune's rule pauses the running one to give the waiting one its slot
    (time-sharing). A replayed trial (``raygym search --replay``) has no checkpoint and starts
    over from epoch 1 when resumed: a 6-trial replay spent 97 epochs for the 41 its
    leaderboard shows; a training trial pays an actor restart and a checkpoint round trip for
    nothing. With a hard stop that is the rule's only pause, so here it continues instead.
    """

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE if decision == TrialScheduler.PAUSE else decision


class SparingRepeats(TrialScheduler):
    """Any Tune scheduler, except that a repeat run (``search.repeat_top``: a second training
    seed of a configuration that finished among the leaders) is never stopped early.

    A repeat exists to measure its configuration again, and the leaderboard ranks by the mean
    of a configuration's runs: a repeat stopped at the first rung (ASHA stopped two thirds of
    all trials at epoch 2 on bench/curves' aerial table, repeats included) averages a leader's
    full run with an epoch-2 score and sinks it below configurations run once. Repeats are
    also kept out of the scheduler's rung statistics (they are not new candidates)."""

    def __init__(self, base: TrialScheduler) -> None:
        super().__init__()
        self.base = base

    @staticmethod
    def is_repeat(trial: Any) -> bool:
        from raygym.search.space import REPEAT_KEY

        return bool((getattr(trial, "config", None) or {}).get(REPEAT_KEY))

    @property
    def metric(self) -> str | None:
        return self.base.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.base.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.base.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self.base.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.base.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.is_repeat(trial):
            return TrialScheduler.CONTINUE
        return self.base.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any,
                          result: dict[str, Any]) -> None:
        if self.is_repeat(trial):  # kept out of the rungs, but the base forgets it
            self.base.on_trial_remove(tune_controller, trial)
        else:
            self.base.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.base.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        return self.base.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return self.base.debug_string()

    def save(self, checkpoint_path: str) -> None:
        self.base.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.base.restore(checkpoint_path)
