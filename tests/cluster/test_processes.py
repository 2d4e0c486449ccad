"""raygym.cluster.processes with plain ``sleep`` processes standing in for Ray nodes: a launched
node carries the marker and the cluster's token, is found by the marker and stopped, and an
unmarked process is left alone (fast: no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from raygym.cluster.processes import (
    DRAIN_TIMEOUT_ENV,
    MARKER_ENV,
    _node_env,
    launch_node,
    node_processes,
    pid_alive,
    stop_processes,
)
from raygym.cluster.state import new_token
from raygym.ray_runtime import AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV, LOOPBACK_ENV

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_launched_node_is_found_by_its_marker_and_stopped(tmp_path: Path) -> None:
    node: dict[str, Any] = {"name": "worker_0", "cmd": SLEEPER, "log": str(tmp_path / "w.log")}
    state: dict[str, Any] = {"cluster_id": "test-cluster", "state_dir": str(tmp_path),
                             "nodes": [node]}
    token = new_token(tmp_path)
    decoy = subprocess.Popen(SLEEPER)  # no marker: must survive
    try:
        launch_node(state, node, attempt=1)
        assert json.loads((tmp_path / "cluster.json").read_text())["nodes"][0]["pid"] == \
            node["pid"]  # recorded before anyone waits on it
        assert "start attempt 1" in Path(node["log"]).read_text()
        found = node_processes(state, node)
        assert [p.pid for p in found] == [node["pid"]]
        env = found[0].environ()
        assert env[MARKER_ENV] == "test-cluster:worker_0"
        assert (env[AUTH_MODE_ENV], env[AUTH_TOKEN_ENV]) == ("token", token)
        assert token not in " ".join(node["cmd"]) + Path(node["log"]).read_text()
        assert not pid_alive(node["pid"], node["create_time"] - 100)  # a reused pid
        assert stop_processes(found, [node["pid"]], grace=5.0) == 1
        assert not pid_alive(node["pid"])
        assert node_processes(state, node) == []
        assert decoy.poll() is None
    finally:
        if node.get("pid") and pid_alive(node["pid"]):  # a failed assertion above
            stop_processes(node_processes(state, node), [node["pid"]], grace=None)
        decoy.kill()
        decoy.wait()


def test_node_env_the_clusters_token_and_loopback_for_the_head_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # as if the user's shell had another cluster's settings
    for key, value in {AUTH_MODE_ENV: "disabled", AUTH_TOKEN_PATH_ENV: "/elsewhere",
                       LOOPBACK_ENV: "0", "RAY_ADDRESS": "10.0.0.1:6379"}.items():
        monkeypatch.setenv(key, value)
    head, worker = _node_env("c:head", "t" * 64, head=True), _node_env("c:w", "t" * 64, head=False)
    for env in (head, worker):
        assert (env[AUTH_MODE_ENV], env[AUTH_TOKEN_ENV]) == ("token", "t" * 64)
        assert AUTH_TOKEN_PATH_ENV not in env and "RAY_ADDRESS" not in env
    assert head[LOOPBACK_ENV] == "0"
    assert LOOPBACK_ENV not in worker  # the launcher sets it after `ray start`'s own check


def test_nodes_skip_rays_drain_on_sigterm_unless_the_user_asks_for_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray 2.60's drain waits up to 30 s on a head that ran a job: `cluster down` would wait
    # out its grace and SIGKILL (teardowns of tests/cluster/test_search_jobs.py: 10-11 s, 2.5 s
    # without the drain)
    monkeypatch.delenv(DRAIN_TIMEOUT_ENV, raising=False)
    for head in (True, False):
        assert _node_env("c:n", "t" * 64, head=head)[DRAIN_TIMEOUT_ENV] == "0"
    monkeypatch.setenv(DRAIN_TIMEOUT_ENV, "12")
    assert _node_env("c:n", "t" * 64, head=True)[DRAIN_TIMEOUT_ENV] == "12"
