"""Kill ``raygym search`` mid-run (SIGKILL to its process group: no clean-up code runs), check
what the dead run left behind, then ``--resume`` it to completion."""

from __future__ import annotations

import copy
import glob
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raygym.search.study_storage import STUDY_FILE, open_study_storage

from . import (
    OWN_RAY,
    kill_group,
    one_error_line,
    processes_with_env,
    read_leaderboard,
    reap,
    run_cli,
    search_sections,
    shared_prepared,
    start_search,
    write_space,
)

pytestmark = pytest.mark.slow
NAME = "s2_resume"
NUM_SAMPLES = 3
MAX_EPOCHS = 2


def _registered_checkpoint(exp: Path) -> dict[str, tuple[str, str | None]]:
    """``{trial_id: (status, path of the checkpoint Tune registered or None)}`` from Tune's
    newest experiment snapshot, what --resume reads (the path from the trial's pickled
    checkpoint manager)."""
    import pickle

    files = sorted(glob.glob(str(exp / "experiment_state-*.json")), key=os.path.getmtime)
    if not files:
        return {}
    try:
        data = json.loads(Path(files[-1]).read_text())
    except (OSError, json.JSONDecodeError):  # being replaced right now
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for trial_json, runtime_json in data.get("trial_data", []):
        trial, runtime = json.loads(trial_json), json.loads(runtime_json)
        manager = runtime.get("checkpoint_manager")
        latest = (pickle.loads(bytes.fromhex(manager["value"])).latest_checkpoint_result
                  if isinstance(manager, dict) and "value" in manager else None)
        out[trial["trial_id"]] = (trial["status"],
                                  None if latest is None else latest.checkpoint.path)
    return out


def _resume(space: Path, log_file: Path) -> str:
    """``raygym search SPACE --resume`` in its own process, to its end; returns its output."""
    marker = uuid.uuid4().hex
    proc = start_search(space, marker, "--resume", log=log_file)
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            kill_group(proc)
        reap(marker)
    log = log_file.read_text()
    assert proc.returncode == 0, log[-3000:]
    return log


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory,
          make_s2_config: Callable[..., dict[str, Any]]) -> Path:
    tmp = tmp_path_factory.mktemp("resume")
    s = search_sections(make_s2_config, shared_prepared(tmp_path_factory), tmp / "results",
                        NAME, num_samples=NUM_SAMPLES, max_concurrent=1, scheduler="none",
                        max_failures=0)
    s["train"]["max_epochs"] = MAX_EPOCHS
    s["resources"].update(OWN_RAY)
    return write_space(tmp / "resume.yaml", s)


def _driver_state_whole(exp: Path) -> bool:
    """Tune's driver state files are whole: a kill did not land inside one of Tune's saves,
    which rewrite them in place (after such a kill ``--resume`` rightly refuses: tested
    below)."""
    import pickletools

    try:
        for f in exp.glob("experiment_state-*.json"):
            json.loads(f.read_text())
        for f in exp.glob("searcher-state-*.pkl"):
            # the opcodes to STOP, building no object (a cut-short pickle runs out first)
            for _ in pickletools.genops(f.read_bytes()):
                pass
    except Exception:  # noqa: BLE001 - cut short, whatever the error
        return False
    return True


@pytest.mark.timeout(900)
def test_kill_then_resume(space: Path, tmp_path: Path) -> None:
    out = space.parent / "results" / NAME
    exp = out / "ray" / NAME
    for _ in range(3):
        finished = _kill_mid_search(space, out, exp, tmp_path)
        if _driver_state_whole(exp):
            break
        shutil.rmtree(out)  # the kill cut a save short (a busy machine): kill another run
    else:
        pytest.fail("three kills in a row landed inside a save of Tune's state")
    before = {t: (exp / t / "result.json").read_text() for t in finished}
    assert all(len(text.splitlines()) == MAX_EPOCHS for text in before.values())

    _resume(space, tmp_path / "resume.log")
    _check_resumed(out, exp, finished, before)


