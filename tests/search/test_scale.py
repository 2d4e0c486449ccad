"""Scheduling at scale, small: 32 replayed trials, 8 at a time, on 16 logical CPUs.

``raygym search SPACE --replay TABLE`` in a process of its own (its own local Ray, 16 logical
CPUs), trials replaying the S2 curve table at a known 0.1 s per epoch. Structural checks
only (no timing asserts; speed lives in bench/bench_scale.py): every trial ran and is on the
leaderboard once, the Optuna study holds each trial once with the right state (ASHA-stopped
ones PRUNED), no more than 8 trials ever overlapped, and ASHA-stopped trials gave their CPU
back (a leak would leave later trials pending: the run would time out).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from raygym.search.study_storage import STUDY_FILE, open_study_storage

from . import read_leaderboard, reap, write_space

ROOT = Path(__file__).resolve().parents[2]
TRIALS, CONCURRENCY, EPOCH_S = 32, 8, 0.1


def _table(tmp: Path) -> Path:
    """The S2 curve table with every epoch costing ``EPOCH_S`` seconds."""
    path = tmp / "s2_fixed.csv"
    with (ROOT / "bench" / "curves" / "s2_64x128.csv").open(newline="") as src, \
            path.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or []))
        writer.writeheader()
        for row in reader:
            writer.writerow({**row, "seconds": str(EPOCH_S)})
    return path


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("scale")
    space = write_space(tmp / "scale.yaml", {
        "name": "scale",
        "data": {"images": "nowhere/images", "labels": "nowhere/labels",
                 "classes": ["water", "surf", "wet_sand", "dry_land"]},
        "model": {"arch": {"choice": ["gym_unet", "gym_resunet"]},
                  "filters": {"choice": [2, 4, 8, 12]}, "kernel": 3},
        "loss": {"name": {"choice": ["dice", "cce"]}},
        # continuous (snapped to the recorded values): the space is never exhausted
        "train": {"max_lr": {"loguniform": [1e-4, 1e-2]}, "max_epochs": 5, "patience": 5,
                  "rampup_epochs": 1},
        # repeat_top 0: one Optuna trial per Tune trial (repeats are Tune-only runs)
        "search": {"num_samples": TRIALS, "max_concurrent": CONCURRENCY, "scheduler": "asha",
                   "grace_period": 2, "reduction_factor": 3, "repeat_top": 0, "results_dir": str(tmp / "results")},
        # more logical CPUs than trials at once: only the trial slots keep Tune from
        # starting spare actors on the rest
        "resources": {"num_cpus": 2 * CONCURRENCY, "object_store_memory": 256 * 2**20,
                      "cpus_per_worker": 1},
    })
    marker = f"scale-{os.getpid()}"
    env = {**os.environ, "RAYGYM_TEST_RUN": marker, "RAYGYM_REPLAY_TIME_SCALE": "1"}
    env.pop("RAY_ADDRESS", None)
    log = tmp / "search.log"
    try:
        proc = subprocess.run([sys.executable, "-m", "raygym.cli", "search", str(space),
                               "--replay", str(_table(tmp))], env=env, timeout=240,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    finally:
        reap(marker)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return tmp / "results" / "scale"


def test_every_trial_ran_once_and_is_on_the_leaderboard(scaled: Path) -> None:
    rows = read_leaderboard(scaled)
    assert len(rows) == TRIALS
    assert len({r["trial_id"] for r in rows}) == TRIALS
    assert {r["status"] for r in rows} <= {"completed", "early-stopped", "asha-pruned"}
    assert all(int(r["epochs"]) >= 1 and r["node_id"] for r in rows)  # none starved
    assert [int(r["rank"]) for r in rows] == list(range(1, TRIALS + 1))
    assert any(r["status"] == "asha-pruned" for r in rows)


def test_the_study_holds_each_trial_once_with_its_state(scaled: Path) -> None:
    import optuna

    rows = read_leaderboard(scaled)
    study = optuna.load_study(study_name="scale", storage=open_study_storage(scaled / STUDY_FILE))
    states: dict[str, list[Any]] = {}
    for t in study.trials:
        states.setdefault(t.state.name, []).append(t)
    assert sorted(states) == ["COMPLETE", "PRUNED"] or sorted(states) == ["PRUNED"]
    assert len(study.trials) == TRIALS
    pruned = [r for r in rows if r["status"] == "asha-pruned"]
    assert len(states["PRUNED"]) == len(pruned)
    assert all(t.intermediate_values for t in states["PRUNED"])
    # the leaderboard CSV holds rounded scores: compare within its precision
    done = sorted(float(r["best_val_mean_iou"]) for r in rows if r not in pruned)
    told = sorted(t.value for t in states.get("COMPLETE", []))
    assert told == pytest.approx(done, abs=1e-5)


def test_replay_exports_nothing_and_concurrency_held(scaled: Path) -> None:
    saved = json.loads((scaled / "search.json").read_text())
    assert saved["status"] == "finished" and saved["exported"] == []
    assert not (scaled / "best").exists()  # a replayed trial has no model to export
    assert saved["summary"]["trials"] == TRIALS and saved["replay"]["epochs"] > TRIALS
    # each trial's reports span part of its life: more than CONCURRENCY overlapping spans
    # would mean more trials ran at once than max_concurrent allows
    spans = []
    for trial in (scaled / "ray" / "scale").iterdir():
        if not (trial / "result.json").is_file():
            continue
        walls = [json.loads(line)["replay_wall"]
                 for line in (trial / "result.json").read_text().splitlines() if line]
        spans.append((min(walls) - EPOCH_S, max(walls)))
    assert len(spans) == TRIALS
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 <= peak <= CONCURRENCY


def test_each_trial_holds_one_of_the_searchs_trial_slots(scaled: Path) -> None:
    from ray.tune import ExperimentAnalysis

    from raygym.ray_runtime import TRIAL_SLOT

    trials = ExperimentAnalysis(str(scaled / "ray" / "scale")).trials
    assert len(trials) == TRIALS
    # the local Ray has CONCURRENCY slots: no more trial actors than that can exist at once
    assert all(t.placement_group_factory.bundles == [{"CPU": 1.0, TRIAL_SLOT: 1.0}]
               for t in trials), trials[0].placement_group_factory.bundles


def test_trials_run_in_no_more_processes_than_slots(scaled: Path) -> None:
    # actors of ended trials are kept for the next ones: no fresh process per trial
    pids = {json.loads((trial / "result.json").read_text().splitlines()[0])["pid"]
            for trial in (scaled / "ray" / "scale").iterdir()
            if (trial / "result.json").is_file()}
    assert 1 <= len(pids) <= CONCURRENCY, len(pids)
