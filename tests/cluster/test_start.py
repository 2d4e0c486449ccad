"""raygym.cluster.start against a real local cluster: nodes, placement by node resource,
jobs through the dashboard, refusals, and a failed start that leaves nothing behind.

Only 127.0.0.1 addresses, ports picked free at test time, every cluster stopped in a
``finally``. Ray is never initialised in the pytest process (other tests own that): drivers
run in subprocesses, the dashboard is read over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raygym.cluster import (
    ClusterError,
    cluster_down,
    cluster_status,
    cluster_up,
    free_port,
    read_state,
    worker_resource,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DRIVER = r"""
import json, sys
import ray

ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")

@ray.remote(num_cpus=0, resources={sys.argv[2]: 0.01})
def where():
    import os
    return ray.get_runtime_context().get_node_id(), os.getpid()

node_id, pid = ray.get(where.remote(), timeout=60)
nodes = [n for n in ray.nodes() if n["Alive"]]
print("RESULT " + json.dumps({
    "alive": len(nodes),
    "resources": sorted(k for n in nodes for k in n["Resources"] if "node" in k or k == "head"),
    "cpus": ray.cluster_resources().get("CPU"),
    "task_node": node_id, "task_pid": pid,
}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("RAY_ADDRESS", None)
    return env


def run_driver(address: str, resource: str) -> dict[str, Any]:
    """Run a short Ray driver in a subprocess; return what it printed."""
    out = subprocess.run([sys.executable, "-c", DRIVER, address, resource], env=_env(),
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, f"driver failed:\n{out.stdout}\n{out.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Head (1 CPU) + one worker node (1 CPU), shared by the read-only tests below."""
    state_dir = tmp_path_factory.mktemp("cluster") / "state"
    try:
        info = cluster_up(workers=1, cpus_per_node=1, head_port=free_port(),
                          dashboard_port=free_port(), state_dir=state_dir, timeout=100)
        yield state_dir, info
    finally:
        cluster_down(state_dir=state_dir)


def test_two_nodes_and_placement_by_node_resource(cluster: tuple[Path, dict[str, Any]]) -> None:
    state_dir, info = cluster
    assert info["address"].startswith("127.0.0.1:")
    assert info["dashboard"].startswith("http://127.0.0.1:")
    head, worker = info["nodes"]
    assert (head["resource"], worker["resource"]) == ("head", worker_resource(0))
    assert head["node_id"] and worker["node_id"] and head["node_id"] != worker["node_id"]
    assert head["raylet_pid"] != worker["raylet_pid"] and head["gcs_pid"]

    result = run_driver(info["address"], worker_resource(0))
    assert result["alive"] == 2
    assert result["cpus"] == 2.0
    assert {"head", worker_resource(0)} <= set(result["resources"])
    assert result["task_node"] == worker["node_id"]  # pinned to the worker node's raylet

    result = run_driver(info["address"], "head")
    assert result["task_node"] == head["node_id"]

    status = cluster_status(state_dir=state_dir)
    assert "worker_0" in status and "ALIVE" in status


def test_job_submission_through_the_dashboard(cluster: tuple[Path, dict[str, Any]]) -> None:
    _, info = cluster
    dashboard = info["dashboard"]
    ray_cli = str(Path(sys.executable).parent / "ray")
    job_id = f"raygym-test-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([ray_cli, "job", "submit", "--address", dashboard, "--no-wait",
                          "--submission-id", job_id, "--",
                          "python", "-c", "print('job says', 6 * 7)"],
                         env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    from ray.job_submission import JobStatus, JobSubmissionClient  # HTTP only, no ray.init

    client = JobSubmissionClient(dashboard)
    deadline = time.monotonic() + 90
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED,
                                                            JobStatus.FAILED,
                                                            JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"job still {status}"
        time.sleep(0.5)
    assert status == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    assert "job says 42" in client.get_job_logs(job_id)  # ran, not just echoed


def test_up_refuses_a_running_cluster_and_taken_ports(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    try:
        info = cluster_up(workers=0, cpus_per_node=1, head_port=free_port(),
                          dashboard_port=free_port(), state_dir=state_dir, timeout=100)
        with pytest.raises(ClusterError, match="still running"):
            cluster_up(workers=0, head_port=free_port(), dashboard_port=free_port(),
                       state_dir=state_dir)
        head_port = int(info["address"].rsplit(":", 1)[1])
        with pytest.raises(ClusterError, match="already in use"):
            cluster_up(workers=0, head_port=head_port, dashboard_port=free_port(),
                       state_dir=tmp_path / "other")
    finally:
        cluster_down(state_dir=state_dir)


def _cluster_ids() -> set[str]:
    """Cluster ids of every live process that carries a raygym cluster marker."""
    import psutil

    ids = set()
    for proc in psutil.process_iter():
        try:
            value = proc.environ().get("RAYGYM_CLUSTER")
        except (psutil.Error, OSError):
            continue
        if value:
            ids.add(value.split(":", 1)[0])
    return ids


def test_failed_start_leaves_nothing_behind(tmp_path: Path) -> None:
    before = _cluster_ids()
    state_dir = tmp_path / "state"
    with pytest.raises(ClusterError, match="did not come up in time"):
        cluster_up(workers=1, head_port=free_port(), dashboard_port=free_port(),
                   state_dir=state_dir, timeout=1.0)
    assert read_state(state_dir) is None
    assert (state_dir / "logs" / "head.log").exists()  # kept for the post-mortem
    assert _cluster_ids() <= before
