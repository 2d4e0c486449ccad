"""The bounded-history TPE: which trials it models, and that it is Optuna's TPE unchanged when
the study is no larger than its bound."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState, create_trial

from raygym.search.tpe import BoundedHistory, BoundedTPESampler

MAX = optuna.study.StudyDirection.MAXIMIZE


def _trial(number: int, state: TrialState, value: float | None = None,
           steps: dict[int, float] | None = None) -> FrozenTrial:
    t = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                     intermediate_values=steps or {})
    t.number = number
    return t


def _study_trials() -> list[FrozenTrial]:
    """200 finished trials (even: complete, value rising with the number except #10 best;
    odd: pruned at step 1, except #11 which got to step 5) and 2 running."""
    trials = []
    for n in range(200):
        if n % 2 == 0:
            trials.append(_trial(n, TrialState.COMPLETE, 1.0 if n == 10 else n / 1000))
        else:
            trials.append(_trial(n, TrialState.PRUNED, steps={5 if n == 11 else 1: 0.1}))
    return trials + [_trial(200, TrialState.RUNNING), _trial(201, TrialState.RUNNING)]


def test_bounded_history_keeps_the_best_the_furthest_and_the_newest() -> None:
    trials = _study_trials()
    kept = BoundedHistory(100, MAX).select(trials)
    numbers = [t.number for t in kept]
    assert numbers == sorted(numbers)
    assert sum(t.state.is_finished() for t in kept) == 100
    assert {10, 11, 200, 201} <= set(numbers)  # best complete, furthest pruned, running
    best_complete = sorted((t for t in trials if t.state == TrialState.COMPLETE),
                           key=lambda t: -t.value)[:25]
    assert {t.number for t in best_complete} <= set(numbers)
    assert set(range(150, 200)) <= set(numbers)  # the newest fill what is left
    assert 99 not in numbers and 98 not in numbers  # old, neither best nor recent


def test_bounded_history_unchanged_within_the_bound_and_updated_one_trial_at_a_time() -> None:
    trials = _study_trials()
    assert BoundedHistory(200, MAX).select(trials) is trials
    history = BoundedHistory(100, MAX)
    assert history.select(trials[:100]) == trials[:100]  # 100 finished: all modelled
    history.select(trials)  # the same history, fed the rest: as if all at once
    assert history.select(trials) == BoundedHistory(100, MAX).select(trials)
    better = _trial(202, TrialState.COMPLETE, 2.0)  # a new best displaces the 25th best
    assert 202 in {t.number for t in history.select([*trials, better])}
    # the query TPE's search-space step makes (COMPLETE only) is bounded the same way
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert {t.number for t in history.select(complete)} <= {
        t.number for t in history.select([*trials, better])}


def _search(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict]:
    """A small ask/tell search with 3 trials in flight (constant_liar sees running ones)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    running, asked = [], []
    for i in range(n):
        t = study.ask()
        x = t.suggest_float("x", 0.0, 1.0)
        arch = t.suggest_categorical("arch", ["a", "b", "c"])
        asked.append(t.params)
        running.append((t, x, arch))
        if len(running) == 3 or i == n - 1:
            for tr, x_, a_ in running:
                tr.report(x_, 1)
                if a_ == "c":
                    study.tell(tr, state=TrialState.PRUNED)
                else:
                    study.tell(tr, -abs(x_ - 0.3) + (a_ == "b") * 0.1)
            running = []
    return asked


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_unbounded_is_optunas_tpe_and_a_bound_changes_what_it_models() -> None:
    args = {"seed": 3, "n_startup_trials": 5, "constant_liar": True, "multivariate": True,
            "group": True}
    plain = _search(optuna.samplers.TPESampler(**args), 45)
    assert _search(BoundedTPESampler(max_history=None, **args), 45) == plain
    assert _search(BoundedTPESampler(max_history=100, **args), 45) == plain  # under the bound
    # past the bound the suggestions differ: TPE models a different set of trials
    small = optuna.samplers.TPESampler(**args)
    assert _search(small, 130) != _search(BoundedTPESampler(max_history=100, **args), 130)
