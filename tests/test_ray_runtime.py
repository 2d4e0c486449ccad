"""The local Ray that ``ensure_ray`` starts: loopback only, a per-session token, the user's own
``RAY_AUTH_MODE`` kept. Each real Ray runs in a subprocess of its own (never the session's
shared Ray, which runs without authentication for the other tests)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raygym import ray_runtime
from raygym.ray_runtime import AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV
from tests.ray_exposure import assert_loopback_only, http_status, listening, process_tree

# Variables that would point the driver at another Ray, or decide its auth, in this process.
FOREIGN_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_GCS_SERVER_PORT", AUTH_MODE_ENV,
               AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV, ray_runtime.LOOPBACK_ENV)
STALE_TOKEN = "0" * 64  # as if left in ~/.ray/auth_token by an earlier `ray.init`

# Starts Ray as raygym does (Ray imported first, as on the train path), runs one task so that a
# worker listens too, reports its addresses, then holds Ray until stdin closes.
DRIVER = """
import json, os, sys
import ray
from raygym.config import ResourcesConfig
from raygym.ray_runtime import ensure_ray, session_token_file
ensure_ray(ResourcesConfig(num_cpus=1, object_store_memory=80 * 2**20),
           dashboard=sys.argv[2] == "1")
ray.get(ray.remote(lambda: os.getpid()).remote())
node = ray._private.worker._global_node
print(json.dumps({"gcs": node.gcs_address, "web": node.address_info["webui_url"],
                  "session": node.get_session_dir_path(),
                  "token_file": str(session_token_file() or ""),
                  "mode": os.environ.get("RAY_AUTH_MODE"),
                  "loopback_env": os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}),
      file=open(sys.argv[1] + ".tmp", "w"))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
sys.stdin.read()
"""


def _wait_for_dashboard(web: str, timeout_s: float = 60.0) -> None:
    """Poll the dashboard's public health route (no token needed) until it answers 200."""
    assert web, "ray.init reported no dashboard URL"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if http_status(f"http://{web}/api/gcs_healthz") == 200:
                return
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, f"dashboard at {web} not up within {timeout_s} s"
        time.sleep(0.5)


