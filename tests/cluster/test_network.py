"""raygym.cluster.network: free ports and the dashboard's node list, against a real socket
and a real HTTP server on 127.0.0.1 (fast: no Ray)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from raygym.cluster.network import free_port, list_nodes, port_free

NODES = [{"node_id": "n1", "state": "ALIVE"}, {"node_id": "n2", "state": "DEAD"}]
TOKEN = "ab" * 32


def test_free_ports_are_free_and_never_repeated() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    assert all(port_free(p) for p in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", ports[0]))
        s.listen()
        assert not port_free(ports[0])


class _Dashboard(BaseHTTPRequestHandler):
    """Answers Ray's state API the way Ray 2.x nests it (data.result.result), to the holder of
    ``TOKEN`` only, as a cluster with token authentication does."""

    def do_GET(self) -> None:  # the name http.server calls
        assert self.path.startswith("/api/v0/nodes")
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_error(401)
            return
        body = json.dumps({"data": {"result": {"result": NODES, "total": 2}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def dashboard() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Dashboard)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_list_nodes_reads_the_state_api_with_the_token(dashboard: str) -> None:
    assert list_nodes(dashboard, timeout=5.0, token=TOKEN) == NODES
    with pytest.raises(urllib.error.HTTPError, match="401"):
        list_nodes(dashboard, timeout=5.0)
