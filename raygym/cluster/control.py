"""Stopping and inspecting a running local cluster: ``raygym cluster down`` / ``status``,
killing one worker node (a simulated machine failure), and the environment for a driver or
``ray job submit`` that talks to the cluster (its auth token included). Only processes of the
recorded cluster are ever signalled."""

from __future__ import annotations

import os
import shlex
import urllib.error
from pathlib import Path

from raygym.cluster.network import list_nodes
from raygym.cluster.processes import cluster_processes, node_processes, stop_processes
from raygym.cluster.state import (
    DEFAULT_STATE_DIR,
    ClusterError,
    forget_cluster,
    read_state,
    read_token,
    token_path,
    write_state,
)


def cluster_down(*, state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 10.0,
                 keep_temp: bool = False) -> int:
    """Stop the cluster recorded in ``state_dir``; return how many processes were stopped.

    All worker nodes together, then the head: SIGTERM to each ``ray start --block`` process,
    SIGKILL after ``timeout`` seconds for whatever of the cluster still runs (found by pid,
    process group and the ``RAYGYM_CLUSTER`` marker). No other Ray process is touched. Removes the
    state file and (unless ``keep_temp``) the session directory with its logs. Returns 0 when
    no cluster is recorded.
    """
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        return 0
    stopped = 0
    nodes = state.get("nodes", [])
    # every worker node at once (each shuts down in ~1 s, mostly waiting), then the head
    for group in ([n for n in nodes if n.get("role") != "head"],
                  [n for n in nodes if n.get("role") == "head"]):
        procs = list({p.pid: p for n in group for p in node_processes(state, n)}.values())
        stopped += stop_processes(procs, [n["pid"] for n in group if n.get("pid")], timeout)
    stopped += stop_processes(cluster_processes(state), [], None)  # stragglers, e.g. job drivers
    forget_cluster(state_dir, state, keep_temp=keep_temp)
    return stopped


def kill_node(state_dir: Path, node_index: int, *, graceful: bool = False) -> int:
    """Kill worker node ``node_index`` (its ``ray start`` process, raylet, agents and workers).

    Simulates a machine failure for fault-tolerance tests: SIGKILL at once unless ``graceful``
    (then SIGTERM and a 10 s grace). After a SIGKILL the head marks the node DEAD when its
    health checks fail (about 10-30 s; at once after a graceful stop). Returns how many
    processes were stopped; the node stays in the state file marked ``alive: false`` so
    ``cluster_down`` still sweeps anything left.
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
    procs = node_processes(state, node)
    stopped = stop_processes(procs, [node["pid"]] if node.get("pid") else [],
                    10.0 if graceful else None)
    node["alive"] = False
    write_state(state_dir, state)
    return stopped


def cluster_status(*, state_dir: Path = DEFAULT_STATE_DIR) -> str:
    """A short human-readable report: addresses, and per node its processes and Ray state."""
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        return f"no local cluster recorded in {state_dir}"
    lines = [f"cluster {state['cluster_id']}: address {state['address']}, "
             f"dashboard {state['dashboard']}", f"session {state.get('session_dir')}",
             f"auth token in {token_path(state_dir)} (yours only); for `ray job submit` "
             "and drivers:", f"  {export_line(state_dir)}"]
    try:
        ray_nodes = {row.get("node_id"): row for row in
                     list_nodes(state["dashboard"], 3.0, token=read_token(state_dir))}
    except (urllib.error.URLError, OSError, ValueError, ClusterError) as err:
        ray_nodes = {}
        lines.append(f"dashboard not answering ({err})")
    for node in state["nodes"]:
        procs = node_processes(state, node)
        ray_state = ray_nodes.get(node.get("node_id"), {}).get("state", "unknown")
        lines.append(f"  {node['name']:<9} {ray_state:<7} {node['resource']:<14} "
                     f"cpus={node['num_cpus']} pid={node.get('pid')} procs={len(procs)} "
                     f"node={(node.get('node_id') or '-')[:8]}")
    return "\n".join(lines)


def auth_env(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, str]:
    """What a client of the recorded cluster needs besides its address: the cluster's token,
    and loopback mode (without it a driver rewrites ``127.0.0.1`` to the machine's outside
    address, where the cluster does not listen, and gives up after 20-60 s)."""
    from raygym.ray_runtime import AUTH_MODE_ENV, AUTH_TOKEN_ENV, LOOPBACK_ENV

    return {AUTH_MODE_ENV: "token", AUTH_TOKEN_ENV: read_token(state_dir), LOOPBACK_ENV: "0"}


def export_line(state_dir: Path = DEFAULT_STATE_DIR) -> str:
    """:func:`auth_env` as a shell ``export`` that reads the token from its 0600 file: the
    line goes to terminals and logs, the token itself never does."""
    from raygym.ray_runtime import AUTH_MODE_ENV, AUTH_TOKEN_ENV, LOOPBACK_ENV

    path = shlex.quote(str(token_path(Path(state_dir).absolute())))
    return f'export {AUTH_MODE_ENV}=token {AUTH_TOKEN_ENV}="$(cat {path})" {LOOPBACK_ENV}=0'


def driver_env(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, str]:
    """Environment for a driver subprocess (``ray.init``, ``raygym search``, ``ray job``) that
    should join the recorded cluster: this process's, plus its address and :func:`auth_env`."""
    state_dir = Path(state_dir).absolute()
    state = read_state(state_dir)
    if state is None:
        raise ClusterError(f"no cluster recorded in {state_dir}", fix="run `raygym cluster up`")
    from raygym.ray_runtime import AUTH_TOKEN_PATH_ENV

    env = dict(os.environ)
    env.pop(AUTH_TOKEN_PATH_ENV, None)  # one token source: no doubt which one Ray reads
    env["RAY_ADDRESS"] = state["address"]
    env.update(auth_env(state_dir))
    return env
