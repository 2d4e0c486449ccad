"""Ctrl-C in the middle of ``raygym search`` (SIGINT to its process group, as a terminal sends
it): Tune catches it, saves its state and returns as if the search were done. raygym must say
it was interrupted (exit 130, one line on how to go on), mark the trials it cut short
``interrupted`` (not pruned), and ``--resume`` must then finish the search.

Trials replay a hand-made curve table at a known pace (``RAYGYM_REPLAY_TIME_SCALE``), so the
interrupt lands mid-trial without training anything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from . import OWN_RAY, kill_group, read_leaderboard, reap, start_search, write_space
from .curve_tables import SPACE

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 3, 8


def _search(space: Path, table: Path, marker: str, log: Path, *extra: str) -> subprocess.Popen:
    # each recorded epoch says 1 s: 0.5 s per replayed epoch, 4 s per trial
    return start_search(space, marker, "--replay", str(table), *extra, log=log,
                        env={"RAYGYM_REPLAY_TIME_SCALE": "0.5"})


def _stop(proc: subprocess.Popen, marker: str) -> None:
    """Kill what is left of the search's process group; wait for its Ray processes."""
    kill_group(proc)
    reap(marker)


def _epochs_reported(exp: Path) -> list[int]:
    return sorted(len(p.read_text().splitlines()) for p in exp.glob("*/result.json"))


@pytest.mark.timeout(600)
def test_ctrl_c_marks_the_search_interrupted_and_resume_finishes_it(
        grid_table: Path, tmp_path: Path) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["train"]["patience"] = EPOCHS  # every trial runs all its epochs
    sections["search"].update(num_samples=TRIALS, max_concurrent=1, scheduler="none",
                              repeat_top=0, results_dir=str(tmp_path / "results"))
    sections["resources"] = dict(OWN_RAY)
    space = write_space(tmp_path / "space.yaml", sections)
    out = tmp_path / "results" / "replay-replay"
    exp = out / "ray" / "replay-replay"
    marker = uuid.uuid4().hex
    proc = _search(space, grid_table, marker, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # one trial done, the next one begun
            # (its result file is there from its start; waiting for its epochs to show too
            # missed the window when Tune flushed them late: CI at 60069d2 saw the search end)
            epochs = _epochs_reported(exp)
            if len(epochs) >= 2 and epochs[-1] == EPOCHS:
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.2)
        else:
            pytest.fail("the search never reached a second trial")
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        proc.wait(timeout=120)
    finally:
        _stop(proc, marker)
    log = (tmp_path / "first.log").read_text()
    assert proc.returncode == 130, log[-3000:]
    words = " ".join(log.split())
    # result files lag the trials: the Ctrl-C may land after the second trial's end, between
    # trials, where no trial is cut short and the search is still interrupted
    cut = re.search(r"interrupted: ([01]) trial\(s\) cut short", words)
    assert cut, log[-3000:]
    # the user's own command line, --replay and all, to copy
    assert f"raygym search {space} --replay {grid_table} --resume" in words
    saved = json.loads((out / "search.json").read_text())
    assert saved["status"] == "interrupted"
    statuses = sorted(r["status"] for r in read_leaderboard(out))
    if cut.group(1) == "1":
        assert "interrupted" in statuses and "completed" in statuses
    else:
        assert set(statuses) == {"completed"} and len(statuses) < TRIALS
    assert not any("pruned" in s or s == "stopped" for s in statuses)

    marker = uuid.uuid4().hex
    proc = _search(space, grid_table, marker, tmp_path / "resume.log", "--resume")
    try:
        proc.wait(timeout=300)
    finally:
        _stop(proc, marker)
    log = (tmp_path / "resume.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    board = read_leaderboard(out)
    assert len(board) == TRIALS and {r["status"] for r in board} == {"completed"}
    assert json.loads((out / "search.json").read_text())["status"] == "finished"
