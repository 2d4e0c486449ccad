"""The live trial table ``raygym search`` prints instead of Ray's raw log stream.

:class:`LiveTrials` keeps the latest result of each trial and draws a small table (counts,
the best score so far, the last trials); :class:`LiveTrialsCallback` feeds it from Tune's
driver loop. Tune pickles its callbacks with the experiment state, so the callback drops the
table (a terminal view of this driver) when it is pickled: a restored copy feeds nothing.
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from raygym.config import ExperimentConfig
from raygym.search.time_budget import TimeBudget
from raygym.train.contract import diverged, finished

REFRESH_S = 2.0  # the longest the table waits for a redraw while trials run
# the shortest: a redraw walks every trial, so one per result grew as trials x results
# (1,000 trials: ~1 s of driver CPU per 100 results). At 2 a second, drawing was still a
# sixth of the driver loop's busy time with 32 trials reporting 30 results a second (py-spy,
# bench_scale, 2026-12-04); once a second is as live to a reader.
MIN_REDRAW_S = 1.0
SHOWN_TRIALS = 12  # the newest trials get a row each; the caption counts them all


class LiveTrials:
    """Results by trial id and the table drawn from them; ``live``: the rich view drawing it
    (None: results are kept but not drawn)."""

    def __init__(self, config: ExperimentConfig, console: Console, total: int,
                 time_budget: TimeBudget | None = None) -> None:
        self.config, self.console, self.total = config, console, total
        self.time_budget = time_budget  # its time left is in the title
        self.results: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.last = 0.0
        self.dirty = False  # results arrived since the last redraw
        self.started = time.monotonic()
        # for the log lines, kept as results arrive: a walk over every trial per ended trial
        # would grow as trials^2 on the driver (seeded once from Tune's trials: a resume)
        self.best: tuple[float, str] | None = None
        self.ended: int | None = None
        self.callback = LiveTrialsCallback(self)

    def keep(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep what the table shows of a trial's latest result (not all of it: a 1,000-trial
        search would hold every trial's full last result in the driver)."""
        metric = self.config.search.metric
        self.results[trial_id] = {k: result[k] for k in (
            metric, f"best_{metric}", "epoch", "val_loss", "stop_reason", "gflop_per_s",
            "peak_share") if k in result}
        self.dirty = True
        self.best = self._better(self.best, self.results[trial_id], trial_id)

    def refresh(self, trials: list, *, force: bool = False) -> None:
        """Redraw, at most every ``MIN_REDRAW_S`` seconds (wall) unless ``force``."""
        if not force and time.monotonic() - self.last < MIN_REDRAW_S:
            self.dirty = True
            return
        self.last = time.monotonic()
        self.dirty = False
        if self.live is not None:
            self.live.update(self.table(trials), refresh=True)

    def log_end(self, trial: Any, trials: list, *, error: bool = False) -> None:
        """One plain line per ended trial where the console is not a terminal (a log file,
        ``nohup``, a cluster job): the live table draws nothing there until the search ends,
        so a log would show nothing for hours."""
        if self.console.is_terminal:
            return
        metric = self.config.search.metric
        r = self._last(trial)
        epoch = r.get("epoch", "?")
        scheduler = self.config.search.scheduler
        if error:
            how = f"failed at epoch {epoch}"
        elif diverged(r):
            how = f"diverged (the loss is not finite) at epoch {epoch}"
        elif finished(r):
            how = f"{r['stop_reason']} after {epoch} epochs"
        else:
            how = (f"stopped by {scheduler}" if scheduler != "none" else "stopped") + (
                f" at epoch {epoch}")
        v = r.get(f"best_{metric}", r.get(metric))
        score = f": best {metric} {v:.3f}" if isinstance(v, float) else ""
        if self.ended is None:  # the first line: what a restored search had ended already
            self.ended = sum(t.status in ("TERMINATED", "ERROR") and t is not trial
                             for t in trials)
            restored = self._best(trials)
            if restored is not None:
                self.best = self._better(self.best, {f"best_{metric}": restored[0]},
                                         restored[1])
        self.ended += 1
        best_text = f"; best so far {self.best[0]:.3f} ({self.best[1]})" if self.best else ""
        self.console.print(f"[{time.monotonic() - self.started:.0f} s] trial {trial.trial_id} "
                           f"{how}{score}; {self.ended} of {self.total} trials ended"
                           f"{best_text}", highlight=False, soft_wrap=True)

    def _better(self, best: tuple[float, str] | None, result: dict[str, Any], trial_id: str
                ) -> tuple[float, str] | None:
        """``best`` or this result's score (its kept best, else its last), whichever wins."""
        metric = self.config.search.metric
        sign = 1 if self.config.search.mode == "max" else -1
        v = result.get(f"best_{metric}", result.get(metric))
        if isinstance(v, float) and v == v and (best is None or sign * v > sign * best[0]):
            return v, trial_id
        return best

    def _best(self, trials: list) -> tuple[float, str] | None:
        """The best score any of ``trials`` kept so far, and its trial id."""
        best: tuple[float, str] | None = None
        for t in trials:
            best = self._better(best, self._last(t), t.trial_id)
        return best

    def _last(self, trial: Any) -> dict[str, Any]:
        """A trial's last result: this driver's, else what Tune restored (``--resume``: a
        trial that finished before the resume reports nothing to this driver)."""
        return self.results.get(trial.trial_id) or getattr(trial, "last_result", None) or {}

    def table(self, trials: list) -> Table:
        """Tune's ``trials`` (``trial_id``, ``status``) with their last results."""
        metric = self.config.search.metric
        counts: dict[str, int] = {}
        for t in trials:
            status = t.status
            if status == "TERMINATED":
                status = "done" if finished(self._last(t)) else "pruned"
            counts[status] = counts.get(status, 0) + 1
        best = self._best(trials)
        elapsed = time.monotonic() - self.started
        ended = sum(counts.get(k, 0) for k in ("done", "pruned", "ERROR"))
        budget = (f"; {self.time_budget.left_text()}" if self.time_budget
                  and not self.time_budget.reached and ended < self.total else "")
        table = Table(title=f"search {self.config.name}: {len(trials)}/{self.total} trials, "
                            f"{elapsed:.0f} s{budget}", expand=False)
        for col in ("trial", "status", "epoch", metric, "val_loss", "GFLOP/s (peak)"):
            table.add_column(col)
        for t in trials[-SHOWN_TRIALS:]:
            r = self._last(t)
            m = r.get(metric)
            vl = r.get("val_loss")
            table.add_row(t.trial_id, t.status.lower(), str(r.get("epoch", "")),
                          f"{m:.3f}" if isinstance(m, float) else "",
                          f"{vl:.4f}" if isinstance(vl, float) else "", _speed(r))
        summary = ", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
        best_text = f"; best {metric} {best[0]:.3f} ({best[1]})" if best else ""
        table.caption = summary + best_text
        return table


