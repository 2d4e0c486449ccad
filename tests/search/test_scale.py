"""Scheduling at scale, small: 32 replayed trials, 8 at a time, on a local Ray with 16 logical
CPUs and on a real 8-node Ray cluster on 127.0.0.1 (``raygym cluster up``: a head without CPUs
and 8 worker nodes of 1 CPU, each a ``ray start`` of its own).

``raygym search SPACE --replay TABLE`` in a process of its own, trials replaying the S2 curve
table at a known 0.1 s per epoch. Structural checks only (no timing asserts; speed lives in
bench/bench_scale.py): every trial ran and is on the leaderboard once, the Optuna study holds
each trial once with the right state (ASHA-stopped ones PRUNED), no more than 8 trials ever
overlapped, trials ran in no more processes than run at once, and ASHA-stopped trials gave
their CPU back (a leak would leave later trials pending: the run would time out; on the
cluster every CPU is free again once the search has ended).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raygym.search.study_storage import STUDY_FILE, open_study_storage

from . import read_leaderboard, reap, write_space

ROOT = Path(__file__).resolve().parents[2]
TRIALS, CONCURRENCY, EPOCH_S = 32, 8, 0.1
TIME_SCALE_ENV = "RAYGYM_REPLAY_TIME_SCALE"


def _table(tmp: Path) -> Path:
    """The S2 curve table with every epoch costing ``EPOCH_S`` seconds."""
    path = tmp / "s2_fixed.csv"
    with gzip.open(ROOT / "bench" / "curves" / "s2_64x128.csv.gz", "rt", newline="") as src, \
            path.open("w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=list(reader.fieldnames or []))
        writer.writeheader()
        for row in reader:
            writer.writerow({**row, "seconds": str(EPOCH_S)})
    return path


@dataclass
class Scaled:
    where: str  # "local" or "cluster"
    results: Path  # search.results_dir / name
    cluster: Path | None = None  # the cluster's state folder (still up while tests run)
    worker_nodes: frozenset[str] = frozenset()  # the cluster's worker node ids

    @property
    def experiment(self) -> Path:
        return self.results / "ray" / self.results.name


def _run_search(tmp: Path, env: dict[str, str], num_cpus: int | None) -> Path:
    resources: dict[str, Any] = {"object_store_memory": 256 * 2**20, "cpus_per_worker": 1}
    if num_cpus:
        # more logical CPUs than trials at once: only the trial slots keep Tune from
        # starting spare actors on the rest
        resources["num_cpus"] = num_cpus
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
                   "grace_period": 2, "reduction_factor": 3, "repeat_top": 0,
                   "results_dir": str(tmp / "results")},
        "resources": resources,
    })
    marker = f"scale-{os.getpid()}-{tmp.name}"
    env = {**env, "RAYGYM_TEST_RUN": marker, TIME_SCALE_ENV: "1"}
    log = tmp / "search.log"
    try:
        proc = subprocess.run([sys.executable, "-m", "raygym.cli", "search", str(space),
                               "--replay", str(_table(tmp))], env=env, timeout=300,
                              stdout=log.open("w"), stderr=subprocess.STDOUT)
    finally:
        reap(marker)
    assert proc.returncode == 0, log.read_text()[-3000:]
    return tmp / "results" / "scale-replay"


@pytest.fixture(scope="module", params=["local", "cluster"])
def scaled(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    tmp = tmp_path_factory.mktemp(f"scale-{request.param}")
    if request.param == "local":
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        yield Scaled("local", _run_search(tmp, env, num_cpus=2 * CONCURRENCY))
        return
    from raygym.cluster import cluster_down, cluster_up, driver_env, free_port

    state = tmp / "cluster"
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv(TIME_SCALE_ENV, "1")  # the nodes' trial processes inherit it
            info = cluster_up(workers=CONCURRENCY, cpus_per_node=1, head_cpus=0,
                              head_port=free_port(), dashboard_port=free_port(),
                              state_dir=state, object_store_memory=80 * 2**20, timeout=300)
        workers = frozenset(n["node_id"] for n in info["nodes"] if n["role"] == "worker")
        yield Scaled("cluster", _run_search(tmp, driver_env(state), num_cpus=None), state,
                     workers)
    finally:
        cluster_down(state_dir=state)


def _trial_results(scaled: Scaled) -> list[list[dict[str, Any]]]:
    """Every trial's reported results (its ``result.json`` lines), one list per trial."""
    return [[json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line]
            for trial in scaled.experiment.iterdir() if (trial / "result.json").is_file()]


