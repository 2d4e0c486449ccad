"""raygym.cluster.start against a real local cluster: nodes on 127.0.0.1 only that demand the
cluster's token, placement by node resource (drivers joining with the token), jobs through the
dashboard, refusals, and a failed start that leaves nothing behind.

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
    driver_env,
    free_port,
    read_state,
    read_token,
    worker_resource,
)
from raygym.cluster.processes import cluster_processes
from raygym.ray_runtime import AUTH_MODE_ENV, AUTH_TOKEN_ENV, LOOPBACK_ENV
from tests.ray_exposure import assert_loopback_only, http_status, listening

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

# argv: address, resource to run on, "init" (plain ray.init) or "ensure_ray" (raygym's join)
DRIVER = r"""
import json, sys
import ray

if sys.argv[3] == "ensure_ray":
    from raygym.config import ResourcesConfig
    from raygym.ray_runtime import ensure_ray
    ensure_ray(ResourcesConfig(address=sys.argv[1]), progress_bars=False)
else:
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


def token_only_env(state_dir: Path) -> dict[str, str]:
    """A user's shell with just the cluster's token exported (no loopback variable, no
    address): what ``raygym search --address 127.0.0.1:PORT`` must cope with."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", LOOPBACK_ENV)}
    env.update({AUTH_MODE_ENV: "token", AUTH_TOKEN_ENV: read_token(state_dir)})
    return env


def run_driver(address: str, resource: str, env: dict[str, str], join: str = "init"
               ) -> dict[str, Any]:
    """Run a short Ray driver in a subprocess; return what it printed."""
    out = subprocess.run([sys.executable, "-c", DRIVER, address, resource, join], env=env,
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

    result = run_driver(info["address"], worker_resource(0), driver_env(state_dir))
    assert result["alive"] == 2
    assert result["cpus"] == 2.0
    assert {"head", worker_resource(0)} <= set(result["resources"])
    assert result["task_node"] == worker["node_id"]  # pinned to the worker node's raylet

    # raygym's own join (as `raygym search --address 127.0.0.1:PORT`) with only the token
    started = time.monotonic()
    result = run_driver(info["address"], "head", token_only_env(state_dir), join="ensure_ray")
    assert result["task_node"] == head["node_id"] and result["alive"] == 2
    assert time.monotonic() - started < 60  # not the 20-60 s of a retried outside address

    status = cluster_status(state_dir=state_dir)
    assert "worker_0" in status and "ALIVE" in status
    assert f"RAY_AUTH_TOKEN=\"$(cat {info['token_file']})\"" in status
    assert read_token(state_dir) not in status


def test_loopback_only_and_refuses_a_client_without_the_token(
        cluster: tuple[Path, dict[str, Any]]) -> None:
    state_dir, info = cluster
    state = read_state(state_dir)
    assert state is not None
    rows = listening(cluster_processes(state))
    names = [name for name, _, _ in rows]
    assert "gcs_server" in names and names.count("raylet") >= 2, rows  # both nodes were read
    ports = [state["head_port"], state["dashboard_port"], state["client_port"]]
    assert {port for _, _, port in rows} >= set(ports), rows
    assert_loopback_only(rows, ports)
    assert {n["node_ip"] for n in info["nodes"]} == {"127.0.0.1"}

    token_file = Path(info["token_file"])
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = read_token(state_dir)
    assert token not in (state_dir / "cluster.json").read_text()

    # gRPC: this test process has no token (conftest: RAY_AUTH_MODE=disabled)
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError):
        GcsClient(address=info["address"]).internal_kv_keys(b"", namespace=None, timeout=30)
    # HTTP: the job and state APIs want the token; the health route does not
    url = f"{info['dashboard']}/api/v0/nodes"
    assert http_status(f"{info['dashboard']}/api/gcs_healthz") == 200
    assert http_status(url) == 401
    assert http_status(url, "0" * 64) == 403
    assert http_status(url, token) == 200
    assert http_status(f"{info['dashboard']}/api/jobs/") == 401


# a task on the worker node prints one line; the driver must see it once (no dedup by Ray)
PRINTING_DRIVER = r"""
import sys, time
import ray


class Counting:
    # Ray's log thread writes workers' lines to sys.stdout as found at the time of writing
    def __init__(self, inner):
        self.inner, self.seen = inner, 0

    def write(self, text):
        self.seen += text.count("LINE-FROM-THE-WORKER-NODE")
        return self.inner.write(text)

    def __getattr__(self, name):
        return getattr(self.inner, name)


sys.stdout = counting = Counting(sys.stdout)
ray.init(address=sys.argv[1], logging_level="ERROR")

@ray.remote(num_cpus=0, resources={sys.argv[2]: 0.01})
def speak():
    print("LINE-FROM-THE-WORKER-NODE", flush=True)

ray.get(speak.remote(), timeout=60)
deadline = time.monotonic() + 60
while not counting.seen and time.monotonic() < deadline:  # slow on a busy machine
    time.sleep(0.2)
time.sleep(3)  # a second log monitor polls the same file every 0.1 s: its copy comes soon
"""


def test_a_task_print_reaches_the_driver_once(cluster: tuple[Path, dict[str, Any]]) -> None:
    state_dir, info = cluster
    env = {**driver_env(state_dir), "RAY_DEDUP_LOGS": "0"}
    out = subprocess.run([sys.executable, "-c", PRINTING_DRIVER, info["address"],
                          worker_resource(0)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in (out.stdout + out.stderr).splitlines()
             if "LINE-FROM-THE-WORKER-NODE" in ln]
    assert len(lines) == 1, lines  # one log monitor for the shared session folder
    state = read_state(state_dir)
    assert state is not None
    monitors = [p for p in cluster_processes(state) if "log_monitor" in _cmdline(p)]
    assert len(monitors) == 1, monitors


def _cmdline(process: Any) -> str:
    """A process's command line; "" for one that exited meanwhile (seen in CI: a zombie of
    the driver that just ran, whose command line can no longer be read)."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def test_job_submission_through_the_dashboard(cluster: tuple[Path, dict[str, Any]]) -> None:
    state_dir, info = cluster
    dashboard = info["dashboard"]
    ray_cli = str(Path(sys.executable).parent / "ray")
    job_id = f"raygym-test-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([ray_cli, "job", "submit", "--address", dashboard, "--no-wait",
                          "--submission-id", job_id, "--",
                          "python", "-c", "print('job says', 6 * 7)"],
                         env=driver_env(state_dir), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    from ray.job_submission import JobStatus, JobSubmissionClient  # HTTP only, no ray.init

    client = JobSubmissionClient(
        dashboard, headers={"Authorization": f"Bearer {read_token(state_dir)}"})
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
    assert not (state_dir / "auth_token").exists()  # the token goes with its cluster
    assert (state_dir / "logs" / "head.log").exists()  # kept for the post-mortem
    assert _cluster_ids() <= before
