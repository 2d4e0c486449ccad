"""Optuna's pruners as a Tune scheduler (``search.scheduler: patient``), fed by hand-made
learning curves (no Ray needed: the scheduler is called as Tune's controller calls it)."""

from __future__ import annotations

import math

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from raygym.search.pruning import OptunaPrunerScheduler, patient_halving


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def run(scheduler: OptunaPrunerScheduler, curves: dict[str, list[float]]) -> dict[str, int]:
    """Feed the curves epoch by epoch, all trials side by side; {trial: epochs it ran}."""
    trials = {name: Trial(name) for name in curves}
    for t in trials.values():
        scheduler.on_trial_add(None, t)
    ran = dict.fromkeys(curves, 0)
    alive = set(curves)
    for epoch in range(1, max(map(len, curves.values())) + 1):
        for name in [n for n in curves if n in alive]:  # asynchronous: in this order
            result = {"val_mean_iou": curves[name][epoch - 1], "training_iteration": epoch}
            ran[name] = epoch
            decision = scheduler.on_trial_result(None, trials[name], result)
            if decision == TrialScheduler.STOP or epoch == len(curves[name]):
                scheduler.on_trial_complete(None, trials[name], result)
                alive.discard(name)
    return ran


# at the rung (epoch 2) "rising", "falling" and "sinking" are all in the bottom two thirds
CURVES = {"lead": [0.50, 0.60, 0.62, 0.63], "second": [0.45, 0.55, 0.56, 0.57],
          "third": [0.40, 0.50, 0.52, 0.53],
          "rising": [0.10, 0.30, 0.50, 0.70], "falling": [0.35, 0.30, 0.30, 0.30],
          "sinking": [0.25, 0.20, 0.20, 0.20]}


def halving() -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)


def test_halving_alone_stops_the_bottom_of_the_rung() -> None:
    ran = run(OptunaPrunerScheduler(halving(), metric="val_mean_iou", mode="max"), CURVES)
    # asynchronous halving: with fewer than 3 at the rung only the best so far goes on
    assert ran == {"lead": 4, "second": 2, "third": 2, "rising": 2, "falling": 2, "sinking": 2}


def test_patient_halving_spares_a_curve_that_still_rises() -> None:
    rule = patient_halving(grace_period=2, reduction_factor=3, patience=0)
    ran = run(OptunaPrunerScheduler(rule, metric="val_mean_iou", mode="max"), CURVES)
    # below the cut but still improving at the rung: spared, as are the leaders
    assert ran["rising"] == 4 and ran["lead"] == ran["second"] == ran["third"] == 4
    # below the cut and no better than the epoch before: stopped at the rung
    assert ran["falling"] == 2 and ran["sinking"] == 2


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_optunas_own_composition_compares_stalled_trials_only() -> None:
    """Why AllOf: PatientPruner(SuccessiveHalvingPruner) asks halving about stalled trials
    only, so "falling" meets no rising trial at the rung and is not stopped."""
    pruner = optuna.pruners.PatientPruner(halving(), patience=0)
    ran = run(OptunaPrunerScheduler(pruner, metric="val_mean_iou", mode="max"), CURVES)
    assert ran["falling"] == 4 and ran["sinking"] == 2


def test_scheduler_takes_tune_metric_and_closes_every_trial() -> None:
    scheduler = OptunaPrunerScheduler(halving())
    assert scheduler.set_search_properties("val_mean_iou", "max")
    assert not scheduler.set_search_properties("val_loss", "min")  # already set: refused
    run(scheduler, CURVES)
    study = scheduler.study()
    states = [t.state.name for t in study.trials]
    assert states.count("PRUNED") == 5 and states.count("COMPLETE") == 1
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE


class ConfiguredTrial(Trial):
    def __init__(self, trial_id: str, config: dict) -> None:
        super().__init__(trial_id)
        self.config = config


def test_repeats_of_the_leaders_are_never_stopped_early() -> None:
    from ray.tune.schedulers import ASHAScheduler

    from raygym.search.pruning import SparingRepeats
    from raygym.search.space import REPEAT_KEY

    scheduler = SparingRepeats(ASHAScheduler(time_attr="training_iteration", max_t=8,
                                             grace_period=2, reduction_factor=3))
    assert scheduler.set_search_properties("val_mean_iou", "max")
    assert scheduler.metric == "val_mean_iou"
    trials = [ConfiguredTrial(f"t{i}", {"model.filters": 2}) for i in range(3)]
    trials.append(ConfiguredTrial("again", {"model.filters": 2, REPEAT_KEY: 1}))
    decisions = {}
    for t in trials:
        scheduler.on_trial_add(None, t)
    for value, t in zip([0.6, 0.5, 0.4, 0.1], trials, strict=True):
        result = {"val_mean_iou": value, "training_iteration": 2}
        decisions[t.trial_id] = scheduler.on_trial_result(None, t, result)
    # the worst at the rung: a new configuration is stopped, a repeat goes on
    assert decisions["t2"] == TrialScheduler.STOP
    assert decisions["again"] == TrialScheduler.CONTINUE
    # the repeat's end is passed on as a removal (ASHA forgets it without recording it)
    scheduler.on_trial_complete(None, trials[3], {"val_mean_iou": 0.1, "training_iteration": 8})
    with pytest.raises(KeyError):  # already forgotten: ASHA has no such trial any more
        scheduler.on_trial_remove(None, trials[3])


