"""The live trial table: fed by its Tune callback, counts and best score, pickling."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from raygym.config import validate_experiment
from raygym.search.live_table import LiveTrials, LiveTrialsCallback, live_view
from raygym.train.contract import DIVERGED


@dataclass
class _Trial:
    """What the table reads of a Tune ``Trial``."""

    trial_id: str
    status: str


def _view(mode: str = "max") -> LiveTrials:
    config = validate_experiment({"name": "live", "data": {
        "images": "/x", "labels": "/y", "classes": ["a", "b"], "target_size": 32},
        "search": {"mode": mode, "metric": "val_mean_iou"}})
    return LiveTrials(config, Console(file=io.StringIO()), total=4)


def _text(view: LiveTrials, trials: list[_Trial]) -> str:
    console = Console(file=io.StringIO(), width=120)
    console.print(view.table(trials))
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_callback_feeds_the_table() -> None:
    view = _view()
    trials = [_Trial("a", "RUNNING"), _Trial("b", "RUNNING"), _Trial("c", "PENDING")]
    results: list[dict[str, Any]] = [
        {"epoch": 2, "val_mean_iou": 0.41, "best_val_mean_iou": 0.45, "val_loss": 0.9,
         "stop_reason": "completed"},
        {"epoch": 1, "val_mean_iou": 0.30, "best_val_mean_iou": 0.30, "val_loss": 1.2,
         "stop_reason": ""},
    ]
    for trial, result in zip(trials, results, strict=False):
        view.callback.on_trial_result(0, trials, trial, result)
    trials[0].status = trials[1].status = "TERMINATED"  # a finished, b stopped by ASHA
    text = _text(view, trials)
    assert "search live: 3/4 trials" in text
    assert "pending 1, done 1, pruned 1" in text  # Tune's statuses, then done / pruned
    assert "best val_mean_iou 0.450 (a)" in text  # the kept epoch's score, not the last
    assert "0.410" in text and "1.2000" in text


@dataclass
class _RestoredTrial(_Trial):
    """A trial Tune restored at --resume: its last result, none sent to this driver."""

    last_result: dict[str, Any]


def test_a_trial_finished_before_a_resume_counts_as_done() -> None:
    view = _view()
    trials = [_RestoredTrial("a", "TERMINATED", {"epoch": 9, "stop_reason": "early-stopped",
                                                 "best_val_mean_iou": 0.7}),
              _RestoredTrial("b", "TERMINATED", {"epoch": 2, "stop_reason": ""})]
    text = _text(view, trials)
    assert "done 1, pruned 1" in text and "best val_mean_iou 0.700 (a)" in text


def test_best_follows_the_mode() -> None:
    view = _view(mode="min")
    trials = [_Trial("a", "RUNNING"), _Trial("b", "RUNNING")]
    view.results = {"a": {"val_mean_iou": 0.2}, "b": {"val_mean_iou": 0.1}}
    assert "best val_mean_iou 0.100 (b)" in _text(view, trials)


def test_callback_pickles_without_the_view() -> None:
    view = _view()
    copy = pickle.loads(pickle.dumps(view.callback))
    assert isinstance(copy, LiveTrialsCallback) and copy.view is None
    copy.on_trial_result(0, [], _Trial("a", "RUNNING"), {"epoch": 1})  # feeds nothing
    assert view.callback.view is view and view.results == {}


def test_redraws_are_throttled_and_the_last_one_is_forced() -> None:
    """A redraw walks every trial: many results in a burst draw once, the rest wait for the
    next step (or the experiment's end), and only the shown keys are kept."""
    view = _view()
    drawn: list[int] = []

    class _Live:
        def update(self, table: Any, refresh: bool = False) -> None:
            assert refresh  # the view does not refresh itself (live_view)
            drawn.append(1)

    view.live = _Live()  # type: ignore[assignment]
    trials = [_Trial(f"t{i}", "RUNNING") for i in range(50)]
    for t in trials:
        view.callback.on_trial_result(0, trials, t, {"epoch": 1, "val_mean_iou": 0.3,
                                                     "train_loss": 1.0, "lr": 1e-3})
    assert len(drawn) == 1 and view.dirty
    assert view.results["t7"] == {"epoch": 1, "val_mean_iou": 0.3}
    view.callback.on_experiment_end(trials)
    assert len(drawn) == 2 and not view.dirty


def test_training_speed_and_its_share_of_the_peak_are_shown() -> None:
    view = _view()
    trials = [_Trial("a", "RUNNING"), _Trial("b", "RUNNING")]
    view.callback.on_trial_result(0, trials, trials[0], {
        "epoch": 1, "val_mean_iou": 0.4, "gflop_per_s": 41.2, "peak_share": 0.234})
    view.callback.on_trial_result(0, trials, trials[1], {"epoch": 1, "val_mean_iou": 0.3})
    text = _text(view, trials)
    assert "GFLOP/s (peak)" in text and "41 (23 %)" in text


def test_the_terminal_view_draws_only_when_the_table_changes() -> None:
    """No refresh thread re-renders an unchanged table; each (throttled) refresh draws it."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    view = _view()
    view.console = console
    with live_view(console) as live:
        assert live.auto_refresh is False
        view.live = live
        trials = [_Trial("t0", "RUNNING")]
        view.callback.on_trial_result(0, trials, trials[0], {"epoch": 3, "val_mean_iou": 0.5})
        assert "t0" in out.getvalue() and "0.500" in out.getvalue()


def test_a_log_file_gets_one_line_per_ended_trial() -> None:
    """Redirected to a file the live table draws nothing until the end; each ended trial is
    one plain line there (and none on a terminal)."""
    view = _view()
    out = io.StringIO()
    view.console = Console(file=out, width=80)
    trials = [_Trial("a", "RUNNING"), _Trial("b", "RUNNING"), _Trial("c", "RUNNING")]
    view.callback.on_trial_result(0, trials, trials[0], {
        "epoch": 9, "val_mean_iou": 0.60, "best_val_mean_iou": 0.62,
        "stop_reason": "early-stopped"})
    view.callback.on_trial_complete(0, trials, trials[0])
    trials[0].status = "TERMINATED"
    view.callback.on_trial_result(0, trials, trials[1], {"epoch": 2, "val_mean_iou": 0.31})
    view.callback.on_trial_complete(0, trials, trials[1])
    trials[1].status = "TERMINATED"
    view.callback.on_trial_error(0, trials, trials[2])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "trial a early-stopped after 9 epochs: best val_mean_iou 0.620; 1 of 4" in lines[0]
    assert "trial b stopped by asha at epoch 2: best val_mean_iou 0.310; 2 of 4" in lines[1]
    assert "best so far 0.620 (a)" in lines[1]
    assert "trial c failed at epoch ?" in lines[2] and "3 of 4 trials ended" in lines[2]
    terminal = io.StringIO()
    view.console = Console(file=terminal, force_terminal=True)
    view.callback.on_trial_complete(0, trials, trials[0])
    assert "trial a" not in terminal.getvalue()


def test_a_diverged_trial_is_logged_as_one() -> None:
    view = _view()
    out = io.StringIO()
    view.console = Console(file=out, width=80)
    trials = [_Trial("a", "RUNNING")]
    view.callback.on_trial_result(0, trials, trials[0], {
        "epoch": 3, "val_mean_iou": float("nan"), "stop_reason": DIVERGED})
    view.callback.on_trial_complete(0, trials, trials[0])
    assert "trial a diverged (the loss is not finite) at epoch 3" in out.getvalue()


def test_the_title_counts_down_the_time_budget_while_trials_run() -> None:
    from raygym.search.time_budget import TimeBudget

    view = _view()
    view.time_budget = TimeBudget(5400.0)
    running = [_Trial("a", "RUNNING"), _Trial("b", "PENDING")]
    assert "stops in 1h29m" in _text(view, running) or "stops in 1h30m" in _text(view, running)
    assert "(time budget 1h30m)" in _text(view, running)
    ended = [_Trial(t, "TERMINATED") for t in "abcd"]  # all 4: no countdown left to show
    assert "stops in" not in _text(view, ended)
    view.time_budget.reached = True  # stopped by it: the final table says no more
    assert "stops in" not in _text(view, running)
