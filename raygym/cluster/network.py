"""Ports for a local cluster, and the head's dashboard read over HTTP (no ``ray.init``, so the
calling process never joins the cluster)."""

from __future__ import annotations

import json
import random
import socket
import urllib.request
from pathlib import Path
from typing import Any

_HANDED_OUT: set[int] = set()  # ports free_port returned: never twice in one process


def port_free(port: int) -> bool:
    """True if nothing listens on ``port`` (checked on all interfaces: Ray's GCS binds there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


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
        if port not in _HANDED_OUT and port_free(port):
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # all taken: any free one
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _get_json(url: str, timeout: float = 5.0, token: str | None = None) -> Any:
    headers = {"Accept": "application/json"}
    if token:  # the cluster's token: its dashboard refuses anything else with 401/403
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (127.0.0.1 only)
        return json.loads(resp.read().decode())


def list_nodes(dashboard: str, timeout: float = 5.0, *, token: str | None = None
               ) -> list[dict[str, Any]]:
    """Nodes known to the cluster (Ray state API through the dashboard, no ``ray.init``).

    ``dashboard`` is ``http://127.0.0.1:PORT``; ``timeout`` in seconds; ``token`` the
    cluster's auth token (:func:`~raygym.cluster.state.read_token`). Each entry has
    ``node_id``, ``node_ip``, ``is_head_node``, ``state`` (ALIVE/DEAD), ``resources_total``
    and more.
    """
    body = _get_json(f"{dashboard}/api/v0/nodes?limit=1000&detail=1", timeout, token)
    data = body.get("data", {}).get("result", {})
    rows = data.get("result", data) if isinstance(data, dict) else data
    return list(rows or [])