def live_view(console: Console) -> Live:
    """The terminal view :class:`LiveTrials` draws into. It redraws only when the table is
    updated: rich's own 2 Hz refresh thread re-rendered the unchanged table all search long,
    20 % of an idle driver's Python CPU (py-spy, an 8-trial search of 6-s epochs)."""
    return Live(console=console, auto_refresh=False, transient=False)


def _speed(result: dict[str, Any]) -> str:
    """Training GFLOP/s and its share of the device's measured peak: a slow configuration
    (tiny batches, fp32 on a bf16 CPU, a data-bound loop) shows here."""
    flops, share = result.get("gflop_per_s"), result.get("peak_share")
    if not isinstance(flops, float) or flops != flops:
        return ""
    return f"{flops:.0f}" + (f" ({100 * share:.0f} %)" if isinstance(share, float)
                             and share == share else "")


class LiveTrialsCallback(Callback):
    """Feeds one :class:`LiveTrials` from Tune's driver loop."""

    def __init__(self, view: LiveTrials | None = None) -> None:
        self.view = view

    def __getstate__(self) -> dict[str, Any]:
        # the view holds a terminal (rich Live, Console): it stays with this driver
        return {"view": None}

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if self.view is not None:
            self.view.keep(trial.trial_id, result)
            self.view.refresh(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.view is not None:
            self.view.log_end(trial, trials)
            self.view.refresh(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.view is not None:
            self.view.log_end(trial, trials, error=True)
            self.view.refresh(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.view is not None and (self.view.dirty or
                                      time.monotonic() - self.view.last > REFRESH_S):
            self.view.refresh(trials)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.view is not None:  # the final counts, whatever the throttle held back
            self.view.refresh(trials, force=True)
