"""Helpers of ``test_search_jobs.py``: the cluster and search under test, Ray jobs through the
job server's HTTP API, and what a search leaves in the shared storage (Tune's snapshots, trial
folders, the driver's processes)."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from raygym.cluster import MARKER_ENV, driver_env, free_port, read_state, read_token

BIN = Path(sys.executable).parent
N_PAIRS = 20  # S2 scenes copied for these tests (14 train / 4 val / 2 test at 64 x 64)
# Bounds on a loaded 2-core machine (a search job usually takes ~1 min); a test's waits add up
# to less than its pytest timeout, so the cluster fixture's teardown always gets to run.
JOB_TIMEOUT_S = 360.0  # one search job, from submission to its end
POLL_TIMEOUT_S = 300.0  # from submission to the moment a test waits for (a trial on a node)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


# ------------------------------------------------------------------------------- the cluster
@dataclass
class Cluster:
    state_dir: Path
    info: dict[str, Any]

    @property
    def dashboard(self) -> str:
        return self.info["dashboard"]

    @property
    def head_id(self) -> str:
        return self.info["nodes"][0]["node_id"]

    @property
    def worker_id(self) -> str:
        return self.info["nodes"][1]["node_id"]


def ports() -> tuple[int, int]:
    head = free_port()
    dash = free_port()
    while dash == head:
        dash = free_port()
    return head, dash


@dataclass
class Search:
    name: str
    space: Path
    workdir: Path
    results: Path  # search.results_dir / name
    storage: Path  # search.storage_path (Tune's trial folders go to storage / name)
    num_samples: int
    max_epochs: int

    def command(self, *extra: str) -> str:
        """The job's entrypoint: ``raygym search`` of this venv, joining the cluster."""
        argv = [str(BIN / "raygym"), "search", str(self.space), "--address", "auto",
                "--set", f"search.storage_path={self.storage}", *extra]
        return f"cd {shlex.quote(str(self.workdir))} && {shlex.join(argv)}"

    @property
    def experiment(self) -> Path:
        return self.storage / self.name


# ----------------------------------------------------------------------------- jobs (HTTP)
def submit(cluster: Cluster, entrypoint: str) -> str:
    """``ray job submit --no-wait`` (the CLI, as a user would); returns the submission id."""
    job_id = f"raygym-search-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard,
                          "--no-wait", "--submission-id", job_id, "--",
                          "bash", "-c", entrypoint],
                         env=driver_env(cluster.state_dir), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return job_id


def job_client(cluster: Cluster) -> Any:
    from ray.job_submission import JobSubmissionClient  # HTTP only: no ray.init here

    return JobSubmissionClient(
        cluster.dashboard, headers={"Authorization": f"Bearer {read_token(cluster.state_dir)}"})


def job_status(cluster: Cluster, job_id: str) -> str:
    return str(job_client(cluster).get_job_status(job_id).value)


def job_logs(cluster: Cluster, job_id: str, tail: int | None = 6000) -> str:
    try:
        logs = job_client(cluster).get_job_logs(job_id)
        return logs[-tail:] if tail else logs
    except Exception as err:  # noqa: BLE001 - diagnostics only
        return f"<no logs: {err}>"


