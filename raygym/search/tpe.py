"""Optuna's TPE with a bounded history, so that a suggestion costs the same at trial 10,000
as at trial 300.

TPE models the finished trials in two groups: the best ``gamma(n)`` (at most 25 with
Optuna's default gamma) and the rest. Each suggestion walks every trial of the study (the
search-space groups, the split, the Parzen estimators), so its cost grows linearly with the
study: in a 1,000-trial search at 32 trials at once it doubled (``bench/RESULTS.md``,
bench_scale). :class:`BoundedTPESampler` hands TPE at most ``max_history`` finished trials
(:class:`BoundedHistory`): the best quarter of them by value (complete trials) and the best
quarter by how far they got (pruned trials, Optuna's own order for them), so the good group is
the one the whole study would give, and the most recent ones for the rest; every RUNNING trial
stays (``constant_liar`` counts them as bad guesses). A study no larger than ``max_history``
is modelled whole.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from raygym.compat import SamplerStudyView


def _goodness(trial: FrozenTrial, sign: float) -> tuple[float, ...]:
    """How good a finished trial is for TPE, larger is better: a complete trial by its value;
    a pruned one by the furthest step it reached, then its value there (TPE's own order);
    NaN is worst."""
    if trial.state == TrialState.COMPLETE:
        value = trial.value
        return (-math.inf,) if value is None or math.isnan(value) else (sign * value,)
    if not trial.intermediate_values:
        return (-math.inf, -math.inf)
    step, value = max(trial.intermediate_values.items())
    return (float(step), -math.inf if math.isnan(value) else sign * value)


class BoundedHistory:
    """The finished trials a bounded TPE models, kept up to date one new trial at a time.

    Past ``max_history`` finished trials it keeps the ``max_history // 4`` best COMPLETE ones,
    the ``max_history // 4`` best PRUNED ones (furthest step, then value) and the most recent
    finished ones (highest numbers) for the rest. A finished trial never changes, so each is
    ranked once, when first seen: a query costs one pass over the trials plus O(log
    max_history) per newly finished trial, whatever the size of the study.
    """

    def __init__(self, max_history: int, direction: optuna.study.StudyDirection) -> None:
        self.max_history = max_history
        self._sign = 1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        self._best = max_history // 4
        self._seen: set[int] = set()
        # min-heaps: the worst of the kept ones on top, dropped when a better one arrives
        self._complete: list[tuple[tuple[float, ...], int]] = []
        self._pruned: list[tuple[tuple[float, ...], int]] = []
        self._recent: list[int] = []
        self._kept: set[int] | None = None

    def _add(self, trial: FrozenTrial) -> None:
        self._seen.add(trial.number)
        self._kept = None
        heap = self._complete if trial.state == TrialState.COMPLETE else self._pruned
        heapq.heappush(heap, (_goodness(trial, self._sign), trial.number))
        if len(heap) > self._best:
            heapq.heappop(heap)
        heapq.heappush(self._recent, trial.number)
        if len(self._recent) > self.max_history:
            heapq.heappop(self._recent)

    def select(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """``trials`` (sorted by number) with the finished ones outside the kept set left
        out; unchanged while no more than ``max_history`` trials have finished."""
        for trial in trials:
            if trial.number not in self._seen and trial.state in _MODELLED:
                self._add(trial)
        if len(self._seen) <= self.max_history:
            return trials
        if self._kept is None:  # the bests, then the most recent up to max_history
            kept = {n for _, n in self._complete} | {n for _, n in self._pruned}
            for number in sorted(self._recent, reverse=True):
                if len(kept) >= self.max_history:
                    break
                kept.add(number)
            self._kept = kept
        kept = self._kept
        return [t for t in trials if t.number in kept or t.state not in _MODELLED]


_MODELLED = (TrialState.COMPLETE, TrialState.PRUNED)


class BoundedTPESampler(optuna.samplers.TPESampler):
    """``TPESampler`` that models at most ``max_history`` finished trials (module docstring);
    every other argument is TPESampler's. ``max_history=None``: the whole study."""

    def __init__(self, *, max_history: int | None = None, **tpe_args: Any) -> None:
        super().__init__(**tpe_args)
        self.max_history = max_history
        self._history: BoundedHistory | None = None

    def _view(self, study: optuna.Study) -> Any:
        if self.max_history is None:
            return SamplerStudyView(study, lambda trials: trials)
        if self._history is None:
            self._history = BoundedHistory(self.max_history, study.direction)
        return SamplerStudyView(study, self._history.select)

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