@pytest.fixture
def local_ray(tmp_path: Path) -> Iterator[Any]:
    """``start(auth_mode, dashboard) -> (info, pid)``: ``ensure_ray`` in a subprocess with a
    HOME of its own that holds a stale ``~/.ray/auth_token``; stopped and its session folder
    removed afterwards."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(auth_mode: str | None, dashboard: bool) -> tuple[dict[str, Any], int]:
        home = tmp_path / "home"
        (home / ".ray").mkdir(parents=True)
        (home / ".ray" / "auth_token").write_text(STALE_TOKEN)
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
        env["HOME"] = str(home)
        if auth_mode is not None:
            env[AUTH_MODE_ENV] = auth_mode
        out = tmp_path / "driver.json"
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(out), str(int(dashboard))],
                                env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=(tmp_path / "driver.log").open("wb"),
                                start_new_session=True)
        started.append((proc, out))
        deadline = time.monotonic() + 180  # generous: a busy shared machine starts Ray slowly
        while not out.exists():
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Ray did not start within 180 s"
            time.sleep(0.2)
        return json.loads(out.read_text()), proc.pid

    yield start
    for proc, out in started:
        assert proc.stdin is not None
        proc.stdin.close()  # the driver exits; ray.shutdown at exit stops its processes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        if out.exists():
            session = Path(json.loads(out.read_text())["session"])
            if session.name.startswith("session_"):  # under /tmp/ray, or $RAY_TMPDIR/ray
                shutil.rmtree(session, ignore_errors=True)


def _assert_loopback_only(info: dict[str, Any], pid: int) -> None:
    rows = listening(process_tree(pid))
    names = {name for name, _, _ in rows}
    assert {"gcs_server", "raylet"} <= names, rows  # the tree was read, not an empty list
    assert info["gcs"].startswith("127.0.0.1:")
    assert_loopback_only(rows, [int(info["gcs"].rsplit(":", 1)[1])])


@pytest.mark.slow
def test_local_ray_is_loopback_only_and_refuses_a_client_without_its_token(local_ray: Any
                                                                          ) -> None:
    info, pid = local_ray(None, True)
    _assert_loopback_only(info, pid)
    assert info["mode"] == "token"
    assert info["loopback_env"] is None  # set only while Ray started its processes
    token_file = Path(info["token_file"])
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token) and token != STALE_TOKEN
    assert token_file.parent == Path(info["session"])

    # gRPC: this test process has no token (conftest: RAY_AUTH_MODE=disabled).
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    with pytest.raises(AuthenticationError):
        GcsClient(address=info["gcs"]).internal_kv_keys(b"", namespace=None, timeout=30)
    # HTTP: refused without a token and with the stale one from ~/.ray; the session's works.
    _wait_for_dashboard(info["web"])
    url = f"http://{info['web']}/api/v0/nodes"
    assert http_status(url) == 401
    assert http_status(url, STALE_TOKEN) == 403  # a wrong token: forbidden
    assert http_status(url, token) == 200


@pytest.mark.slow
def test_the_users_auth_mode_disabled_is_kept(local_ray: Any) -> None:
    info, pid = local_ray("disabled", False)
    _assert_loopback_only(info, pid)
    assert info["mode"] == "disabled"
    assert info["token_file"] == ""
    from ray._raylet import GcsClient

    # no token needed: the user's choice (the cluster is still reachable from this host only)
    GcsClient(address=info["gcs"]).internal_kv_keys(b"", namespace=None, timeout=30)


# ---------------------------------------------------------------------- env rules (no Ray)
@pytest.fixture
def auth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No auth variables, and Ray's C++ module hidden from ``use_session_token``: its config
    refresh must not switch this test process (and its shared Ray) to token mode."""
    for key in (AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delitem(sys.modules, "ray._raylet", raising=False)
    return monkeypatch


@pytest.mark.parametrize("mode", ["disabled", "token"])
def test_a_users_auth_mode_is_left_alone(auth_env: pytest.MonkeyPatch, mode: str) -> None:
    auth_env.setenv(AUTH_MODE_ENV, mode)
    assert ray_runtime.use_session_token() is None
    assert os.environ[AUTH_MODE_ENV] == mode
    assert AUTH_TOKEN_ENV not in os.environ


def test_a_fresh_token_per_process_unless_the_user_gave_one(auth_env: pytest.MonkeyPatch
                                                            ) -> None:
    token = ray_runtime.use_session_token()
    assert token is not None and re.fullmatch(r"[0-9a-f]{64}", token)
    assert os.environ[AUTH_TOKEN_ENV] == token
    assert os.environ[AUTH_MODE_ENV] == "token"
    assert ray_runtime.use_session_token() is None  # mode now set: the same token stays
    assert os.environ[AUTH_TOKEN_ENV] == token

    auth_env.delenv(AUTH_MODE_ENV)
    auth_env.setenv(AUTH_TOKEN_PATH_ENV, "/some/where/token")
    auth_env.delenv(AUTH_TOKEN_ENV)
    assert ray_runtime.use_session_token() is None  # the user's token file is used
    assert os.environ[AUTH_MODE_ENV] == "token"
    assert AUTH_TOKEN_ENV not in os.environ


def _node(host: str, cpus: float, alive: bool = True) -> dict[str, Any]:
    return {"NodeManagerHostname": host, "Alive": alive, "Resources": {"CPU": cpus}}


def test_trial_start_limit_counts_machines_not_ray_nodes() -> None:
    import socket

    here, cores = socket.gethostname(), ray_runtime.machine_cores()
    # a local Ray with more logical CPUs than cores: the cores
    assert ray_runtime.trial_start_limit([_node(here, 64)]) == min(cores, 64)
    # 32 loopback nodes on this machine: still this machine's cores, not 32
    assert ray_runtime.trial_start_limit([_node(here, 1)] * 32) == min(cores, 32)
    # other machines count their logical CPUs; a head without CPUs and dead nodes count nothing
    nodes = [_node(here, 0), _node("gpu-a", 8), _node("gpu-a", 8), _node("gpu-b", 16),
             _node("gone", 99, alive=False)]
    assert ray_runtime.trial_start_limit(nodes) == 32
    assert ray_runtime.trial_start_limit([]) == 1


@pytest.mark.parametrize("users_level", [None, "DEBUG"])
def test_ray_data_imported_before_raygym_gets_the_quiet_level_unless_the_user_chose(
        users_level: str | None) -> None:
    """An API user who imports ``ray.tune`` (hence Ray Data, which reads its log level once)
    before raygym sets its Ray defaults would see every dataset's progress at INFO level."""
    script = ("import logging, ray.data\n"
              "from raygym.ray_runtime import set_ray_env\n"
              "before = logging.getLogger('ray.data').getEffectiveLevel()\n"
              "set_ray_env()\n"
              "print(before, logging.getLogger('ray.data').getEffectiveLevel())\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_DATA_LOG_LEVEL"}
    if users_level:
        env["RAY_DATA_LOG_LEVEL"] = users_level
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = map(int, out.stdout.split()[-2:])
    if users_level:
        assert before == after == logging.DEBUG  # the user's own level stays
    else:
        assert before <= logging.INFO and after == logging.ERROR  # INFO passed, now not


@pytest.mark.parametrize("users_value", [None, "3"])
def test_ray_train_polls_its_workers_every_half_second_unless_the_user_chose(
        monkeypatch: pytest.MonkeyPatch, users_value: str | None) -> None:
    """Ray Train's 2 s poll held each epoch's report back ~1.2 s (a 10-epoch demo run 51 s
    against 32-39 s); set before Ray starts, so its controller and workers inherit it."""
    key = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
    monkeypatch.delenv(key, raising=False)
    if users_value:
        monkeypatch.setenv(key, users_value)
    ray_runtime.set_ray_env()
    assert os.environ[key] == (users_value or "0.5")


def test_joining_an_address_where_nothing_listens_is_one_line_at_once() -> None:
    """``--address HOST:PORT`` (or ``ray://``) with no cluster there: Ray retried for minutes
    and ended in a traceback (ray://: ConnectionError after 30 s); now one line naming the
    address, before ``ray.init``."""
    import socket

    from raygym.errors import RaygymError

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        started = time.perf_counter()
        with pytest.raises(RaygymError) as err:
            ray_runtime._join(address, {})
        assert time.perf_counter() - started < 5
        assert str(err.value).startswith(
            f"resources.address: no Ray cluster answers at {address} (Connection refused)")
        assert "raygym cluster up" in str(err.value)
    assert ray_runtime._unreachable("auto") is None  # Ray's own to resolve


def test_predict_ray_names_its_address_option_where_nothing_listens(tmp_path: Path) -> None:
    """``raygym predict --ray --address`` joins as a search does (a fresh process: no Ray is
    up); where nothing listens, one line naming ``--address``, and no --out left behind."""
    import socket

    import numpy as np
    from PIL import Image

    from raygym.config import validate_experiment
    from raygym.inference.artifact import export_artifact
    from raygym.models import build_model

    config = validate_experiment({
        "name": "tiny", "data": {"images": str(tmp_path), "labels": str(tmp_path),
                                 "classes": ["a", "b"], "target_size": [32, 32],
                                 "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    model = build_model("gym_unet", in_channels=3, num_classes=2,
                        **config.model.builder_kwargs())
    artifact = export_artifact(tmp_path / "model", model, config, in_channels=3,
                               classes=["a", "b"], metrics={}, dataset={})
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "raygym.cli", "predict", str(artifact), str(tmp_path / "a.png"),
         "--out", str(tmp_path / "maps"), "--ray", "--address", f"127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        f"error: --address: no Ray cluster answers at 127.0.0.1:{port} (Connection refused) "
        f"(fix: {ray_runtime.JOIN_FIX})")
    assert not (tmp_path / "maps").exists()


def test_an_address_other_than_the_running_ray_is_refused(ray_session: None) -> None:
    """A Python API caller who ran ``ray.init`` first and names another cluster is told so in
    one line, not run on the Ray that is up; that Ray's own address (as localhost too),
    ``auto`` or no address take it."""
    import ray

    from raygym.config import ResourcesConfig
    from raygym.errors import RaygymError

    running = ray.get_runtime_context().gcs_address
    port = running.rpartition(":")[2]
    for same in (running, f"localhost:{port}", "auto", None):
        assert ray_runtime.ensure_ray(ResourcesConfig(address=same)) is False
    for other in (f"127.0.0.1:{int(port) + 1}", "ray://head:10001"):
        with pytest.raises(RaygymError) as info:
            ray_runtime.ensure_ray(ResourcesConfig(address=other), address_key="--address")
        text = str(info.value)
        assert text.startswith(f"--address: asks for the Ray cluster at {other}, but this "
                               "process already runs in ") and "ray.shutdown()" in text
    assert ray.is_initialized()  # the running Ray is left as it was
