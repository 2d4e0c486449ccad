"""Joining a cluster with ``ensure_ray``: which addresses are joined as a 127.0.0.1 node (a
loopback-only Ray such as ``raygym cluster up`` starts), and the one-line refusal without the
cluster's token (fast: real sockets, no Ray cluster; the real join is in test_start.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from raygym import ray_runtime
from raygym.config import ResourcesConfig
from raygym.errors import RaygymError


@pytest.fixture
def listener(request: pytest.FixtureRequest) -> Iterator[int]:
    """A TCP port listening on ``request.param`` (127.0.0.1, or every interface)."""
    with socket.socket() as s:
        s.bind((request.param, 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("listener", ["127.0.0.1"], indirect=True)
def test_a_loopback_only_ray_is_joined_as_a_loopback_node(
        listener: int, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ray_runtime._loopback_only(f"127.0.0.1:{listener}")
    assert ray_runtime._loopback_only(f"localhost:{listener}")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listener}")  # as inside a Ray job
    assert ray_runtime._loopback_only("auto")


@pytest.mark.parametrize("listener", [""], indirect=True)
def test_other_addresses_are_joined_as_ray_would(listener: int) -> None:
    outside = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
               if a.family == socket.AF_INET and not a.address.startswith("127.")]
    if outside:  # on every interface (a plain `ray start --head`): Ray's own rewrite works
        assert not ray_runtime._loopback_only(f"127.0.0.1:{listener}")
    assert not ray_runtime._loopback_only(f"10.9.8.7:{listener}")
    assert not ray_runtime._loopback_only(f"ray://127.0.0.1:{listener}")
    assert not ray_runtime._loopback_only("127.0.0.1:1")  # nothing there


def test_a_refused_token_is_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    def refuse(**_: Any) -> None:  # as Ray 2.60 does, after 20 s of retries
        try:
            raise AuthenticationError("RPC error: InvalidAuthToken")
        except AuthenticationError as err:
            raise ConnectionError("Failed to connect to Ray cluster") from err

    def down(**_: Any) -> None:
        raise ConnectionError("down")

    import socket

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with socket.create_server(("127.0.0.1", 0)) as listening:  # something answers there
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(RaygymError, match="refused this driver's auth token") as info:
            ray_runtime.ensure_ray(ResourcesConfig(address=address))
        assert "raygym cluster status" in str(info.value) and "\n" not in str(info.value)

        monkeypatch.setattr(ray, "init", down)
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        with pytest.raises(RaygymError) as info:  # any other failure to join: one line too
            ray_runtime.ensure_ray(ResourcesConfig(address=address))
        assert str(info.value).startswith(
            f"resources.address: cannot join the Ray cluster at {address}: down (fix: start")
        # without a token of its own, the driver's likeliest fault is that (Ray 2.60 often
        # says so only in its C++ log lines): the line says so and how to get one
        monkeypatch.delenv("RAY_AUTH_MODE")
        with pytest.raises(RaygymError) as info:
            ray_runtime.ensure_ray(ResourcesConfig(address=address))
        assert "down; this driver sends no auth token" in str(info.value)
        assert "the export line of `raygym cluster status`" in str(info.value)
