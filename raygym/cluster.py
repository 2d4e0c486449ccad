"""A local multi-node Ray cluster on one machine, for trying the distributed path.

``cluster_up`` starts a head node and ``workers`` worker nodes, each a separate ``ray start
--block`` process in its own session (process group), each with its own raylet, CPU count and a
custom resource label (``head`` on the head, ``worker_node_<i>`` on worker ``i``) that pins work
to that node. What was started is written to ``<state_dir>/cluster.json``; ``cluster_down``
stops exactly those processes (never ``ray stop``, which would kill every Ray process of the
user, including other clusters and test sessions).

How the processes are found again: every node process is started with the environment variable
``RAYGYM_CLUSTER=<cluster id>:<node name>``. Raylets, Ray workers, job supervisors and job
drivers inherit it, so ``cluster_down`` / ``kill_node`` match processes by that marker (read from
``/proc/<pid>/environ`` through psutil) plus the recorded pids/process groups; nothing without
the marker is touched. (Ray puts each worker in its own process group, so killing the node's
process group alone would miss workers.)

Networking: the dashboard and the job server listen on 127.0.0.1 only. Ray itself advertises
the machine's own IP for every node (on Linux it maps 127.0.0.1 to it), and its gRPC servers
(GCS, raylets, object managers), the Ray client server and the per-node dashboard agents listen
on all interfaces or on that IP. A Ray cluster assumes a trusted network: whoever reaches those
ports can run code in it. Keep such machines behind a firewall.

The object store and session files live in a short temporary directory (unix socket paths are
limited to 107 bytes), recorded in the state file and removed by ``cluster_down``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError:  # Ray ships its own copy and puts it on sys.path when imported
    import importlib

    importlib.import_module("ray")
    import psutil

from raygym.atomic import write_text_atomic
from raygym.errors import RaygymError

STATE_FILE = "cluster.json"
MARKER_ENV = "RAYGYM_CLUSTER"
HEAD_RESOURCE = "head"
DEFAULT_STATE_DIR = Path(".raygym-cluster")
_STATE_VERSION = 1
START_ATTEMPTS = 3  # per node; a busy machine can make a raylet miss Ray's registration window

# Popen handles of node processes started by this Python process, so that stopping them from
# the same process also reaps them (no zombies left behind that still look like live pids).
_POPENS: dict[int, subprocess.Popen[bytes]] = {}


class ClusterError(RaygymError):
    """The local cluster could not be started, found or stopped."""


def worker_resource(index: int) -> str:
    """Name of the custom resource that pins work to worker node ``index`` (e.g. 0.01 of it)."""
    return f"worker_node_{index}"


# ------------------------------------------------------------------------------ small helpers
def _state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """The recorded cluster (the ``cluster.json`` written by :func:`cluster_up`), or None."""
    path = _state_path(state_dir)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ClusterError(f"unreadable cluster state: {err}", file=path,
                           fix="stop leftover processes by pid, then delete the file") from err


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    write_text_atomic(_state_path(state_dir), json.dumps(state, indent=2) + "\n")


def _port_free(port: int) -> bool:
    """True if nothing listens on ``port`` (checked on all interfaces: Ray's GCS binds there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    """First port of the kernel's ephemeral range (what ``bind(port 0)`` hands out)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port that is free right now (the client server's; tests pick head and dashboard).

    Drawn from 20000 up to the kernel's ephemeral range, not with ``bind(0)``: Ray's own
    processes take ephemeral ports while a node starts, and one of them was seen (in CI) to
    grab the port picked a moment before for the client server, so the head failed to start.
    Ray's worker ports (10002-19999 by default) lie below this range.
    """
    high = min(_ephemeral_low(), 32768) - 1
    for _ in range(200):
        port = random.randint(20000, high)
        if port not in _HANDED_OUT and _port_free(port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # all taken: any free one
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _ray_command() -> list[str]:
    """``ray`` of this interpreter, so nodes and their workers run the same Python (+ raygym)."""
    exe = Path(sys.executable).parent / "ray"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "ray.scripts.scripts"]


def _node_env(marker: str) -> dict[str, str]:
    from raygym.ray_runtime import QUIET_ENV

    env = dict(os.environ)
    for key, value in QUIET_ENV.items():
        env.setdefault(key, value)
    env["RAY_AUTH_MODE"] = "disabled"  # a token file from another run would else demand auth
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.pop("RAY_ADDRESS", None)  # never let a node join some other cluster
    # Job entrypoints run with the head's PATH: put this interpreter's bin (raygym, python)
    # first so `ray job submit -- raygym search ...` finds the same installation.
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env[MARKER_ENV] = marker
    return env


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


def _pid_alive(pid: int, create_time: float | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when given, was created at ``create_time``."""
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False  # the pid was reused by an unrelated process
        return _alive(proc)
    except psutil.Error:
        return False


def _reap() -> None:
    for pid, popen in list(_POPENS.items()):
        if popen.poll() is not None:
            _POPENS.pop(pid, None)


def _node_processes(state: dict[str, Any], node: dict[str, Any]) -> list[psutil.Process]:
    """Live processes of one node: its marker, its recorded pids and the leader's descendants."""
    procs: dict[int, psutil.Process] = {}
    for proc in _marked_processes(state["cluster_id"], node["name"]):
        procs[proc.pid] = proc
    with contextlib.suppress(psutil.Error):
        if node.get("pid") and _pid_alive(node["pid"], node.get("create_time")):
            leader = psutil.Process(node["pid"])
            procs[leader.pid] = leader
            for child in leader.children(recursive=True):
                procs[child.pid] = child
    for pid, ctime in node.get("pids", {}).items():
        if _pid_alive(int(pid), ctime) and int(pid) not in procs:
            with contextlib.suppress(psutil.Error):
                procs[int(pid)] = psutil.Process(int(pid))
    return [p for p in procs.values() if _alive(p)]


def _stop(procs: list[psutil.Process], leaders: list[int], grace: float | None) -> int:
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
            _reap()
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
        _reap()
        if time.monotonic() > deadline:
            still = [p.pid for p in procs if _alive(p)]
            raise ClusterError(f"processes survived SIGKILL: {still}", fix="check them with ps")
        time.sleep(0.1)
    _reap()
    return len(procs)


# -------------------------------------------------------------------------- dashboard access
def _get_json(url: str, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (127.0.0.1 only)
        return json.loads(resp.read().decode())


def list_nodes(dashboard: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Nodes known to the cluster (Ray state API through the dashboard, no ``ray.init``).

    Each entry has ``node_id``, ``node_ip``, ``is_head_node``, ``state`` (ALIVE/DEAD),
    ``resources_total`` and more.
    """
    body = _get_json(f"{dashboard}/api/v0/nodes?limit=1000&detail=1", timeout)
    data = body.get("data", {}).get("result", {})
    rows = data.get("result", data) if isinstance(data, dict) else data
    return list(rows or [])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# ---------------------------------------------------------------------------------- public API
def cluster_up(*, workers: int = 1, cpus_per_node: int = 1, head_port: int = 6390,
               dashboard_port: int = 8265, state_dir: Path = DEFAULT_STATE_DIR,
               head_cpus: int | None = None, object_store_memory: int = 256 * 2**20,
               gpus_per_node: int = 0, timeout: float = 180.0) -> dict[str, Any]:
    """Start a local Ray cluster: one head and ``workers`` worker nodes on this machine.

    Args:
        workers: worker nodes besides the head (each its own raylet).
        cpus_per_node: logical CPUs of each worker node (and of the head unless ``head_cpus``).
        head_port: GCS port; the cluster address is ``127.0.0.1:<head_port>``.
        dashboard_port: dashboard and job server, bound to 127.0.0.1.
        state_dir: where ``cluster.json`` and the nodes' console logs go.
        head_cpus: logical CPUs of the head (default ``cpus_per_node``; 0 keeps trials off it).
        object_store_memory: object store bytes per node.
        gpus_per_node: GPUs each node advertises (default 0: several nodes on one machine would
            otherwise each claim every GPU).
        timeout: seconds to wait for all nodes to be alive (a node that fails to register is
            restarted, up to ``START_ATTEMPTS`` times).

    Returns:
        ``{"address": "127.0.0.1:PORT", "dashboard": "http://127.0.0.1:PORT", "nodes": [...],
        "state_file": ..., "session_dir": ...}``; each node has ``name`` ("head",
        "worker_0", ...), ``resource`` (its custom resource), ``node_id``, ``num_cpus``,
        ``pid`` (its ``ray start --block`` process, leader of its process group),
        ``raylet_pid`` (and ``gcs_pid`` on the head) and ``log``.

    Raises:
        ClusterError: a cluster from ``state_dir`` still runs, a port is taken, or a node did
            not come up in time (everything started is stopped again first).
    """
    if workers < 0 or cpus_per_node < 0 or (head_cpus is not None and head_cpus < 0):
        raise ClusterError("workers and CPU counts must be >= 0")
    state_dir = Path(state_dir).absolute()
    old = read_state(state_dir)
    if old is not None:
        if _cluster_processes(old):
            raise ClusterError(f"a cluster from {state_dir} is still running at "
                               f"{old.get('address')}", fix="run `raygym cluster down` first")
        _cleanup_files(old)
        _state_path(state_dir).unlink(missing_ok=True)
    for name, port in (("head port", head_port), ("dashboard port", dashboard_port)):
        if not _port_free(port):
            raise ClusterError(f"{name} {port} is already in use",
                               fix="pick another with --port / --dashboard-port")

    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    tmp_root = "/tmp" if Path("/tmp").is_dir() else None
    temp_dir = tempfile.mkdtemp(prefix="raygym-", dir=tmp_root)
    cluster_id = uuid.uuid4().hex[:12]
    address = f"127.0.0.1:{head_port}"
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    client_port = free_port()
    state: dict[str, Any] = {
        "version": _STATE_VERSION, "cluster_id": cluster_id, "address": address,
        "dashboard": dashboard, "head_port": head_port, "dashboard_port": dashboard_port,
        "client_port": client_port,
        "temp_dir": temp_dir, "session_dir": None, "state_dir": str(state_dir),
        "started_at": time.time(), "python": sys.executable, "nodes": [],
    }
    common = ["--block", "--node-ip-address", "127.0.0.1", "--temp-dir", temp_dir,
              "--object-store-memory", str(int(object_store_memory)),
              "--num-gpus", str(int(gpus_per_node)),
              "--dashboard-agent-listen-port", "0",  # one agent per node: no fixed 52365
              "--disable-usage-stats", "--log-style", "record", "--log-color", "false"]
    specs: list[tuple[str, str, int, list[str]]] = [(
        "head", HEAD_RESOURCE, cpus_per_node if head_cpus is None else head_cpus,
        ["--head", "--port", str(head_port), "--include-dashboard", "true",
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
         # Ray always starts a client server on the head (default 10001): take a free port
         # so that several clusters (and test sessions) can coexist.
         "--ray-client-server-port", str(client_port)],
    )]
    for i in range(workers):
        specs.append((f"worker_{i}", worker_resource(i), cpus_per_node,
                      ["--address", address]))

    deadline = time.monotonic() + timeout
    try:
        # One node at a time, each waited for: workers need a live GCS to join, and raylets
        # starting together on a busy machine may miss Ray's fixed 30 s registration window.
        for index, (name, resource, cpus, extra) in enumerate(specs):
            node: dict[str, Any] = {
                "name": name, "index": index - 1 if index else None,
                "role": "head" if index == 0 else "worker", "resource": resource,
                "num_cpus": int(cpus), "log": str(logs / f"{name}.log"), "node_id": None,
                "alive": True, "pids": {},
                "cmd": [*_ray_command(), "start", *extra, *common, "--num-cpus", str(int(cpus)),
                        "--resources", json.dumps({resource: 1})],
            }
            state["nodes"].append(node)
            for attempt in range(1, START_ATTEMPTS + 1):
                _launch(state, node, attempt)
                try:
                    _wait_for_nodes(state, index + 1, deadline)
                    break
                except _NodeExited as err:
                    if (err.node != name or attempt == START_ATTEMPTS
                            or time.monotonic() > deadline):
                        raise
    except BaseException:
        with contextlib.suppress(Exception):
            cluster_down(state_dir=state_dir)
        raise

    session = Path(temp_dir) / "session_latest"
    state["session_dir"] = str(session.resolve()) if session.exists() else None
    _record_pids(state)
    _write_state(state_dir, state)
    return _public(state)


class _NodeExited(ClusterError):
    """A node's ``ray start`` process ended while the node was starting."""

    def __init__(self, node: str, log: str) -> None:
        self.node = node
        super().__init__(f"node {node} exited while starting:\n{_tail(Path(log))}", file=log)


def _launch(state: dict[str, Any], node: dict[str, Any], attempt: int) -> None:
    """Start (or restart) one node's ``ray start --block`` in a session of its own."""
    with open(node["log"], "wb" if attempt == 1 else "ab") as fh:
        fh.write(f"--- raygym: start attempt {attempt}: {' '.join(node['cmd'])}\n".encode())
        fh.flush()
        popen = subprocess.Popen(node["cmd"], stdin=subprocess.DEVNULL, stdout=fh,
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 env=_node_env(f"{state['cluster_id']}:{node['name']}"))
    _POPENS[popen.pid] = popen
    node.update(pid=popen.pid, pgid=popen.pid, attempts=attempt,
                create_time=psutil.Process(popen.pid).create_time())
    _write_state(Path(state["state_dir"]), state)  # early: a crash still leaves what to stop


def _wait_for_nodes(state: dict[str, Any], count: int, deadline: float) -> None:
    """Poll the dashboard until ``count`` of our nodes are ALIVE; record their node ids."""
    wanted = {n["resource"]: n for n in state["nodes"][:count]}
    last_err = ""
    while True:
        for node in state["nodes"][:count]:
            if not node.get("pid") or not _pid_alive(node["pid"]):
                _reap()
                raise _NodeExited(node["name"], node["log"])
        try:
            alive: dict[str, dict[str, Any]] = {}
            for row in list_nodes(state["dashboard"], timeout=3.0):
                if row.get("state") != "ALIVE":
                    continue
                for res in row.get("resources_total", {}):
                    # the newest node with the label (an earlier failed attempt may linger)
                    if res in wanted and (row.get("start_time_ms") or 0) >= \
                            (alive.get(res, {}).get("start_time_ms") or 0):
                        alive[res] = row
            if len(alive) == len(wanted):
                for res, row in alive.items():
                    wanted[res]["node_id"] = row.get("node_id")
                    wanted[res]["node_ip"] = row.get("node_ip")
                return
            last_err = f"{len(alive)} of {len(wanted)} nodes alive"
        except (urllib.error.URLError, OSError, ValueError) as err:
            last_err = f"dashboard not answering: {err}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n['name']}:\n{_tail(Path(n['log']), 8)}"
                             for n in state["nodes"][:count])
            raise ClusterError(f"cluster did not come up in time ({last_err})\n{logs}",
                               fix="see the logs in the state dir; raise the timeout")
        time.sleep(0.5)


def _record_pids(state: dict[str, Any]) -> None:
    """Store each node's processes (pid -> create time) and its raylet/GCS pids."""
    for node in state["nodes"]:
        pids: dict[str, float] = {}
        for proc in _node_processes(state, node):
            with contextlib.suppress(psutil.Error):
                pids[str(proc.pid)] = proc.create_time()
                name = proc.name()
                if name == "raylet":
                    node["raylet_pid"] = proc.pid
                elif name == "gcs_server":
                    node["gcs_pid"] = proc.pid
        node["pids"] = pids


def _public(state: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "index", "role", "resource", "num_cpus", "node_id", "node_ip", "pid",
            "raylet_pid", "gcs_pid", "log", "alive")
    return {
        "address": state["address"], "dashboard": state["dashboard"],
        "session_dir": state.get("session_dir"), "temp_dir": state.get("temp_dir"),
        "state_file": str(_state_path(Path(state["state_dir"]))),
        "nodes": [{k: n.get(k) for k in keep if k in n} for n in state["nodes"]],
    }


def _cluster_processes(state: dict[str, Any]) -> list[psutil.Process]:
    procs: dict[int, psutil.Process] = {}
    for node in state.get("nodes", []):
        for proc in _node_processes(state, node):
            procs[proc.pid] = proc
    for proc in _marked_processes(state["cluster_id"]):  # e.g. reparented job drivers
        if _alive(proc):
            procs[proc.pid] = proc
    return list(procs.values())


def _cleanup_files(state: dict[str, Any]) -> None:
    temp_dir = state.get("temp_dir")
    if temp_dir and Path(temp_dir).name.startswith("raygym-"):
        shutil.rmtree(temp_dir, ignore_errors=True)


def cluster_down(*, state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 10.0,
                 keep_temp: bool = False) -> int:
    """Stop the cluster recorded in ``state_dir``; return how many processes were stopped.

    Worker nodes first, then the head: SIGTERM to each ``ray start --block`` process, SIGKILL
    after ``timeout`` seconds for whatever of the cluster still runs (found by pid, process
    group and the ``RAYGYM_CLUSTER`` marker). No other Ray process is touched. Removes the
    state file and (unless ``keep_temp``) the session directory with its logs. Returns 0 when
    no cluster is recorded.
    """
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        return 0
    stopped = 0
    nodes = state.get("nodes", [])
    for node in [n for n in nodes if n.get("role") != "head"] + \
            [n for n in nodes if n.get("role") == "head"]:
        procs = _node_processes(state, node)
        stopped += _stop(procs, [node["pid"]] if node.get("pid") else [], timeout)
    stopped += _stop(_cluster_processes(state), [], None)  # stragglers, e.g. job drivers
    if not keep_temp:
        _cleanup_files(state)
    _state_path(state_dir).unlink(missing_ok=True)
    return stopped


def kill_node(state_dir: Path, node_index: int, *, graceful: bool = False) -> int:
    """Kill worker node ``node_index`` (its ``ray start`` process, raylet, agents and workers).

    Simulates a machine failure for fault-tolerance tests: SIGKILL at once unless ``graceful``
    (then SIGTERM and a 10 s grace). After a SIGKILL the head marks the node DEAD when its
    health checks fail (about 10-30 s; at once after a graceful stop). Returns how many processes were stopped; the node stays in the state file
    marked ``alive: false`` so ``cluster_down`` still sweeps anything left.
    """
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        raise ClusterError(f"no cluster recorded in {state_dir}", fix="run `raygym cluster up`")
    node = next((n for n in state["nodes"]
                 if n.get("role") == "worker" and n.get("index") == node_index), None)
    if node is None:
        count = sum(n.get("role") == "worker" for n in state["nodes"])
        raise ClusterError(f"no worker node {node_index} (the cluster has {count})",
                           fix=f"use 0..{count - 1}" if count else "start it with --workers N")
    procs = _node_processes(state, node)
    stopped = _stop(procs, [node["pid"]] if node.get("pid") else [],
                    10.0 if graceful else None)
    node["alive"] = False
    _write_state(state_dir, state)
    return stopped


def cluster_status(*, state_dir: Path = DEFAULT_STATE_DIR) -> str:
    """A short human-readable report: addresses, and per node its processes and Ray state."""
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        return f"no local cluster recorded in {state_dir}"
    lines = [f"cluster {state['cluster_id']}: address {state['address']}, "
             f"dashboard {state['dashboard']}", f"session {state.get('session_dir')}"]
    try:
        ray_nodes = {row.get("node_id"): row for row in list_nodes(state["dashboard"], 3.0)}
    except (urllib.error.URLError, OSError, ValueError) as err:
        ray_nodes = {}
        lines.append(f"dashboard not answering ({err})")
    for node in state["nodes"]:
        procs = _node_processes(state, node)
        ray_state = ray_nodes.get(node.get("node_id"), {}).get("state", "unknown")
        lines.append(f"  {node['name']:<9} {ray_state:<7} {node['resource']:<14} "
                     f"cpus={node['num_cpus']} pid={node.get('pid')} procs={len(procs)} "
                     f"node={(node.get('node_id') or '-')[:8]}")
    return "\n".join(lines)


def cluster_info(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """What :func:`cluster_up` returned for the cluster recorded in ``state_dir`` (or None)."""
    state = read_state(Path(state_dir).absolute())
    return None if state is None else _public(state)


def driver_env(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, str]:
    """Environment for a driver subprocess that should join the recorded cluster."""
    state = read_state(Path(state_dir).absolute())
    if state is None:
        raise ClusterError(f"no cluster recorded in {state_dir}", fix="run `raygym cluster up`")
    env = dict(os.environ)
    env["RAY_ADDRESS"] = state["address"]
    env["RAY_AUTH_MODE"] = "disabled"
    return env