def test_every_trial_ran_once_and_is_on_the_leaderboard(scaled: Scaled) -> None:
    rows = read_leaderboard(scaled.results)
    assert len(rows) == TRIALS
    assert len({r["trial_id"] for r in rows}) == TRIALS
    assert {r["status"] for r in rows} <= {"completed", "early-stopped", "asha-pruned"}
    assert all(int(r["epochs"]) >= 1 and r["node_id"] for r in rows)  # none starved
    assert [int(r["rank"]) for r in rows] == list(range(1, TRIALS + 1))
    assert any(r["status"] == "asha-pruned" for r in rows)


def test_the_study_holds_each_trial_once_with_its_state(scaled: Scaled) -> None:
    import optuna

    rows = read_leaderboard(scaled.results)
    study = optuna.load_study(study_name=scaled.results.name, storage=open_study_storage(
        scaled.results / STUDY_FILE))
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


def test_replay_exports_nothing_and_concurrency_held(scaled: Scaled) -> None:
    saved = json.loads((scaled.results / "search.json").read_text())
    assert saved["status"] == "finished" and saved["exported"] == []
    assert not (scaled.results / "best").exists()  # a replayed trial has no model to export
    assert saved["summary"]["trials"] == TRIALS and saved["replay"]["epochs"] > TRIALS
    # each trial's reports span part of its life: more than CONCURRENCY overlapping spans
    # would mean more trials ran at once than max_concurrent allows
    spans = [(min(r["replay_wall"] for r in rows) - EPOCH_S, max(r["replay_wall"] for r in rows))
             for rows in _trial_results(scaled)]
    assert len(spans) == TRIALS
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 <= peak <= CONCURRENCY


def test_each_trial_holds_one_of_the_searchs_trial_slots(scaled: Scaled) -> None:
    from ray.tune import ExperimentAnalysis

    from raygym.ray_runtime import TRIAL_SLOT

    trials = ExperimentAnalysis(str(scaled.experiment)).trials
    assert len(trials) == TRIALS
    # a local Ray raygym starts has CONCURRENCY slots: no more trial actors than that can
    # exist at once; a cluster's nodes have none (the searcher alone limits concurrency)
    bundle = {"CPU": 1.0, TRIAL_SLOT: 1.0} if scaled.where == "local" else {"CPU": 1.0}
    assert all(t.placement_group_factory.bundles == [bundle]
               for t in trials), trials[0].placement_group_factory.bundles


def test_trials_run_in_no_more_processes_than_slots(scaled: Scaled) -> None:
    # actors of ended trials are kept for the next ones: no fresh process per trial, and on
    # the cluster a kept process stays on its node
    processes = {(rows[0]["node_id"], rows[0]["pid"]) for rows in _trial_results(scaled)}
    assert 1 <= len(processes) <= CONCURRENCY, processes
    if scaled.where == "cluster":  # one trial process per node
        nodes = [node for node, _ in processes]
        assert len(set(nodes)) == len(nodes), processes


@pytest.mark.parametrize("scaled", ["cluster"], indirect=True)
def test_the_cluster_ran_trials_on_every_node_and_got_every_cpu_back(scaled: Scaled) -> None:
    from raygym.cluster import driver_env

    used = {rows[0]["node_id"] for rows in _trial_results(scaled)}
    # 8 trials at once on 8 one-CPU nodes (the head has none): the first wave needs them all
    assert used == scaled.worker_nodes and len(used) == CONCURRENCY, used
    probe = ("import json, ray; ray.init(log_to_driver=False); "
             "print('CPU', json.dumps([ray.available_resources().get('CPU', 0), "
             "ray.cluster_resources().get('CPU', 0)]))")
    free: list[float] = []
    for _ in range(10):  # the search's actors are gone once its job ends: at most seconds
        out = subprocess.run([sys.executable, "-c", probe], env=driver_env(scaled.cluster),
                             capture_output=True, text=True, timeout=120).stdout
        line = next(x for x in reversed(out.splitlines()) if x.startswith("CPU "))
        free = json.loads(line[4:])
        if free[0] == free[1] == CONCURRENCY:
            break
        time.sleep(3)
    assert free == [CONCURRENCY, CONCURRENCY], free
