"""raygym's Tune schedulers: Optuna's pruners (``search.scheduler: patient``), Tune's median
rule without pausing, repeats never stopped, and a grace period learnt from the first trials
(``search.grace_period: auto``, :class:`LearntGrace`).

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
from collections.abc import Sequence
from typing import Any

from optuna.pruners import BasePruner
from ray.tune.experiment import Trial
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


class _OwnMetric(FIFOScheduler):
    """A scheduler given its metric / mode at construction or, where not, by Tune."""

    _metric: str | None
    _mode: str | None

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True


class OptunaPrunerScheduler(_OwnMetric):
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


class FirstComeFirstServed(TrialScheduler):
    """``base``, a scheduler that runs trials first come, first served (Tune's FIFO pick:
    ASHA, the median rule, Optuna's pruners, no early stopping), choosing among the live
    trials only. Every other call goes to ``base``.

    Tune's pick walks every trial of the experiment (twice when none waits) on each step of
    its controller, ~50 steps per trial: 2.5 ms of driver CPU per trial at 1,000 trials, and
    growing with the experiment (``bench/RESULTS.md``, bench_scale, tenth pass). This one
    applies the same rule, the first PENDING trial in Tune's order, else the first PAUSED, to
    the controller's ``get_live_trials()`` (those not ended), ordered as ``on_trial_add``
    came: Tune adds a trial again when it requeues it after an error, at the end of its list,
    and so does this.
    """

    def __init__(self, base: TrialScheduler) -> None:
        super().__init__()
        self.base = base
        self._arrival: dict[str, int] = {}  # trial id -> place in Tune's list of trials
        self._arrived = 0

    @property
    def metric(self) -> str | None:
        return self.base.metric

    @property
    def supports_buffered_results(self) -> bool:
        return self.base.supports_buffered_results

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return self.base.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._arrival[trial.trial_id] = self._arrived
        self._arrived += 1
        self.base.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self.base.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return self.base.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any,
                          result: dict[str, Any]) -> None:
        self.base.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self.base.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        live = list(tune_controller.get_live_trials())
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [t for t in live if t.status == status]
            if waiting:
                last = len(self._arrival)  # never added here: after all that were
                return min(waiting, key=lambda t: self._arrival.get(t.trial_id, last))
        return None

    def debug_string(self) -> str:
        return self.base.debug_string()

    def save(self, checkpoint_path: str) -> None:
        self.base.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.base.restore(checkpoint_path)


class SparingRepeats(FirstComeFirstServed):
    """Any first-come-first-served Tune scheduler, except that a repeat run
    (``search.repeat_top``: a second training seed of a configuration that finished among the
    leaders) is never stopped early.

    A repeat exists to measure its configuration again, and the leaderboard ranks by the mean
    of a configuration's runs: a repeat stopped at the first rung (ASHA stopped two thirds of
    all trials at epoch 2 on bench/curves' aerial table, repeats included) averages a leader's
    full run with an epoch-2 score and sinks it below configurations run once. Repeats are
    also kept out of the scheduler's rung statistics (they are not new candidates)."""

    @staticmethod
    def is_repeat(trial: Any) -> bool:
        from raygym.search.space import REPEAT_KEY

        return bool((getattr(trial, "config", None) or {}).get(REPEAT_KEY))

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


# ----------------------------------------------------------------- a grace period learnt
#: Spearman rank correlation at which an epoch's scores are taken to rank trials as their
#: final scores do (``search.grace_period: auto``)
GRACE_AGREEMENT = 0.7


def learnt_grace(curves: Sequence[Sequence[float]], *, mode: str, max_epochs: int,
                 agreement: float = GRACE_AGREEMENT) -> int:
    """The first epoch from which the trials' best-so-far scores rank them as their final
    best scores do, at every later epoch too (Spearman >= ``agreement``).

    ``curves``: one per trial that ran to its end, its judged value at epochs 1, 2, ...
    (NaN: no value; a curve shorter than ``max_epochs`` ended by early stopping and keeps
    its best). Returns ``max_epochs`` when no earlier epoch agrees (nothing is then judged
    before the end).
    """
    better = max if mode == "max" else min
    worst = -math.inf if mode == "max" else math.inf

    def best_by_epoch(curve: Sequence[float]) -> list[float]:
        out, best = [], worst
        for e in range(max_epochs):
            v = curve[e] if e < len(curve) else math.nan
            if v == v:
                best = better(best, float(v))
            out.append(best)
        return out

    import warnings

    from scipy.stats import spearmanr

    bests = [best_by_epoch(c) for c in curves]
    finals = [b[-1] for b in bests]
    grace = max_epochs
    for epoch in range(max_epochs - 1, 0, -1):  # from the last judged epoch backwards
        with warnings.catch_warnings():  # a constant epoch ranks nothing: NaN, said below
            warnings.simplefilter("ignore")
            rho = spearmanr([b[epoch - 1] for b in bests], finals).statistic
        if not rho >= agreement:  # NaN included
            break
        grace = epoch
    return grace


class LearntGrace(_OwnMetric):
    """An early-stopping scheduler whose grace period is learnt from the search's own trials
    (``search.grace_period: auto``).

    Its first ``trials`` trials run unjudged to their end; from their curves
    :func:`learnt_grace` finds the first epoch that ranks trials as their final scores do,
    and ``build(grace)`` then makes the scheduler (ASHA, median, patient). Every result seen
    so far is replayed into it, through its public callbacks and in the order Tune reported
    them, so its rungs and running means hold the early trials too; from then on it decides.
    A fixed grace is a guess about the data: on bench/curves' S2 table the scores of epoch
    2-4 already rank configurations (Spearman 0.8), on the 30-epoch aerial table the best
    configurations (learning rate 1e-2) score *below* the median until epoch ~7 and the rank
    only settles after epoch ~20 (bench/RESULTS.md).

    ``learnt``: the grace once learnt (None before). Repeats (``repeat_top``) never reach
    it: :class:`SparingRepeats` wraps this scheduler.
    """

    def __init__(self, build: Any, *, trials: int, max_epochs: int,
                 metric: str | None = None, mode: str | None = None,
                 time_attr: str = "training_iteration") -> None:
        super().__init__()
        self._build, self._trials_needed, self._max_epochs = build, trials, max_epochs
        self._metric, self._mode, self._time_attr = metric, mode, time_attr
        self.base: TrialScheduler | None = None
        self.learnt: int | None = None
        self._events: list[tuple[str, Any, dict[str, Any] | None]] = []
        self._curves: dict[Any, list[float]] = {}
        self._finished: list[list[float]] = []
        self._ended: set[Any] = set()  # ended for the base in the replay, still running

    def _slim(self, result: dict[str, Any] | None) -> dict[str, Any] | None:
        """What schedulers read of a result (keeps the replay log small)."""
        if not result:
            return result
        return {k: result[k] for k in (self._time_attr, self._metric) if k in result}

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if self.base is not None:
            return self.base.on_trial_add(tune_controller, trial)
        self._events.append(("add", trial, None))
        self._curves[trial] = []

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if self.base is not None:
            if trial in self._ended:
                return TrialScheduler.STOP
            return self.base.on_trial_result(tune_controller, trial, result)
        slim = self._slim(result)
        self._events.append(("result", trial, slim))
        value = (slim or {}).get(str(self._metric))
        if trial in self._curves and isinstance(value, int | float):
            self._curves[trial].append(float(value))
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any,
                          result: dict[str, Any]) -> None:
        if self.base is not None:
            if trial in self._ended:  # the base ended it in the replay
                self._ended.discard(trial)
                return None
            return self.base.on_trial_complete(tune_controller, trial, result)
        self._events.append(("complete", trial, self._slim(result)))
        curve = self._curves.pop(trial, None)
        if curve:
            self._finished.append(curve)
        if len(self._finished) >= self._trials_needed:
            self._learn(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._lost("error", tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._lost("remove", tune_controller, trial)

    def _lost(self, kind: str, tune_controller: Any, trial: Any) -> None:
        """A trial that failed (``error``) or was removed: nothing to learn from."""
        if self.base is None:
            self._events.append((kind, trial, None))
            self._curves.pop(trial, None)
        elif trial in self._ended:  # the base ended it in the replay
            self._ended.discard(trial)
        elif kind == "error":
            self.base.on_trial_error(tune_controller, trial)
        else:
            self.base.on_trial_remove(tune_controller, trial)

    def _learn(self, tune_controller: Any) -> None:
        self.learnt = learnt_grace(self._finished, mode=str(self._mode),
                                   max_epochs=self._max_epochs)
        base = self._build(self.learnt)
        if not base.metric:
            base.set_search_properties(self._metric, self._mode)
        # the base sees the search as if it had judged from the start: a trial it would
        # have stopped ends there for it (as Tune ends a stopped trial: complete with that
        # result), its later results unseen
        stopped: set[Any] = set()
        for kind, trial, result in self._events:
            if trial in stopped:
                continue
            if kind == "add":
                base.on_trial_add(tune_controller, trial)
            elif kind == "result":
                if base.on_trial_result(tune_controller, trial, result or {}) == (
                        TrialScheduler.STOP):
                    base.on_trial_complete(tune_controller, trial, result or {})
                    stopped.add(trial)
            elif kind == "complete":
                base.on_trial_complete(tune_controller, trial, result or {})
            elif kind == "error":
                base.on_trial_error(tune_controller, trial)
            else:
                base.on_trial_remove(tune_controller, trial)
        # trials still running that it would have stopped: stopped at their next result
        self._ended = {t for t in stopped if t in self._curves}
        self.base, self._events, self._curves, self._finished = base, [], {}, []

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if self.base is not None:
            return self.base.choose_trial_to_run(tune_controller)
        return super().choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        if self.base is None:
            return (f"grace learnt from {self._trials_needed} trials run in full "
                    f"({len(self._finished)} so far)")
        return f"grace {self.learnt} (learnt); " + self.base.debug_string()


def learnt_grace_of(scheduler: Any) -> int | None:
    """The grace a :class:`LearntGrace` in ``scheduler`` (or wrapped by it) has learnt."""
    while scheduler is not None:
        if isinstance(scheduler, LearntGrace):
            return scheduler.learnt
        scheduler = getattr(scheduler, "base", None)
    return None
