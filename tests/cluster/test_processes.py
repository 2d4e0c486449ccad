"""raygym.cluster.processes with plain ``sleep`` processes standing in for Ray nodes: a launched
node carries the marker, is found by it and stopped, and an unmarked process is left alone
(fast: no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from raygym.cluster.processes import (
    MARKER_ENV,
    launch_node,
    node_processes,
    pid_alive,
    stop_processes,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_launched_node_is_found_by_its_marker_and_stopped(tmp_path: Path) -> None:
    node: dict[str, Any] = {"name": "worker_0", "cmd": SLEEPER, "log": str(tmp_path / "w.log")}
    state: dict[str, Any] = {"cluster_id": "test-cluster", "state_dir": str(tmp_path),
                             "nodes": [node]}
    decoy = subprocess.Popen(SLEEPER)  # no marker: must survive
    try:
        launch_node(state, node, attempt=1)
        assert json.loads((tmp_path / "cluster.json").read_text())["nodes"][0]["pid"] == \
            node["pid"]  # recorded before anyone waits on it
        assert "start attempt 1" in Path(node["log"]).read_text()
        found = node_processes(state, node)
        assert [p.pid for p in found] == [node["pid"]]
        assert found[0].environ()[MARKER_ENV] == "test-cluster:worker_0"
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