def _kill_mid_search(space: Path, out: Path, exp: Path, tmp_path: Path) -> list[str]:
    """Start the search in its own process and SIGKILL it mid-search: one trial finished and
    saved as such, the next one under way; the trials finished by then."""
    marker = uuid.uuid4().hex
    proc = start_search(space, marker, log=tmp_path / "first.log")
    finished: list[str] = []
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            states = {t: status for t, (status, _) in _registered_checkpoint(exp).items()}
            finished = [t for t, s in states.items() if s == "TERMINATED"]
            # mid-search: one trial done and saved as done, the next one under way
            if finished and any(s == "RUNNING" for s in states.values()):
                break
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.5)
        assert finished, "no trial finished in time"
        assert len(finished) < NUM_SAMPLES
        assert processes_with_env(marker), "the search runs Ray processes of its own"
    finally:
        kill_group(proc)
        killed = reap(marker)
    assert proc.returncode == -signal.SIGKILL
    # The driver's local Ray dies with it (raylet and GCS share its process group; workers
    # exit when their raylet goes). Anything still there was killed by pid in reap().
    assert not killed, f"Ray processes outlived the killed driver: {killed}"
    assert not processes_with_env(marker)
    assert json.loads((out / "search.json").read_text())["status"] == "running"
    assert not (out / "leaderboard.csv").exists()
    return finished


def _check_resumed(out: Path, exp: Path, finished: list[str], before: dict[str, str]) -> None:
    board = read_leaderboard(out)
    assert len(board) == NUM_SAMPLES, "the right trial count: none lost, none added"
    assert {r["status"] for r in board} == {"completed"}
    assert all(int(r["epochs"]) == MAX_EPOCHS for r in board)
    ids = {r["trial_id"] for r in board}
    assert set(finished) <= ids
    for t in finished:  # not run again: not one more result line
        assert (exp / t / "result.json").read_text() == before[t], t
    saved = json.loads((out / "search.json").read_text())
    assert saved["status"] == "finished" and saved["summary"]["trials"] == NUM_SAMPLES
    assert saved["summary"]["total_epochs"] == NUM_SAMPLES * MAX_EPOCHS
    assert (out / "best").is_dir() and len(list((out / "best").iterdir())) == 2

    import optuna

    study = optuna.load_study(study_name=NAME, storage=open_study_storage(out / STUDY_FILE))
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == NUM_SAMPLES


