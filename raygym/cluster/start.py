"""``raygym cluster up``: start a head and worker nodes on this machine, one at a time, each
waited for until the dashboard lists it ALIVE; a node that misses Ray's registration window is
restarted. Anything started is stopped again when the whole cluster does not come up."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any

from raygym.cluster.control import cluster_down
from raygym.cluster.network import free_port, list_nodes, port_free
from raygym.cluster.processes import (
    cluster_processes,
    launch_node,
    pid_alive,
    ray_command,
    reap,
    record_pids,
    worker_command,
)
from raygym.cluster.state import (
    DEFAULT_STATE_DIR,
    STATE_VERSION,
    ClusterError,
    forget_cluster,
    new_token,
    public_view,
    read_state,
    read_token,
    write_state,
)

HEAD_RESOURCE = "head"
START_ATTEMPTS = 3  # per node; a busy machine can make a raylet miss Ray's registration window


def worker_resource(index: int) -> str:
    """Name of the custom resource that pins work to worker node ``index`` (e.g. 0.01 of it)."""
    return f"worker_node_{index}"


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
        if cluster_processes(old):
            raise ClusterError(f"a cluster from {state_dir} is still running at "
                               f"{old.get('address')}", fix="run `raygym cluster down` first")
        forget_cluster(state_dir, old)
    for name, port in (("head port", head_port), ("dashboard port", dashboard_port)):
        if not port_free(port):
            raise ClusterError(f"{name} {port} is already in use",
                               fix="pick another with --port / --dashboard-port")

    state_dir.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    new_token(state_dir)  # every node and client must present it (see processes._node_env)
    tmp_root = "/tmp" if Path("/tmp").is_dir() else None
    temp_dir = tempfile.mkdtemp(prefix="raygym-", dir=tmp_root)
    cluster_id = uuid.uuid4().hex[:12]
    address = f"127.0.0.1:{head_port}"
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    client_port = free_port()
    state: dict[str, Any] = {
        "version": STATE_VERSION, "cluster_id": cluster_id, "address": address,
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
        # All nodes write their logs into the one session folder under `temp_dir`, which the
        # head's log monitor already tails: a monitor per node would send every line to the
        # driver once per node (seen: 3 copies with 2 workers) and poll the shared folder
        # N times over (~0.013 core per idle node, bench_cluster_idle). Ray: "one log
        # monitor per physical host".
        specs.append((f"worker_{i}", worker_resource(i), cpus_per_node,
                      ["--address", address, "--include-log-monitor", "false"]))

    deadline = time.monotonic() + timeout
    try:
        # One node at a time, each waited for: workers need a live GCS to join, and nodes
        # that share one temp dir and start together pick the same file index for their
        # sockets and logs (seen: two raylets in raylet.2.out, one aborting with "bind:
        # Address already in use", its `ray start` timing out after Ray's 30 s; 5 of 5
        # tries with 3 workers at once).
        for index, (name, resource, cpus, extra) in enumerate(specs):
            node: dict[str, Any] = {
                "name": name, "index": index - 1 if index else None,
                "role": "head" if index == 0 else "worker", "resource": resource,
                "num_cpus": int(cpus), "log": str(logs / f"{name}.log"), "node_id": None,
                "alive": True, "pids": {},
                "cmd": [*(worker_command() if index else ray_command()), "start", *extra,
                        *common, "--num-cpus", str(int(cpus)),
                        "--resources", json.dumps({resource: 1})],
            }
            state["nodes"].append(node)
            for attempt in range(1, START_ATTEMPTS + 1):
                launch_node(state, node, attempt)
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
    record_pids(state)
    write_state(state_dir, state)
    return public_view(state)


class _NodeExited(ClusterError):
    """A node's ``ray start`` process ended while the node was starting."""

    def __init__(self, node: str, log: str) -> None:
        self.node = node
        super().__init__(f"node {node} exited while starting:\n{_tail(Path(log))}", file=log)


def _wait_for_nodes(state: dict[str, Any], count: int, deadline: float) -> None:
    """Poll the dashboard until ``count`` of our nodes are ALIVE; record their node ids."""
    wanted = {n["resource"]: n for n in state["nodes"][:count]}
    token = read_token(Path(state["state_dir"]))
    last_err = ""
    while True:
        for node in state["nodes"][:count]:
            if not node.get("pid") or not pid_alive(node["pid"]):
                reap()
                raise _NodeExited(node["name"], node["log"])
        try:
            alive: dict[str, dict[str, Any]] = {}
            for row in list_nodes(state["dashboard"], timeout=3.0, token=token):
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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