def test_median_rule_stops_below_the_median_but_never_pauses() -> None:
    """Tune's rule pauses a trial it cannot judge yet when another one waits (time-sharing):
    a replayed trial would start over. raygym's continues it, and still stops a trial whose
    best is below the median of the finished ones."""
    from ray.tune.schedulers import MedianStoppingRule

    from raygym.search.pruning import MedianWithoutYielding
    from raygym.search.simulate import _Controller, _Stub

    def drive(rule: MedianStoppingRule, finished: list[float], value: float) -> str:
        rule.set_search_properties("val_mean_iou", "max")
        ctl = _Controller(rule, None)
        trials = [_Stub(f"done{i}") for i in range(len(finished))] + [_Stub("run"),
                                                                       _Stub("wait")]
        for t in trials:
            ctl.trials[t.trial_id] = t
            rule.on_trial_add(ctl, t)
        for t, v in zip(trials, finished, strict=False):
            t.status = "RUNNING"
            for epoch in (1, 2, 3):
                result = {"val_mean_iou": v, "training_iteration": epoch}
                rule.on_trial_result(ctl, t, result)
            rule.on_trial_complete(ctl, t, result)
            t.status = "TERMINATED"
        trials[-2].status = "RUNNING"  # "wait" stays PENDING
        decision = ""
        for epoch in (1, 2, 3):
            decision = rule.on_trial_result(ctl, trials[-2], {"val_mean_iou": value,
                                                              "training_iteration": epoch})
        return decision

    kwargs = {"time_attr": "training_iteration", "grace_period": 3, "min_samples_required": 2}
    assert drive(MedianStoppingRule(**kwargs), [], 0.5) == TrialScheduler.PAUSE
    assert drive(MedianWithoutYielding(**kwargs), [], 0.5) == TrialScheduler.CONTINUE
    assert drive(MedianWithoutYielding(**kwargs), [0.6, 0.7], 0.5) == TrialScheduler.STOP
    assert drive(MedianWithoutYielding(**kwargs), [0.6, 0.7], 0.8) == TrialScheduler.CONTINUE


# ------------------------------------------------------------------ grace_period: auto
def test_learnt_grace_is_where_the_ranks_settle() -> None:
    """Hand-made curves whose order flips at epoch 4: before it the slow starters (the best
    at the end) are behind, from it on every epoch ranks the trials as their final scores."""
    from raygym.search.pruning import learnt_grace

    finals = [0.9, 0.8, 0.7, 0.6, 0.5]
    curves = [[0.5 - f / 2, 0.6 - f / 2, 0.7 - f / 2] + [f - 0.1 + 0.02 * e for e in range(5)]
              for f in finals]  # epochs 1-3: the order reversed; epochs 4-8: the final order
    assert learnt_grace(curves, mode="max", max_epochs=8) == 4
    # the same trials judged by a loss (lower is better): the mirror image, the same epoch
    assert learnt_grace([[-v for v in c] for c in curves], mode="min", max_epochs=8) == 4
    # ranks that hold from the first epoch: judged from the first epoch
    assert learnt_grace([[f * e for e in range(1, 9)] for f in finals], mode="max",
                        max_epochs=8) == 1
    # every trial alike at an epoch (constant: no ranking) is no agreement either
    flat = [[0.5] * 5 + [f] * 3 for f in finals]
    assert learnt_grace(flat, mode="max", max_epochs=8) == 6
    # ranks that only the last epoch shows: nothing judged before the end
    shuffled = [[[0.3, 0.1, 0.5, 0.2, 0.4][i]] * 7 + [finals[i]] for i in range(5)]
    assert learnt_grace(shuffled, mode="max", max_epochs=8) == 8
    # a trial that stopped early (its own early stopping) keeps its best; NaN is no value
    short = [c[:5] for c in curves[:2]] + [[math.nan] + c[1:] for c in curves[2:]]
    assert learnt_grace(short, mode="max", max_epochs=8) == 4