def test_resume_with_another_space_is_refused(space: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    """Runs after the test above (file order): the folder holds a finished search."""
    out = space.parent / "results" / NAME
    if not (out / "search.json").exists():
        pytest.skip("needs the search of test_kill_then_resume")
    import yaml

    sections = yaml.safe_load(space.read_text())
    other = copy.deepcopy(sections)
    other["model"]["filters"] = {"choice": [2, 8]}
    other_file = write_space(tmp_path / "other.yaml", other)
    before = (out / "search.json").read_text()
    code, err = run_cli(["search", str(other_file), "--resume"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "different space" in line and "refusing" in line
    assert (out / "search.json").read_text() == before


def test_resume_with_cut_short_driver_state_is_refused(space: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Runs after test_kill_then_resume (file order). A searcher state cut short (a driver
    killed while Tune copied it to storage, in place) is refused
    with one line naming it; Tune would restart the search beside the trials already run."""
    exp = space.parent / "results" / NAME / "ray" / NAME
    states = sorted(exp.glob("searcher-state-*.pkl"))
    if not states:
        pytest.skip("needs the search of test_kill_then_resume")
    newest, whole = states[-1], states[-1].read_bytes()
    record = (exp.parent.parent / "search.json").read_text()
    try:
        newest.write_bytes(whole[: len(whole) // 2])
        code, err = run_cli(["search", str(space), "--resume"], capsys)
    finally:
        newest.write_bytes(whole)
    assert code == 2
    line = one_error_line(err)
    assert str(newest) in line and "cut short" in line and "another `name`" in line
    assert (exp.parent.parent / "search.json").read_text() == record


def _state_epoch(folder: Path) -> int:
    return int(json.loads((folder / "state.json").read_text())["epoch"])


@pytest.mark.timeout(900)
def test_resume_when_tune_had_replaced_the_saved_checkpoint(
        tmp_path_factory: pytest.TempPathFactory,
        make_s2_config: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    """Tune deletes a trial's checkpoint (num_to_keep=1) when it registers the next one and
    writes that to its snapshot only at the next sync: a driver killed in between leaves a
    snapshot naming a deleted checkpoint. The resumed trial goes on from the newest complete
    checkpoint of its folder instead of failing. The race is made certain here: after the
    kill, the registered checkpoint is moved to the next checkpoint's name."""
    name, max_epochs = "s2_replaced_ckpt", 4
    s = search_sections(make_s2_config, shared_prepared(tmp_path_factory), tmp_path / "results",
                        name, num_samples=1, max_concurrent=1, scheduler="none", max_failures=0)
    s["train"]["max_epochs"] = max_epochs
    s["resources"].update(OWN_RAY)
    space = write_space(tmp_path / "replaced.yaml", s)
    out = tmp_path / "results" / name
    exp = out / "ray" / name
    marker = uuid.uuid4().hex
    proc = start_search(space, marker, log=tmp_path / "first.log")
    registered: Path | None = None
    try:
        deadline = time.monotonic() + 420
        while registered is None:
            for status, path in _registered_checkpoint(exp).values():
                if status == "RUNNING" and path and Path(path, "state.json").is_file() \
                        and 1 <= _state_epoch(Path(path)) <= max_epochs - 2:
                    registered = Path(path)
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint part-way in time"
            time.sleep(0.1)
    finally:
        kill_group(proc)
        reap(marker)
    trial_dir = registered.parent
    index = int(registered.name.split("_")[-1])
    newer = trial_dir / f"checkpoint_{index + 1:06d}"
    if registered.is_dir() and not newer.exists():
        registered.rename(newer)  # what Tune's next registration would have left
    elif registered.is_dir():
        shutil.rmtree(registered)
    assert not registered.exists()
    resumed_from = max(_state_epoch(p) for p in trial_dir.glob("checkpoint_*")
                       if (p / "state.json").is_file())

    log = _resume(space, tmp_path / "resume.log")
    assert "had been replaced by a newer checkpoint" in " ".join(log.split()), log[-3000:]

    [row] = read_leaderboard(out)
    assert row["status"] == "completed" and not row["error"], row["error"]
    assert int(row["epochs"]) == max_epochs
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    restarts = [r for i, r in enumerate(rows) if i and r["iterations_since_restore"] == 1]
    assert len(restarts) == 1
    # it went on from the checkpoint it found, and the schedulers' clock says so
    assert restarts[0]["epoch"] == restarts[0]["training_iteration"] == resumed_from + 1
    assert rows[-1]["epoch"] == rows[-1]["training_iteration"] == max_epochs
    # Tune's bookkeeping came out whole: one checkpoint left, the last one
    [last] = [p for p in trial_dir.glob("checkpoint_*")]
    assert _state_epoch(last) == max_epochs


def test_a_mended_trial_keeps_only_its_final_checkpoint(tmp_path: Path) -> None:
    """After a mended restore (the snapshot's checkpoint had been replaced), the newer
    checkpoint the trial resumed from is never registered with Tune, so num_to_keep never
    deletes it: once the trial finished, raygym removes it beside the final one. Folders
    that are not raygym's checkpoints, other trials and failed trials are left alone."""
    from ray.tune import Checkpoint, Result

    from raygym.search.tune import drop_replaced_checkpoints

    exp = tmp_path / "exp"

    def trial(name: str, *folders: str, state: bool = True) -> Path:
        for folder in folders:
            (exp / name / folder).mkdir(parents=True)
            if state:
                (exp / name / folder / "state.json").write_text('{"epoch": 1}')
        return exp / name

    mended = trial("a", "checkpoint_000007", "checkpoint_000008")  # final 7, resumed from 8
    (mended / "checkpoint_000009").mkdir()  # not a raygym checkpoint: no state.json
    failed = trial("b", "checkpoint_000001", "checkpoint_000003")
    other = trial("c", "checkpoint_000002", "checkpoint_000004")  # not mended
    grid = [Result(metrics={}, checkpoint=Checkpoint(str(mended / "checkpoint_000007")),
                   error=None, path=str(mended)),
            Result(metrics={}, checkpoint=Checkpoint(str(failed / "checkpoint_000001")),
                   error=RuntimeError("boom"), path=str(failed)),
            Result(metrics={}, checkpoint=Checkpoint(str(other / "checkpoint_000002")),
                   error=None, path=str(other))]
    removed = drop_replaced_checkpoints(
        grid, [str(mended / "checkpoint_000006"), str(failed / "checkpoint_000000")], str(exp))
    assert removed == [str(mended / "checkpoint_000008")]
    assert sorted(p.name for p in mended.iterdir()) == ["checkpoint_000007", "checkpoint_000009"]
    assert len(list(failed.iterdir())) == 2 and len(list(other.iterdir())) == 2
    assert drop_replaced_checkpoints(grid, [], str(exp)) == []
