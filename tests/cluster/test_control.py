"""raygym.cluster.control against real local clusters: killing a worker node, and a teardown
that stops exactly its own processes (a second cluster and a decoy process survive it)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from raygym.cluster import (
    cluster_down,
    cluster_up,
    free_port,
    kill_node,
    list_nodes,
    read_state,
    read_token,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def alive_nodes(dashboard: str, state_dir: Path) -> list[dict[str, Any]]:
    return [n for n in list_nodes(dashboard, token=read_token(state_dir))
            if n.get("state") == "ALIVE"]


def pids_alive(pids: list[int]) -> list[int]:
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


def recorded_pids(state_dir: Path) -> list[int]:
    state = read_state(state_dir)
    assert state is not None
    return sorted({int(p) for n in state["nodes"] for p in n["pids"]}
                  | {n["pid"] for n in state["nodes"]})


def test_kill_node_then_down_stops_exactly_its_processes(tmp_path: Path) -> None:
    """A second cluster stands in for "other Ray processes": it must survive the first's down."""
    state_a, state_b = tmp_path / "a", tmp_path / "b"
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pids_b: list[int] = []
    try:
        info = cluster_up(workers=1, cpus_per_node=1, head_port=free_port(),
                          dashboard_port=free_port(), state_dir=state_a, timeout=100)
        other = cluster_up(workers=0, cpus_per_node=1, head_port=free_port(),
                           dashboard_port=free_port(), state_dir=state_b, timeout=100)
        pids_a, pids_b = recorded_pids(state_a), recorded_pids(state_b)
        assert not set(pids_a) & set(pids_b)
        assert len(alive_nodes(info["dashboard"], state_a)) == 2

        worker = info["nodes"][1]
        assert kill_node(state_a, 0) >= 2  # at least its `ray start` and its raylet
        assert not pids_alive([worker["pid"], worker["raylet_pid"]])
        deadline = time.monotonic() + 60
        while len(alive_nodes(info["dashboard"], state_a)) != 1:
            assert time.monotonic() < deadline, "the head never noticed the dead node"
            time.sleep(0.5)
        assert [n["node_id"] for n in alive_nodes(info["dashboard"], state_a)] == \
            [info["nodes"][0]["node_id"]]
        with pytest.raises(Exception, match="no worker node 5"):
            kill_node(state_a, 5)

        stopped = cluster_down(state_dir=state_a)
        assert stopped >= 5  # gcs, raylet, dashboard, monitor, log monitor, agents, ...
        assert not pids_alive(pids_a)
        assert read_state(state_a) is None
        assert not Path(info["temp_dir"]).exists()
        assert cluster_down(state_dir=state_a) == 0  # idempotent

        assert pids_alive(pids_b) == pids_b, "the other cluster was touched"
        assert decoy.poll() is None
        assert len(alive_nodes(other["dashboard"], state_b)) == 1
    finally:
        cluster_down(state_dir=state_a)
        cluster_down(state_dir=state_b)
        decoy.kill()
        decoy.wait()
    assert not pids_alive(pids_b)

