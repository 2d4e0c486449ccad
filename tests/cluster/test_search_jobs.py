"""``raygym search`` on a real local multi-node Ray cluster (raygym.cluster), submitted as a Ray
job: trials spread over the nodes, results and checkpoints on shared storage, a worker node lost
in the middle of a trial, and a driver lost in the middle of the search.

Every test starts its own head + one worker node (1 CPU each) on 127.0.0.1 with ports picked
free at test time, and stops it in a ``finally``. The pytest process never joins the cluster:
searches run as Ray jobs (``ray job submit``, entrypoint ``bash -c "cd TMP && raygym search
..."``), watched through the job server's HTTP API and through the files Tune writes to the
shared storage folder. All nodes share this machine's filesystem, so a tmp folder stands in for
NFS/S3 (``search.results_dir`` and ``search.storage_path`` both point into it).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from raygym.cluster import (
    cluster_down,
    cluster_up,
    kill_node,
    list_nodes,
    read_state,
    read_token,
)
from raygym.search.driver_state import unreadable_state

from .search_jobs import (
    N_PAIRS,
    POLL_TIMEOUT_S,
    TERMINAL,
    Cluster,
    Search,
    assert_succeeded,
    check_outputs,
    driver_processes,
    experiment_state,
    job_logs,
    job_status,
    ports,
    read_leaderboard,
    resume_epoch,
    running,
    snapshot_dir,
    submit,
    trial_rows,
    wait_job,
    wait_quiet,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Head (1 CPU) + one worker node (1 CPU): two concurrent one-CPU trials need both."""
    state_dir = tmp_path / "cluster"
    head_port, dash_port = ports()
    try:
        info = cluster_up(workers=1, cpus_per_node=1, head_cpus=1, head_port=head_port,
                          dashboard_port=dash_port, state_dir=state_dir, timeout=180)
        assert [n["role"] for n in info["nodes"]] == ["head", "worker"]
        assert info["nodes"][0]["node_id"] != info["nodes"][1]["node_id"]
        yield Cluster(state_dir, info)
    finally:
        cluster_down(state_dir=state_dir)




@pytest.fixture
def make_search(tmp_path: Path, s2_subset: Callable[[Path, int], list[str]],
                make_s2_config: Callable[..., dict[str, Any]], write_config: Any
                ) -> Callable[..., Search]:
    """``make_search(name, num_samples=, max_epochs=, **search) -> Search``: a tiny S2 search
    (gym_unet, filters 2, 64 x 64, only ``train.max_lr`` searched) whose data, prepared
    dataset, results and Tune storage all live in one "shared storage" folder."""
    shared = tmp_path / "shared"
    data = shared / "s2"

    def make(name: str, *, num_samples: int, max_epochs: int, **search: Any) -> Search:
        if not (data / "images").is_dir():
            assert len(s2_subset(data, N_PAIRS)) == N_PAIRS
        sections = make_s2_config(shared / "prepared", root=data)
        sections["name"] = name
        sections["data"]["augment"] = {"copies": 0}
        sections["model"] = {"arch": "gym_unet", "filters": 2, "kernel": 3}
        sections["train"].update(max_epochs=max_epochs, patience=100, rampup_epochs=1,
                                 start_lr=1e-5, min_lr=1e-5,
                                 max_lr={"loguniform": [3e-4, 3e-3]})
        sections["search"] = {"num_samples": num_samples, "max_concurrent": 2,
                              "scheduler": "none", "top_k": 2, "repeat_top": 0,
                              "results_dir": str(shared / "results"), **search}
        sections["resources"] = {"workers_per_trial": 1, "cpus_per_worker": 1}
        space = write_config(tmp_path / f"{name}.yaml", **sections)
        return Search(name=name, space=space, workdir=tmp_path,
                      results=shared / "results" / name, storage=shared / "ray",
                      num_samples=num_samples, max_epochs=max_epochs)

    return make



