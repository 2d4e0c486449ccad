"""raygym.atomic: write-then-rename files and folders; scratch folders of killed processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raygym.atomic import (
    created_on_success,
    replace_dir,
    scratch_dir,
    sweep_scratch,
    write_text_atomic,
)


def test_write_text_atomic_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "card.json"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_replace_dir_swaps_a_whole_folder(tmp_path: Path) -> None:
    out, tmp = tmp_path / "ds", tmp_path / "ds.tmp"
    out.mkdir()
    (out / "old.parquet").write_text("old")
    tmp.mkdir()
    (tmp / "new.parquet").write_text("new")
    replace_dir(tmp, out)
    assert [p.name for p in out.iterdir()] == ["new.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_scratch_of_a_killed_process_is_swept_by_the_next_one(tmp_path: Path) -> None:
    # a process that makes a scratch folder, then is SIGKILLed inside it
    code = ("import sys, time; from pathlib import Path; from raygym.atomic import scratch_dir\n"
            "with scratch_dir('ckpt', Path(sys.argv[1])) as d:\n"
            "    (d / 'state.json').write_text('{}'); print(d, flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        left = Path(proc.stdout.readline().strip())
        assert left.name.startswith(f"raygym-ckpt-{proc.pid}-") and left.is_dir()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert left.is_dir()  # no clean-up ran

    mine_before = tmp_path / "raygym-ckpt-other"  # not a scratch name: never touched
    mine_before.mkdir()
    with scratch_dir("ckpt", tmp_path) as live:
        assert not left.exists()  # swept: its process is gone
        assert live.name.startswith(f"raygym-ckpt-{os.getpid()}-")
        assert sweep_scratch("ckpt", tmp_path) == []  # a live process's folder stays
        assert live.is_dir()
    assert not live.exists()
    assert mine_before.is_dir()


def _killed_after(code: str, folder: Path) -> int:
    """Run ``code`` (``out`` = ``folder / 'ds'``) in a process, SIGKILL it once it prints
    'ready'; returns its (now dead) pid."""
    head = ("import os, sys, time; from pathlib import Path\n"
            "from raygym.atomic import temp_dir_beside, temp_beside\n"
            "out = Path(sys.argv[1]) / 'ds'\n")
    proc = subprocess.Popen([sys.executable, "-c", head + code + "\nprint('ready', flush=True)"
                             "\ntime.sleep(600)", str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid


def test_a_killed_builders_temp_folder_and_file_are_swept(tmp_path: Path) -> None:
    from raygym.atomic import sweep_temp_files, temp_dir_beside

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "card.json").write_text("previous")
    pid = _killed_after("t = temp_dir_beside(out); (t / 'half.parquet').write_text('x')\n"
                        "temp_beside(out.parent / 'report.html').write_text('<half')", tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert f".ds.tmp-{pid}" in " ".join(left) and f".report.tmp-{pid}.html" in left
    live = temp_dir_beside(tmp_path / "ds")  # the next run
    assert sweep_temp_files(tmp_path) == [tmp_path / f".report.tmp-{pid}.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ds", live.name])
    assert (tmp_path / "ds" / "card.json").read_text() == "previous"


def test_a_kill_between_the_two_renames_restores_the_previous_folder(tmp_path: Path) -> None:
    from raygym.atomic import sweep_beside

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "card.json").write_text("previous")
    # replace_dir's first step (move the old folder aside), then death before the second
    _killed_after("out.rename(out.with_name(f'.ds.old-{time.time_ns()}'))", tmp_path)
    assert not (tmp_path / "ds").exists()
    assert sweep_beside(tmp_path / "ds") == [tmp_path / "ds"]
    assert (tmp_path / "ds" / "card.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_failed_body_removes_the_empty_folders_it_created_and_nothing_else(
        tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    out = mine / "a" / "b"
    with pytest.raises(KeyboardInterrupt), created_on_success(out) as created:
        assert created == [out, out.parent]  # innermost first; "mine" existed
        out.mkdir(parents=True)
        raise KeyboardInterrupt
    assert mine.is_dir() and not (mine / "a").exists()
    # a file written in "a" keeps "a" (and so "mine"); the empty "b" inside it goes
    with pytest.raises(RuntimeError), created_on_success(out):
        out.mkdir(parents=True)
        (out.parent / "kept.txt").write_text("written")
        raise RuntimeError("stopped")
    assert (mine / "a" / "kept.txt").is_file() and not out.exists()
    with created_on_success(mine / "c"):  # a body that succeeds keeps what it made
        (mine / "c").mkdir()
    assert (mine / "c").is_dir()
