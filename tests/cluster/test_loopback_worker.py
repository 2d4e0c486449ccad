"""raygym.cluster.loopback_worker: the private Ray function it replaces is still there, with
the same signature and meaning, and ``ray start`` still calls it through the module that the
launcher patches (fast: no Ray node is started). If this fails after a Ray upgrade, worker
nodes of ``raygym cluster up`` can no longer join their 127.0.0.1-only head."""

from __future__ import annotations

import inspect
import os

import pytest

from raygym.cluster import loopback_worker
from raygym.ray_runtime import LOOPBACK_ENV


def test_ray_still_has_resolve_ip_for_localhost_as_the_launcher_expects() -> None:
    from ray._private import ray_constants, services
    from ray.scripts import scripts

    fn = services.resolve_ip_for_localhost
    assert list(inspect.signature(fn).parameters) == ["host"]
    assert fn("10.1.2.3") == "10.1.2.3"  # other hosts pass through; 127.0.0.1 is rewritten
    assert scripts.services is services  # `ray start` looks it up where the launcher patches
    assert "services.resolve_ip_for_localhost(" in inspect.getsource(scripts.start.callback)
    assert callable(scripts.main)
    assert ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR == LOOPBACK_ENV


def test_install_keeps_127_0_0_1_and_sets_loopback_for_the_nodes_children(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import services

    monkeypatch.setattr(services, "resolve_ip_for_localhost", services.resolve_ip_for_localhost)
    monkeypatch.delenv(LOOPBACK_ENV, raising=False)
    loopback_worker.install()
    assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
    assert services.canonicalize_bootstrap_address("127.0.0.1:6390") == "127.0.0.1:6390"
    assert os.environ[LOOPBACK_ENV] == "0"


def test_install_refuses_when_ray_changed_the_function(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray._private import services

    monkeypatch.setattr(services, "resolve_ip_for_localhost", lambda host, family=None: host)
    monkeypatch.delenv(LOOPBACK_ENV, raising=False)
    with pytest.raises(RuntimeError, match="resolve_ip_for_localhost"):
        loopback_worker.install()
    monkeypatch.delattr(services, "resolve_ip_for_localhost")
    with pytest.raises(RuntimeError, match="changed in this Ray version"):
        loopback_worker.install()
    assert LOOPBACK_ENV not in os.environ