def test_search_spreads_trials_over_both_nodes(cluster: Cluster,
                                               make_search: Callable[..., Search]) -> None:
    """A search submitted as a Ray job runs its trials on the head and on the worker node and
    leaves leaderboard, best models and Tune's trial folders in the shared storage."""
    search = make_search("cluster_spread", num_samples=4, max_epochs=2, scheduler="asha",
                         grace_period=1, reduction_factor=2)
    job_id = submit(cluster, search.command())
    logs = assert_succeeded(cluster, job_id)

    board = read_leaderboard(search)
    assert len(board) == search.num_samples, logs
    assert len({r["trial_id"] for r in board}) == search.num_samples
    for row in board:
        assert row["status"] in ("completed", "asha-pruned"), row
        assert not row["error"]
        assert 1 <= int(row["epochs"]) <= search.max_epochs
    nodes = {r["node_id"] for r in board}
    assert nodes == {cluster.head_id, cluster.worker_id}, \
        f"trials ran on {nodes}; head {cluster.head_id}, worker {cluster.worker_id}"
    # every epoch of every trial on one node, the one the leaderboard names
    rows = trial_rows(search)
    assert set(rows) == {r["trial_id"] for r in board}
    for row in board:
        assert {x["node_id"] for x in rows[row["trial_id"]]} == {row["node_id"]}
    check_outputs(search, board)
    assert "preparing" in logs  # the dataset was made by the job, on the cluster
    assert (search.storage.parent / "prepared" / "card.json").is_file()


def test_worker_node_lost_mid_trial(cluster: Cluster,
                                    make_search: Callable[..., Search]) -> None:
    """The worker node dies (SIGKILL of its raylet, workers and all) while a trial runs on it:
    Tune retries that trial (``search.max_failures``) from its last checkpoint on the head,
    and the search finishes with every trial complete."""
    search = make_search("cluster_node_loss", num_samples=3, max_epochs=20, max_failures=2)
    job_id = submit(cluster, search.command())

    # Wait (bounded) until a trial on the worker node has reported its second epoch: Tune has
    # then registered the first epoch's checkpoint (it saves before it continues a trial).
    deadline = time.monotonic() + POLL_TIMEOUT_S
    victim, seen = None, 0
    while victim is None:
        status = job_status(cluster, job_id)
        assert status not in TERMINAL, \
            f"job {status} before a trial ran on the worker:\n{job_logs(cluster, job_id)}"
        assert time.monotonic() < deadline, "no trial ran on the worker node in time"
        for trial, rows in trial_rows(search, cluster).items():
            on_worker = [r for r in rows if r.get("node_id") == cluster.worker_id]
            if on_worker and 2 <= on_worker[-1]["epoch"] <= search.max_epochs - 5:
                victim, seen = trial, on_worker[-1]["epoch"]
                break
        time.sleep(0.2)
    assert kill_node(cluster.state_dir, 0) >= 2
    killed_at = time.time()

    logs = assert_succeeded(cluster, job_id)
    # The GCS marks the node DEAD after its health checks fail (seconds to tens of seconds);
    # Tune learns of the lost actor sooner, and the search may finish before that.
    deadline = time.monotonic() + 90
    while True:
        dead = [n for n in list_nodes(cluster.dashboard, token=read_token(cluster.state_dir))
                if n.get("node_id") == cluster.worker_id]
        if (dead and dead[0]["state"] == "DEAD") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert dead and dead[0]["state"] == "DEAD", dead

    board = read_leaderboard(search)
    assert len(board) == search.num_samples, logs
    for row in board:
        assert row["status"] == "completed" and not row["error"], \
            f"trial {row['trial_id']} {row['status']}: {row['error']}"
        assert int(row["epochs"]) == search.max_epochs
    by_id = {r["trial_id"]: r for r in board}
    assert by_id[victim]["node_id"] == cluster.head_id  # finished on the surviving node
    # Tune counted one failure for the victim (the lost actor), none for the others.
    state = experiment_state(search)
    assert state[victim]["num_failures"] == 1, state[victim]
    assert all(state[t]["num_failures"] == 0 for t in state if t != victim), state
    error = (search.experiment / victim / "error.txt").read_text()
    assert "Failure # 1" in error and "actor" in error.lower(), error[-2000:]
    # The victim's history: epochs 1..j on the worker, then r..max on the head, where the
    # first result on the head is Tune's first iteration since the restore, with epoch (and
    # training_iteration) r = 1 + the epoch of the checkpoint it resumed from. r > 1: it did
    # not start over; r <= j + 1: no epoch lost. (r <= j when the worker's last epoch had
    # reached the driver but its checkpoint had not been registered yet: redone.)
    rows = trial_rows(search)[victim]
    nodes = [r["node_id"] for r in rows]
    k = nodes.index(cluster.head_id)
    assert set(nodes[:k]) == {cluster.worker_id} and set(nodes[k:]) == {cluster.head_id}, nodes
    epochs = [r["epoch"] for r in rows]
    j, first = epochs[k - 1], rows[k]
    r = first["epoch"]
    assert epochs[:k] == list(range(1, j + 1)) and j >= seen, epochs
    assert epochs[k:] == list(range(r, search.max_epochs + 1)), epochs
    assert 2 <= r <= j + 1 and r >= seen, (r, j, seen, epochs)
    assert first["iterations_since_restore"] == 1 and first["training_iteration"] == r
    assert [x["iterations_since_restore"] for x in rows[:k]] == list(range(1, k + 1))
    assert first["timestamp"] >= int(killed_at) - 1
    print(f"worker killed after epoch {j} of trial {victim} (seen {seen}); resumed at {r}")
    check_outputs(search, board)


