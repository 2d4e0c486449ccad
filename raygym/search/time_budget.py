"""``search.time_budget``: one run of ``raygym search`` that stops itself after so much wall
time, as a Ctrl-C stops it.

The budget counts from the start of the command (a dataset prepared on first use, Ray's start
and the search), not from its first trial: it is the time the user has, a night on a cluster.
When it is spent, Tune saves its state and returns; the search then writes its leaderboard and
best models from what finished, trials part-way keep their last epoch's checkpoint, and
``--resume`` goes on with them (each run of the command has its own budget; changing it is
not a change of the search).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from raygym.config import ExperimentConfig
from raygym.config.run import duration_text
from raygym.errors import ConfigError


def check_time_budget(config: ExperimentConfig, file: str | Path | None = None) -> None:
    """Refuse, with one line, a ``search.time_budget`` that this driver could not keep: Tune
    stops a run only from the thread and process that run it."""
    if config.search.time_budget is None:
        return
    if config.resources.through_ray_client:
        raise ConfigError("cannot be kept through Ray Client: the search's Tuner runs on the "
                          "cluster, out of raygym's reach", key="search.time_budget", file=file,
                          fix="run raygym search on a cluster node (address: auto), or remove "
                          "search.time_budget")
    if threading.current_thread() is not threading.main_thread():
        raise ConfigError("is kept only by a search run from the main thread (Tune stops a run "
                          "from there alone)", key="search.time_budget", file=file,
                          fix="call raygym.api.run_search from the main thread, or remove "
                          "search.time_budget")


@dataclass
class TimeBudget:
    """``seconds`` of wall time from ``started`` (``time.monotonic()``); ``reached``: set
    once the search was stopped for it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    reached: bool = False

    @property
    def stop_at(self) -> float:
        return self.started + self.seconds

    def left(self) -> float:
        """Seconds left (0 when spent)."""
        return max(0.0, self.stop_at - time.monotonic())

    def text(self) -> str:
        """``8h``: the budget as the user would write it."""
        return duration_text(self.seconds)

    def left_text(self) -> str:
        """For the live table's title: ``stops in 1h02m``."""
        return f"stops in {duration_text(self.left())} (time budget {self.text()})"
