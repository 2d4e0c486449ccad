"""Optuna's TPE with a bounded history, so that a suggestion costs the same at trial 10,000
as at trial 300.

TPE models the finished trials in two groups: the best ``gamma(n)`` (at most 25 with
Optuna's default gamma) and the rest. Each suggestion walks every trial of the study (the
search-space groups, the split, the Parzen estimators), so its cost grows linearly with the
study: in a 1,000-trial search at 32 trials at once it doubled (``bench/RESULTS.md``,
bench_scale). :class:`BoundedTPESampler` hands TPE at most ``max_history`` finished trials:
the best quarter of them by value (complete trials) and by how far they got (pruned trials,
Optuna's own order for them), so the good group is the one the whole study would give, and
the most recent ones for the rest; every RUNNING trial stays (``constant_liar`` counts them
as bad guesses). A study no larger than ``max_history`` is modelled whole.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from raygym.compat import SamplerStudyView


def _pruned_order(trial: FrozenTrial, sign: float) -> tuple[float, float]:
    """Sort key of a pruned trial, best first: the furthest step, then its value there (NaN
    last), as TPE ranks pruned trials."""
    if not trial.intermediate_values:
        return (1.0, 0.0)
    step, value = max(trial.intermediate_values.items())
    return (-step, math.inf if math.isnan(value) else -sign * value)


def bounded_history(trials: list[FrozenTrial], max_history: int | None,
                    direction: optuna.study.StudyDirection) -> list[FrozenTrial]:
    """``trials`` (sorted by number) reduced to at most ``max_history`` finished ones plus
    every unfinished one, in number order; unchanged when there are no more than that.

    Kept: the ``max_history // 4`` best COMPLETE trials by value, the ``max_history // 4`` best
    PRUNED ones (furthest step, then value), then the most recent finished trials up to
    ``max_history``.
    """
    finished = [t for t in trials if t.state.is_finished()]
    if max_history is None or len(finished) <= max_history:
        return trials
    sign = 1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    best = max_history // 4
    complete = sorted((t for t in finished if t.state == TrialState.COMPLETE),
                      key=lambda t: -sign * t.value)
    pruned = sorted((t for t in finished if t.state == TrialState.PRUNED),
                    key=lambda t: _pruned_order(t, sign))
    kept = {t.number for t in complete[:best]} | {t.number for t in pruned[:best]}
    for trial in reversed(finished):
        if len(kept) >= max_history:
            break
        kept.add(trial.number)
    return [t for t in trials if t.number in kept or not t.state.is_finished()]


class BoundedTPESampler(optuna.samplers.TPESampler):
    """``TPESampler`` that models at most ``max_history`` finished trials (module docstring);
    every other argument is TPESampler's. ``max_history=None``: the whole study."""

    def __init__(self, *, max_history: int | None = None, **tpe_args: Any) -> None:
        super().__init__(**tpe_args)
        self.max_history = max_history

    def _view(self, study: optuna.Study) -> Any:
        return SamplerStudyView(
            study, lambda trials: bounded_history(trials, self.max_history, study.direction))

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, Any]:
        return super().infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return super().sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return super().sample_independent(self._view(study), trial, param_name,
                                          param_distribution)