def wait_job(cluster: Cluster, job_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
    """Wait (bounded) until the job ends; returns its final status."""
    deadline = time.monotonic() + timeout
    while (status := job_status(cluster, job_id)) not in TERMINAL:
        assert time.monotonic() < deadline, \
            f"job {job_id} still {status} after {timeout:.0f} s:\n{job_logs(cluster, job_id)}"
        time.sleep(1.0)
    return status


def assert_succeeded(cluster: Cluster, job_id: str, timeout: float = JOB_TIMEOUT_S) -> str:
    """Wait for the job; assert it succeeded; return its whole log."""
    status = wait_job(cluster, job_id, timeout)
    logs = job_logs(cluster, job_id, tail=None)
    assert status == "SUCCEEDED", f"job {job_id} {status}:\n{logs[-6000:]}"
    return logs


# ------------------------------------------------------------ what the search leaves behind
def read_leaderboard(search: Search) -> list[dict[str, str]]:
    with (search.results / "leaderboard.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a Tune ``result.json`` (JSON lines; a half-written last line is skipped)."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def trial_rows(search: Search, cluster: Cluster | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{trial_id: result rows}`` from the shared storage; with ``cluster``, from the driver's
    staging copy on the head where that one is newer (Tune writes result.json there first and
    syncs it to ``storage_path`` with each experiment snapshot)."""
    found: dict[str, list[dict[str, Any]]] = {}
    paths = list(search.experiment.glob("*/result.json"))
    if cluster is not None:
        paths += Path(cluster.info["temp_dir"]).glob(
            f"session_*/artifacts/*/{search.name}/driver_artifacts/*/result.json")
    for path in paths:
        rows = read_rows(path)
        trial = path.parent.name
        if len(rows) > len(found.get(trial, [])):
            found[trial] = rows
    return found


def experiment_state(search: Search) -> dict[str, dict[str, Any]]:
    """``{trial_id: {"status", "num_failures", "last_result", "checkpoint_epoch", ...}}`` from
    Tune's newest experiment snapshot in the shared storage (what ``--resume`` restores from).
    ``checkpoint_epoch``: the epoch of the checkpoint Tune has registered for the trial (the
    one a restart resumes from), read from its pickled checkpoint manager; None without one."""
    files = sorted(search.experiment.glob("experiment_state-*.json"),
                   key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    out = {}
    for trial_json, runtime_json in state.get("trial_data", []):
        trial = json.loads(trial_json) if isinstance(trial_json, str) else trial_json
        runtime = json.loads(runtime_json) if isinstance(runtime_json, str) else runtime_json
        latest = _latest_checkpoint(runtime)
        out[trial["trial_id"]] = {
            "status": trial.get("status"), **runtime,
            "checkpoint_epoch": None if latest is None else int(latest.metrics["epoch"]),
            "checkpoint_path": None if latest is None else latest.checkpoint.path}
    return out


def _latest_checkpoint(runtime: dict[str, Any]) -> Any:
    manager = runtime.get("checkpoint_manager")
    if not isinstance(manager, dict) or "value" not in manager:
        return None
    return pickle.loads(bytes.fromhex(manager["value"])).latest_checkpoint_result


def resume_epoch(checkpoint_path: str) -> int:
    """The epoch a restored trial goes on from: its registered checkpoint's, or, when Tune
    had already replaced that one (num_to_keep=1) before the snapshot caught up, the newest
    whole checkpoint's beside it (raygym mends that case on --resume; a checkpoint that the
    kill cut short mid-copy is skipped, as ``fetch_checkpoint`` skips it)."""
    from raygym.train.loop import checkpoint_readable

    registered = Path(checkpoint_path)
    folders = [registered] if checkpoint_readable(registered) else \
        [p for p in registered.parent.glob("checkpoint_*") if checkpoint_readable(p)]
    return max(int(json.loads((p / "state.json").read_text())["epoch"]) for p in folders)


def snapshot_dir(path: Path) -> dict[str, tuple[str, int | None]]:
    """``{relative path: (sha256, mtime_ns)}`` of every file under ``path``; the time only for
    checkpoint files, which the trial itself writes (a resumed driver re-syncs the rest of a
    trial folder -- result.json, progress.csv, params -- rewriting the same bytes)."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(path))
            mtime = p.stat().st_mtime_ns if rel.startswith("checkpoint_") else None
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), mtime)
    return out


def check_outputs(search: Search, board: list[dict[str, str]]) -> None:
    """Leaderboard, exported best models and Tune's trial folders, all in shared storage."""
    assert (search.results / "leaderboard.md").is_file()
    summary = json.loads((search.results / "search.json").read_text())
    assert summary["status"] == "finished"
    assert summary["summary"]["trials"] == search.num_samples
    best = sorted((search.results / "best").iterdir())
    assert [p.name for p in best] == [f"rank{i + 1}_{board[i]['trial_id']}"
                                      for i in range(len(best))]
    assert best and best[0].name == f"rank1_{board[0]['trial_id']}"
    for artifact in best:
        for name in ("model.safetensors", "model_card.json", "config.yaml"):
            assert (artifact / name).is_file(), artifact / name
    # Tune: one folder per trial (named by its id) under storage_path/<name>/, with its
    # results and its checkpoint (num_to_keep=1), plus the experiment snapshot.
    assert list(search.experiment.glob("experiment_state-*.json"))
    for row in board:
        trial_dir = search.experiment / row["trial_id"]
        assert (trial_dir / "result.json").is_file(), trial_dir
        ckpts = sorted(trial_dir.glob("checkpoint_*"))
        assert len(ckpts) == 1, ckpts
        state = json.loads((ckpts[0] / "state.json").read_text())
        assert state["epoch"] == int(row["epochs"])
        assert (ckpts[0] / "best.safetensors").is_file()
    # nothing went to the defaults (results/<name>/ray, ~/ray_results)
    assert not (search.results / "ray").exists()


# ------------------------------------------------------------------- the driver, by process
def driver_processes(cluster: Cluster) -> list[psutil.Process]:
    """The cluster's ``raygym search`` driver processes (job entrypoints carry its marker)."""
    cluster_id = read_state(cluster.state_dir)["cluster_id"]
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            marker = proc.environ().get(MARKER_ENV, "")
            cmd = proc.info["cmdline"] or []
        except (psutil.Error, OSError):
            continue
        if marker.startswith(f"{cluster_id}:") and any(c.endswith("raygym") for c in cmd) \
                and "search" in cmd:
            found.append(proc)
    return found


def wait_quiet(path: Path, quiet_s: float = 3.0, timeout_s: float = 60.0) -> None:
    """Wait until no file under ``path`` is created, removed or resized for ``quiet_s``."""

    def sizes() -> dict[str, int]:
        found = {}
        for file in path.rglob("*"):
            try:
                if file.is_file():
                    found[str(file)] = file.stat().st_size
            except FileNotFoundError:  # removed while listing: not quiet yet
                found[str(file)] = -1
        return found

    deadline = time.monotonic() + timeout_s
    last, since = sizes(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"{path} still changing after {timeout_s:.0f} s"
        time.sleep(0.5)
        now = sizes()
        if now != last:
            last, since = now, time.monotonic()


def running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