def test_driver_lost_then_resumed(cluster: Cluster,
                                  make_search: Callable[..., Search]) -> None:
    """The search's driver is killed (SIGKILL of the job's entrypoint process group) after a
    trial finished; ``raygym search --resume``, submitted as a new job, finishes the search
    without running the finished trials again."""
    search = make_search("cluster_driver_loss", num_samples=4, max_epochs=10)
    first_job = submit(cluster, search.command())

    # Kill once Tune's snapshot in the shared storage (what --resume reads) shows a finished
    # trial, and preferably (waiting up to a minute for it) another one part-way through.
    deadline = time.monotonic() + POLL_TIMEOUT_S
    grace_end = None
    while True:
        status = job_status(cluster, first_job)
        assert status not in TERMINAL, \
            f"job {status} before the kill:\n{job_logs(cluster, first_job)}"
        assert time.monotonic() < deadline, "no trial finished in time"
        state = experiment_state(search)
        finished = [t for t, s in state.items() if s["status"] == "TERMINATED"]
        partial = [t for t, s in state.items() if s["status"] == "RUNNING"
                   and 1 <= (s["checkpoint_epoch"] or 0) <= search.max_epochs - 2]
        if finished:
            grace_end = grace_end or time.monotonic() + 60.0
            if partial or time.monotonic() > grace_end \
                    or len(finished) >= search.num_samples - 1:
                break
        time.sleep(0.2)
    drivers = driver_processes(cluster)
    assert drivers, "the search's driver process was not found"
    groups = {os.getpgid(p.pid) for p in drivers}
    node_groups = {n["pid"] for n in read_state(cluster.state_dir)["nodes"]}
    assert not groups & node_groups and os.getpgid(0) not in groups
    for pgid in groups:  # the entrypoint (bash + raygym search) runs in a session of its own
        os.killpg(pgid, signal.SIGKILL)
    assert wait_job(cluster, first_job, 120) in ("FAILED", "STOPPED")
    # SIGKILL takes effect when the kernel next schedules the process: one in a disk wait
    # (a loaded CI machine) outlives the job's status change by a moment
    psutil.wait_procs(drivers, timeout=30)
    assert not [p.pid for p in drivers if running(p)]
    # The trials' processes outlive their driver by a moment, and one may still be copying a
    # checkpoint: read the storage once it is quiet, as --resume will find it.
    wait_quiet(search.experiment)

    # What Tune recorded before the driver died (the snapshot may have moved since the poll):
    # "finished" = TERMINATED there; "part-way" = RUNNING with a registered checkpoint.
    before = experiment_state(search)
    done = {t for t, s in before.items() if s["status"] == "TERMINATED"}
    assert set(finished) <= done
    assert len(done) < search.num_samples, "the search had finished before the kill"
    partway = {t: s["checkpoint_epoch"] for t, s in before.items()
               if s["status"] == "RUNNING" and s["checkpoint_epoch"]}
    resumes = {t: resume_epoch(before[t]["checkpoint_path"]) for t in partway}
    files = {t: snapshot_dir(search.experiment / t) for t in done}
    texts = {t: {rel: (search.experiment / t / rel).read_bytes() for rel in files[t]
                 if not rel.startswith("checkpoint_")} for t in done}
    history = {t: rows for t, rows in trial_rows(search).items() if t in done}

    # read before the resume starts, which writes state files of its own
    cut_short = unreadable_state(str(search.experiment))
    second_job = submit(cluster, search.command("--resume"))
    if cut_short:
        # The kill landed while Tune copied its own state to storage, in place (rare): Tune
        # would start the search over; the resume refuses instead, naming the file.
        assert wait_job(cluster, second_job, 120) == "FAILED"
        logs = job_logs(cluster, second_job, tail=None)
        assert cut_short[0][0] in logs and "cannot resume" in logs, logs[-3000:]
        assert "Traceback" not in logs
        print(f"killed mid-copy of Tune's state ({cut_short}): resume refused")
        return
    logs = assert_succeeded(cluster, second_job)
    assert "nothing to resume" not in logs

    board = read_leaderboard(search)
    assert len(board) == search.num_samples, logs
    ids = {r["trial_id"] for r in board}
    # the restored searcher only adds the trials still missing: same ids, no extra ones
    assert len(ids) == search.num_samples and set(before) <= ids
    for row in board:
        assert row["status"] == "completed" and not row["error"], \
            f"trial {row['trial_id']} {row['status']}: {row['error']}\n{logs[-6000:]}"
        assert int(row["epochs"]) == search.max_epochs
    after = trial_rows(search)
    # The trials that had finished were not run again: their results are the same rows, their
    # checkpoints the same files, unmodified.
    for trial in done:
        assert after[trial] == history[trial], trial
        assert [r["epoch"] for r in after[trial]] == list(range(1, search.max_epochs + 1))
        now = snapshot_dir(search.experiment / trial)
        # A file the kill caught mid-upload (seen: a TensorBoard events file left empty in the
        # storage) is completed by the resumed driver's upload of its own copy: what the
        # storage held is a prefix of it. Checkpoints must be the very same files.
        completed = {rel for rel in texts[trial] if rel in now and now[rel] != files[trial][rel]
                     and (search.experiment / trial / rel).read_bytes().startswith(
                         texts[trial][rel])}
        assert {k: v for k, v in now.items() if k not in completed} == \
            {k: v for k, v in files[trial].items() if k not in completed}, trial
    # A trial that was part-way went on from its registered checkpoint (epoch k), or from
    # the newer one j that had replaced it: the first result of the new driver is epoch
    # j + 1, Tune's first iteration since the restore. Rows of epochs k+1..j may be missing
    # (reported, but not yet synced to the storage when the driver died).
    for trial, k in partway.items():
        rows, j = after[trial], resumes[trial]
        epochs = [r["epoch"] for r in rows]
        if j == search.max_epochs:  # its last epoch was checkpointed: nothing left to run
            assert set(range(1, k + 1)) <= set(epochs) <= set(range(1, j + 1)), epochs
            continue
        assert set(epochs) <= set(range(1, search.max_epochs + 1)), epochs
        assert set(range(1, search.max_epochs + 1)) - set(epochs) <= set(range(k + 1, j + 1))
        restarts = [i for i, r in enumerate(rows) if i and r["iterations_since_restore"] == 1]
        assert len(restarts) == 1, epochs
        first = rows[restarts[0]]
        assert first["epoch"] == first["training_iteration"] == j + 1, (k, j, epochs)
    print(f"driver killed with {len(done)} trial(s) finished and {len(partway)} part-way "
          f"(registered epochs {partway}, resumed from {resumes})")
    check_outputs(search, board)
