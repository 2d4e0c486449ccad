"""TensorBoard event files of a search's trials, as Tune writes them, flushed less often.

Tune's ``TBXLoggerCallback`` flushes a trial's event file after every result, and
tensorboardX's flush fsyncs it: one pause of the driver loop per reported epoch, which every
running trial waits on at its next report (``bench/bench_scale.py``: 32 trials of 1-s epochs
report ~30 times a second). :class:`SearchEventFiles` is that callback with each trial's
writer flushed at most every :data:`FLUSH_EVERY_S` per trial (TensorBoard itself reloads
every 5 s) and always when the trial ends; between flushes, tensorboardX keeps the events in
its queue and writes them from its own thread. Tune adds no second TensorBoard logger when
the search brings this one.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from raygym.compat import tbx_trial_writers

FLUSH_EVERY_S = 5.0
AUTO_LOGGERS_OFF_ENV = "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"  # "1": no file loggers at all


class ThrottledFlush:
    """A tensorboardX ``SummaryWriter`` whose ``flush`` runs at most every ``every_s``
    seconds (wall); everything else, ``close`` included (which flushes), is the writer's."""

    def __init__(self, writer: Any, every_s: float) -> None:
        self.writer, self.every_s = writer, every_s
        self.flushed = time.monotonic()

    def flush(self) -> None:
        now = time.monotonic()
        if now - self.flushed >= self.every_s:
            self.writer.flush()
            self.flushed = now

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


class SearchEventFiles(TBXLoggerCallback):
    """Tune's TensorBoard logger with each trial's flushes throttled (module docstring)."""

    def __init__(self, flush_every_s: float = FLUSH_EVERY_S) -> None:
        super().__init__()
        self.flush_every_s = flush_every_s

    def log_trial_start(self, trial: Any) -> None:
        super().log_trial_start(trial)
        writers = tbx_trial_writers(self)
        writers[trial] = ThrottledFlush(writers[trial], self.flush_every_s)


def event_file_callbacks() -> list[Any]:
    """``[SearchEventFiles()]``, or nothing where the user turned Tune's file loggers off
    (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``) or tensorboardX is missing."""
    if os.environ.get(AUTO_LOGGERS_OFF_ENV, "0") == "1":
        return []
    try:
        return [SearchEventFiles()]
    except ImportError:  # Tune then warns that it cannot add its own either
        return []
