"""The record of a running local cluster: ``<state_dir>/cluster.json``, written by
:func:`~raygym.cluster.cluster_up` and read by every other command, and the files it names."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from raygym.atomic import write_text_atomic
from raygym.errors import RaygymError

STATE_FILE = "cluster.json"
TOKEN_FILE = "auth_token"  # the cluster's Ray auth token, mode 0600, beside cluster.json
DEFAULT_STATE_DIR = Path(".raygym-cluster")
STATE_VERSION = 1


class ClusterError(RaygymError):
    """The local cluster could not be started, found or stopped."""


def state_path(state_dir: Path) -> Path:
    return Path(state_dir) / STATE_FILE


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """The recorded cluster (the ``cluster.json`` written by ``cluster_up``), or None."""
    path = state_path(state_dir)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ClusterError(f"unreadable cluster state: {err}", file=path,
                           fix="stop leftover processes by pid, then delete the file") from err


def write_state(state_dir: Path, state: dict[str, Any]) -> None:
    write_text_atomic(state_path(state_dir), json.dumps(state, indent=2) + "\n")


def token_path(state_dir: Path) -> Path:
    return Path(state_dir) / TOKEN_FILE


def new_token(state_dir: Path) -> str:
    """Make the cluster's Ray auth token (256 random bits, hex) and write it to
    ``<state_dir>/auth_token``, readable by this user only."""
    token = secrets.token_hex(32)
    path = token_path(state_dir)
    path.unlink(missing_ok=True)  # O_EXCL below: never reuse a file with looser permissions
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token


def read_token(state_dir: Path = DEFAULT_STATE_DIR) -> str:
    """The auth token of the cluster recorded in ``state_dir`` (what every node and client
    must present: ``RAY_AUTH_TOKEN``, or ``Authorization: Bearer`` over HTTP)."""
    path = token_path(Path(state_dir).absolute())
    try:
        return path.read_text().strip()
    except OSError as err:
        raise ClusterError(f"no cluster auth token: {err}", file=path,
                           fix="restart the cluster: `raygym cluster down`, then `up`") from err


def public_view(state: dict[str, Any]) -> dict[str, Any]:
    """What ``cluster_up`` returns: addresses, files and, per node, its name, role, resource,
    CPUs, Ray node id and pids (the state's bookkeeping, such as all pids, left out)."""
    keep = ("name", "index", "role", "resource", "num_cpus", "node_id", "node_ip", "pid",
            "raylet_pid", "gcs_pid", "log", "alive")
    return {
        "address": state["address"], "dashboard": state["dashboard"],
        "session_dir": state.get("session_dir"), "temp_dir": state.get("temp_dir"),
        "state_file": str(state_path(Path(state["state_dir"]))),
        "token_file": str(token_path(Path(state["state_dir"]))),
        "nodes": [{k: n.get(k) for k in keep if k in n} for n in state["nodes"]],
    }


def cluster_info(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any] | None:
    """What ``cluster_up`` returned for the cluster recorded in ``state_dir`` (or None)."""
    state = read_state(Path(state_dir).absolute())
    return None if state is None else public_view(state)


def forget_cluster(state_dir: Path, state: dict[str, Any], *, keep_temp: bool = False) -> None:
    """Remove the record of a stopped cluster: its state file, its token and, unless
    ``keep_temp``, its object-store/session folder (only one raygym made: ``raygym-*``)."""
    temp_dir = state.get("temp_dir")
    if not keep_temp and temp_dir and Path(temp_dir).name.startswith("raygym-"):
        shutil.rmtree(temp_dir, ignore_errors=True)
    token_path(state_dir).unlink(missing_ok=True)
    state_path(state_dir).unlink(missing_ok=True)
