"""Tune's driver state reaches storage whole (a killed upload leaves the old version or the
new one), and a resume refuses state that a restore could not load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ray import cloudpickle

from raygym.errors import DataError
from raygym.search.driver_state import (
    UPLOADING,
    StagingUploads,
    check_driver_state,
    unreadable_state,
)

MIB = 1024 * 1024


def _staging(folder: Path, version: int, size: int = 64) -> Path:
    """A driver staging folder: a trial's logs and three state files, every byte of each
    file ``version``; the snapshot is JSON, as Tune's is."""
    (folder / "trial_a").mkdir(parents=True, exist_ok=True)
    (folder / "trial_a" / "result.json").write_text(f'{{"v": {version}}}\n')
    for name in ("searcher-state-s.pkl", "search_gen_state-s.json"):
        (folder / name).write_bytes(bytes([version]) * size)
    (folder / "experiment_state-s.json").write_text(
        json.dumps({"v": version, "pad": "x" * size}))
    return folder


def test_upload_copies_logs_and_replaces_each_state_file(tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    dest = tmp_path / "storage" / "exp"
    fs, upload = pafs.LocalFileSystem(), StagingUploads()
    for version in (1, 2):
        upload(str(_staging(tmp_path / f"staging{version}", version)), fs, str(dest))
        assert (dest / "trial_a" / "result.json").read_text() == f'{{"v": {version}}}\n'
        assert (dest / "searcher-state-s.pkl").read_bytes() == bytes([version]) * 64
        assert json.loads((dest / "experiment_state-s.json").read_text())["v"] == version
    assert not [p for p in dest.iterdir() if p.name.endswith(UPLOADING)]
    assert sorted(p.name for p in dest.iterdir()) == [
        "experiment_state-s.json", "search_gen_state-s.json", "searcher-state-s.pkl",
        "trial_a"]


def test_upload_copies_every_log_through_links_and_pickles_small(tmp_path: Path) -> None:
    import pyarrow.fs as pafs

    staging = _staging(tmp_path / "staging", 1)
    (staging / "trial_b" / "deep").mkdir(parents=True)
    (staging / "trial_b" / "deep" / "params.json").write_text("{}")
    dest = tmp_path / "storage" / "exp"
    fs, upload = pafs.LocalFileSystem(), StagingUploads()
    upload(str(staging), fs, str(dest))
    assert (dest / "trial_b" / "deep" / "params.json").read_text() == "{}"
    # the one copy of the trial folders reads them through links beside the staging folder
    links = tmp_path / "raygym_upload_view"
    assert sorted(p.name for p in links.iterdir() if not p.name.startswith(".")) == [
        "trial_a", "trial_b"]
    assert all(p.is_symlink() for p in links.iterdir())
    # every log is copied at every sync, as Ray copies them; a trial folder gone from the
    # staging folder loses its link, not its copy on storage
    (dest / "trial_b" / "deep" / "params.json").unlink()
    with (staging / "trial_a" / "result.json").open("a") as log:
        log.write('{"v": 3}\n')
    shutil.rmtree(staging / "trial_b")
    (staging / "trial_c").mkdir()
    (staging / "trial_c" / "result.json").write_text("{}\n")
    upload(str(staging), fs, str(dest))
    assert (dest / "trial_a" / "result.json").read_text() == '{"v": 1}\n{"v": 3}\n'
    assert (dest / "trial_c" / "result.json").read_text() == "{}\n"
    assert sorted(p.name for p in links.iterdir() if not p.name.startswith(".")) == [
        "trial_a", "trial_c"]
    assert (dest / "trial_b").is_dir()
    # Tune pickles the upload into every trial of its snapshot: it must stay small
    assert len(cloudpickle.dumps(upload)) < 200
    copy = cloudpickle.loads(cloudpickle.dumps(upload))
    copy(str(staging), fs, str(dest))  # starts afresh: its links made anew
    assert sorted(p.name for p in links.iterdir() if not p.name.startswith(".")) == [
        "trial_a", "trial_c"]
    assert (staging / "trial_a" / "result.json").read_text() == '{"v": 1}\n{"v": 3}\n'


# The child uploads two staging folders in turn, for ever, through a real Ray syncer as the
# Tune driver does (raygym.compat.tune_state_uploads routes it to StagingUploads).
CHILD = textwrap.dedent("""
    import sys, pyarrow.fs as pafs
    from ray.train._internal.storage import _FilesystemSyncer
    from raygym.compat import tune_state_uploads
    from raygym.search.driver_state import StagingUploads

    a, b, dest = sys.argv[1:]
    syncer = _FilesystemSyncer(storage_filesystem=pafs.LocalFileSystem(), sync_period=0,
                               sync_timeout=120)
    with tune_state_uploads(StagingUploads()):
        n = 0
        while True:
            syncer.sync_up((a, b)[n % 2], dest)
            syncer.wait()
            n += 1
            if n == 2:
                print("uploading", flush=True)
""")


def test_a_killed_upload_leaves_every_state_file_whole(tmp_path: Path) -> None:
    """SIGKILL at random moments of a driver uploading 8 MiB state files over and over: each
    state file on storage is always one version or the other, whole (in place, as Ray copies,
    the files were found cut short)."""
    size = 8 * MIB
    a = _staging(tmp_path / "a", 1, size)
    b = _staging(tmp_path / "b", 2, size)
    dest = tmp_path / "storage" / "exp"
    rng = __import__("random").Random(0)
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(a), str(b), str(dest)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline() == "uploading\n"
            time.sleep(rng.uniform(0.05, 0.5))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        for name in ("searcher-state-s.pkl", "search_gen_state-s.json"):
            data = (dest / name).read_bytes()
            whole = data in (bytes([1]) * size, bytes([2]) * size)
            assert whole, f"{name}: {len(data)} of {size} bytes, {set(data)}"
        assert json.loads((dest / "experiment_state-s.json").read_text())["v"] in (1, 2)


def test_resume_check_names_the_state_a_restore_could_not_load(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    check_driver_state(str(exp))  # nothing saved yet: nothing to refuse
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (exp / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(
        cloudpickle.dumps({"_metric": "val_mean_iou"}))
    check_driver_state(str(exp))
    # a newer session's searcher state, cut short: Tune would read it (the newest name)
    cut = exp / "searcher-state-2026-01-02_00-00-00.pkl"
    cut.write_bytes(b"")
    with pytest.raises(DataError) as info:
        check_driver_state(str(exp))
    assert info.value.file == str(cut)
    assert "cut short" in str(info.value) and "0 bytes" in str(info.value)
    cut.write_bytes(cloudpickle.dumps({"_metric": "val_mean_iou"})[:-7])
    [(path, size, why)] = unreadable_state(str(exp))
    assert path == str(cut) and size > 0 and why
    # a state that loads no more for another reason is not called cut short
    cut.write_bytes(b"craygym_gone_module\nX\n.")  # a class from a module since removed
    with pytest.raises(DataError) as info:
        check_driver_state(str(exp))
    assert "does not load" in str(info.value) and "ModuleNotFoundError" in str(info.value)
    assert "cut short" not in str(info.value)
    (exp / "experiment_state-2026-01-02_00-00-00.json").write_text('{"trial_data": [')
    assert [p for p, _, _ in unreadable_state(str(exp))] == [
        str(exp / "experiment_state-2026-01-02_00-00-00.json"), str(cut)]
