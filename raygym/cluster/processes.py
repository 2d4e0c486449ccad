"""The node processes of a local cluster: starting one ``ray start --block`` per node, finding
every process of a node or cluster again, and stopping exactly those.

Every node process is started with ``RAYGYM_CLUSTER=<cluster id>:<node name>`` in its
environment; raylets, Ray workers, job supervisors and job drivers inherit it, so a process is
found by that marker (read from ``/proc/<pid>/environ`` through psutil) plus the recorded pids
and process groups. Nothing without the marker is touched. (Ray puts each worker in its own
process group, so killing the node's process group alone would miss workers.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # Ray ships its own copy and puts it on sys.path when imported
    import importlib

    importlib.import_module("ray")
    import psutil

from raygym.cluster.state import ClusterError, read_token, write_state

MARKER_ENV = "RAYGYM_CLUSTER"
DRAIN_TIMEOUT_ENV = "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"  # Ray's, off for our nodes

# Popen handles of node processes started by this Python process, so that stopping them from
# the same process also reaps them (no zombies left behind that still look like live pids).
_POPENS: dict[int, subprocess.Popen[bytes]] = {}


def ray_command() -> list[str]:
    """``ray`` of this interpreter, so nodes and their workers run the same Python (+ raygym)."""
    exe = Path(sys.executable).parent / "ray"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def worker_command() -> list[str]:
    """The launcher of a worker node (``ray start`` that joins a loopback-only head)."""
    return [sys.executable, "-m", "raygym.cluster.loopback_worker"]


def _node_env(marker: str, token: str, head: bool) -> dict[str, str]:
    from raygym.ray_runtime import (
        AUTH_MODE_ENV,
        AUTH_TOKEN_ENV,
        AUTH_TOKEN_PATH_ENV,
        LOOPBACK_ENV,
        RAY_ENV_DEFAULTS,
    )

    env = dict(os.environ)
    for key, value in RAY_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    # The cluster's own token, whatever the user's shell says. The value, not a path: Ray
    # aborts when a token file it was given disappears while nodes still run.
    env[AUTH_MODE_ENV] = "token"
    env[AUTH_TOKEN_ENV] = token
    env.pop(AUTH_TOKEN_PATH_ENV, None)
    if head:  # a 127.0.0.1 node: every server of the head listens on loopback only
        env[LOOPBACK_ENV] = "0"
    else:  # set by the launcher itself, after `ray start` checked it (see loopback_worker)
        env.pop(LOOPBACK_ENV, None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray 2.60 drains a node on SIGTERM (for Serve) and waits up to 30 s for its leases to
    # end: a head that ran a search job (its supervisor, the autoscaler's actor) never does,
    # so `cluster down` would wait out its whole grace before SIGKILL. Nothing here serves.
    env.setdefault(DRAIN_TIMEOUT_ENV, "0")
    env.pop("RAY_ADDRESS", None)  # never let a node join some other cluster
    # Job entrypoints run with the head's PATH: put this interpreter's bin (raygym, python)
    # first so `ray job submit -- raygym search ...` finds the same installation.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env[MARKER_ENV] = marker
    return env


def launch_node(state: dict[str, Any], node: dict[str, Any], attempt: int) -> None:
    """Start (or restart) one node's ``ray start --block`` in a session of its own; its console
    goes to ``node["log"]`` and its pid into the state file at once."""
    with open(node["log"], "wb" if attempt == 1 else "ab") as fh:
        fh.write(f"--- raygym: start attempt {attempt}: {' '.join(node['cmd'])}\n".encode())
        fh.flush()
        popen = subprocess.Popen(node["cmd"], stdin=subprocess.DEVNULL, stdout=fh,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=_node_env(f"{state['cluster_id']}:{node['name']}",
                                               read_token(Path(state["state_dir"])),
                                               head=node.get("role") == "head"))
    _POPENS[popen.pid] = popen
    node.update(pid=popen.pid, pgid=popen.pid, attempts=attempt,
                create_time=psutil.Process(popen.pid).create_time())
    write_state(Path(state["state_dir"]), state)  # early: a crash still leaves what to stop


def _marked_processes(cluster_id: str, node: str | None = None) -> list[psutil.Process]:
    """Processes of this user carrying the cluster's marker (of one node, or of any node)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            value = proc.environ().get(MARKER_ENV)
        except (psutil.Error, OSError):
            continue
        if value is None:
            continue
        owner, _, name = value.partition(":")
        if owner == cluster_id and (node is None or name == node):
            found.append(proc)
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_alive(pid: int, create_time: float | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when given, was created at ``create_time``
    (seconds since the epoch, as psutil reports it)."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False  # the pid was reused by an unrelated process
        return _alive(proc)
    except psutil.Error:
        return False


def reap() -> None:
    """Collect the exit status of node processes this process started and that ended."""
    for pid, popen in list(_POPENS.items()):
        if popen.poll() is not None:
            _POPENS.pop(pid, None)


def node_processes(state: dict[str, Any], node: dict[str, Any]) -> list[psutil.Process]:
    """Live processes of one node: its marker, its recorded pids and the leader's descendants."""
    procs: dict[int, psutil.Process] = {}
    for proc in _marked_processes(state["cluster_id"], node["name"]):
        procs[proc.pid] = proc
    with contextlib.suppress(psutil.Error):
        if node.get("pid") and pid_alive(node["pid"], node.get("create_time")):
            leader = psutil.Process(node["pid"])
            procs[leader.pid] = leader
            for child in leader.children(recursive=True):
                procs[child.pid] = child
    for pid, ctime in node.get("pids", {}).items():
        if pid_alive(int(pid), ctime) and int(pid) not in procs:
            with contextlib.suppress(psutil.Error):
                procs[int(pid)] = psutil.Process(int(pid))
    return [p for p in procs.values() if _alive(p)]


def cluster_processes(state: dict[str, Any]) -> list[psutil.Process]:
    """Live processes of every node, plus marked ones no node lists (e.g. reparented drivers)."""
    procs: dict[int, psutil.Process] = {}
    for node in state.get("nodes", []):
        for proc in node_processes(state, node):
            procs[proc.pid] = proc
    for proc in _marked_processes(state["cluster_id"]):
        if _alive(proc):
            procs[proc.pid] = proc
    return list(procs.values())


def record_pids(state: dict[str, Any]) -> None:
    """Store each node's processes (pid -> create time) and its raylet/GCS pids."""
    for node in state["nodes"]:
        pids: dict[str, float] = {}
        for proc in node_processes(state, node):
            with contextlib.suppress(psutil.Error):
                pids[str(proc.pid)] = proc.create_time()
                name = proc.name()
                if name == "raylet":
                    node["raylet_pid"] = proc.pid
                elif name == "gcs_server":
                    node["gcs_pid"] = proc.pid
        node["pids"] = pids


def stop_processes(procs: list[psutil.Process], leaders: list[int], grace: float | None) -> int:
    """Stop ``procs``; return how many were alive.

    With ``grace`` (seconds): SIGTERM the ``leaders`` (``ray start --block`` then shuts its
    node down in order) and wait up to ``grace`` seconds. Then, or at once when ``grace`` is
    None (a simulated crash), SIGKILL the leaders' process groups and every process left.
    """
    procs = [p for p in procs if _alive(p)]
    if not procs:
        return 0
    if grace is not None:
        for proc in procs:
            if proc.pid in leaders:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in procs):
            reap()
            time.sleep(0.2)
    groups = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            if _alive(proc):
                groups.add(os.getpgid(proc.pid))
    for pgid in groups & set(leaders):  # the node's own group: gcs, raylet, agents, monitors
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for proc in procs:  # Ray workers and job drivers run in process groups of their own
        with contextlib.suppress(psutil.Error):
            if _alive(proc):
                proc.kill()
    deadline = time.monotonic() + 10.0
    while any(_alive(p) for p in procs):
        reap()
        if time.monotonic() > deadline:
            still = [p.pid for p in procs if _alive(p)]
            raise ClusterError(f"processes survived SIGKILL: {still}", fix="check them with ps")
        time.sleep(0.1)
    reap()
    return len(procs)