@pytest.mark.parametrize("rule", ["median", "asha"])
def test_learnt_grace_judges_nothing_until_its_trials_ran_then_replays_them(rule: str) -> None:
    """The first ``trials`` trials run unjudged to their end; then the scheduler built with the
    learnt grace has seen them (a worse trial still running is stopped at once, as it would
    have been), and judges from there on."""
    from ray.tune.schedulers import ASHAScheduler

    from raygym.search.pruning import LearntGrace, MedianWithoutYielding
    from raygym.search.simulate import _Controller, _Stub

    built: list[int] = []

    def build(grace: int) -> TrialScheduler:
        built.append(grace)
        if rule == "asha":
            return ASHAScheduler(time_attr="training_iteration", max_t=6, grace_period=grace,
                                 reduction_factor=3)
        return MedianWithoutYielding(time_attr="training_iteration", grace_period=grace,
                                     min_samples_required=2)

    scheduler = LearntGrace(build, trials=3, max_epochs=6)
    assert scheduler.set_search_properties("val_mean_iou", "max")
    assert scheduler.metric == "val_mean_iou"
    ctl = _Controller(scheduler, None)
    finals = {"a": 0.9, "b": 0.7, "c": 0.5, "late": 0.1, "next": 0.05}
    # epoch 1 ranks them backwards, epochs 2-6 in their final order: grace 2
    curves = {n: [0.2 - f / 10] + [f - 0.01 * (6 - e) for e in range(2, 7)]
              for n, f in finals.items()}
    trials = {n: _Stub(n) for n in finals}
    for t in trials.values():
        ctl.trials[t.trial_id] = t
        scheduler.on_trial_add(ctl, t)
        t.status = "RUNNING"

    def report(name: str, epoch: int) -> str:
        return scheduler.on_trial_result(ctl, trials[name], {
            "val_mean_iou": curves[name][epoch - 1], "training_iteration": epoch})

    def finish(name: str) -> None:
        assert {report(name, e) for e in range(1, 7)} == {TrialScheduler.CONTINUE}
        assert scheduler.learnt is None
        scheduler.on_trial_complete(ctl, trials[name], {"val_mean_iou": curves[name][-1],
                                                        "training_iteration": 6})
        trials[name].status = "TERMINATED"

    # nothing is judged before the grace is learnt: "late" runs 3 epochs after a and b ended
    finish("a")
    finish("b")
    assert [report("late", e) for e in (1, 2, 3)] == [TrialScheduler.CONTINUE] * 3
    finish("c")
    assert scheduler.learnt == 2 and built == [2]
    # in the replay "late" fell below the median of a and b (ASHA: below its rung's cut) at
    # epoch 2: it is stopped at its next result, and its end is not passed on twice (ASHA
    # would raise KeyError for a trial it already forgot)
    assert report("late", 4) == TrialScheduler.STOP
    scheduler.on_trial_complete(ctl, trials["late"], {"val_mean_iou": curves["late"][3],
                                                      "training_iteration": 4})
    # a new trial is judged from the learnt grace on: epoch 1 goes on, epoch 2 is judged
    assert report("next", 1) == TrialScheduler.CONTINUE
    assert report("next", 2) == TrialScheduler.STOP


def test_first_come_first_served_picks_as_tunes_fifo_over_the_live_trials_only() -> None:
    """Random adds, starts, pauses, ends and requeues (Tune moves a requeued trial to the end
    of its list and adds it again): the pick over the live trials is Tune's FIFO pick over
    all trials, every time; the ended trials are never looked at."""
    import random

    from ray.tune.schedulers import FIFOScheduler

    from raygym.search.pruning import FirstComeFirstServed

    class Controller:  # Tune's list of trials and its set of live ones, as TuneController
        def __init__(self) -> None:
            self.trials: list[ConfiguredTrial] = []
            self.live: set[ConfiguredTrial] = set()
            self.walked = 0

        def get_trials(self) -> list[ConfiguredTrial]:
            self.walked += len(self.trials)
            return self.trials

        def get_live_trials(self) -> set[ConfiguredTrial]:
            return self.live

    rng = random.Random(0)
    ctl, fifo = Controller(), FIFOScheduler()
    scheduler = FirstComeFirstServed(FIFOScheduler())
    picks = 0
    for step in range(3000):
        op = rng.random()
        if op < 0.2 or not ctl.trials:
            trial = ConfiguredTrial(f"t{step}", {})
            trial.status = "PENDING"
            ctl.trials.append(trial)
            ctl.live.add(trial)
            scheduler.on_trial_add(ctl, trial)
        elif ctl.live:
            trial = rng.choice(sorted(ctl.live, key=lambda t: t.trial_id))
            if op < 0.5:
                trial.status = rng.choice(["RUNNING", "PAUSED"])
            elif op < 0.8:
                trial.status = "TERMINATED"
                ctl.live.discard(trial)
            else:  # requeued after an error
                trial.status = "PENDING"
                ctl.trials.remove(trial)
                ctl.trials.append(trial)
                scheduler.on_trial_add(ctl, trial)
        walked = ctl.walked
        ours = scheduler.choose_trial_to_run(ctl)
        assert ctl.walked == walked  # never walks Tune's whole list
        assert ours is fifo.choose_trial_to_run(ctl)
        picks += ours is not None
    assert 100 < picks < 3000
    assert len(ctl.live) < len(ctl.trials) / 2  # most trials ended: the pick skipped them
