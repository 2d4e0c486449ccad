"""What Ray processes listen on, and whom their HTTP servers answer: shared by the tests of the
local Ray (``ensure_ray``) and of ``raygym cluster up``, which both must stay on 127.0.0.1 and
demand their token; and a free loopback port for the servers and gloo groups tests start."""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable

import psutil


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def listening(procs: Iterable[psutil.Process]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket that ``procs`` listen on."""
    rows = []
    for proc in procs:
        try:
            rows += [(proc.name(), c.laddr.ip, c.laddr.port)
                     for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue  # a worker that just exited
    return rows


def assert_loopback_only(rows: list[tuple[str, str, int]], ports: Iterable[int]) -> None:
    """Every socket in ``rows`` is on loopback, and none of ``ports`` answers on any of this
    machine's other IPv4 addresses."""
    assert not [r for r in rows if not is_loopback(r[1])], rows
    outside = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
               if a.family == socket.AF_INET and not is_loopback(a.address)]
    for ip in outside:
        for port in ports:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((ip, port)) != 0, (ip, port)


def http_status(url: str, token: str | None = None) -> int:
    """The HTTP status of GET ``url``, with ``Authorization: Bearer token`` when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),  # noqa: S310
                                    timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
