"""A search's TensorBoard event files: flushed at most every ``flush_every_s`` per trial,
complete when the writer closes (the Tune side: ``tests/test_compat.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tensorboardX import SummaryWriter

from raygym.search.event_files import (
    AUTO_LOGGERS_OFF_ENV,
    SearchEventFiles,
    ThrottledFlush,
    event_file_callbacks,
)


def test_flushes_are_throttled_and_close_writes_every_event(
        tmp_path: Path,
        tensorboard_scalars: Callable[[Path], dict[str, list[tuple[int, float]]]]) -> None:
    writer = ThrottledFlush(SummaryWriter(str(tmp_path), flush_secs=30), every_s=60.0)
    start = writer.flushed
    for step in (1, 2, 3):
        writer.add_scalar("val_mean_iou", 0.1 * step, step)  # the writer's own method
        writer.flush()
    assert writer.flushed == start  # none of them within the minute
    writer.flushed = time.monotonic() - 60.0
    writer.flush()
    assert writer.flushed > start
    writer.close()
    assert [step for step, _ in tensorboard_scalars(tmp_path)["val_mean_iou"]] == [1, 2, 3]


def test_no_event_files_where_the_user_turned_tunes_loggers_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    [callback] = event_file_callbacks()
    assert isinstance(callback, SearchEventFiles)
    monkeypatch.setenv(AUTO_LOGGERS_OFF_ENV, "1")
    assert event_file_callbacks() == []
