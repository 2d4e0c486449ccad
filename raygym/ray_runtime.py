"""Starting or joining Ray quietly, with the settings that matter on small machines (the
environment variables below must be set before Ray starts).

A local Ray that raygym starts is kept to this machine and to this user:

- its servers listen on 127.0.0.1 only (GCS, raylet, object manager, workers, agents,
  dashboard), not on every interface;
- it demands a token (Ray's ``RAY_AUTH_MODE=token``) that is made for this process alone,
  kept in its environment (so Ray's processes inherit it) and in a file only the user can
  read inside the Ray session folder, never in ``~/.ray/auth_token``: Ray turns token
  authentication on for every later ``ray start`` that finds a token there, and clients
  without it (raygym's own cluster code among them) then get 401s.

A user's own ``RAY_AUTH_MODE`` (with its token source) and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``
are kept as they are. Joining a cluster (``resources.address``, ``RAY_ADDRESS``) makes no token:
the cluster's must be in the environment (for ``raygym cluster up``: the ``export`` line of
``raygym cluster status``); a cluster on this machine that answers on 127.0.0.1 only (as
``raygym cluster up`` starts it) is joined as a 127.0.0.1 node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raygym.compat import (
    disable_multi_node_address_rewrite,
    refresh_ray_auth_config,
    session_dir,
)
from raygym.config import ResourcesConfig
from raygym.errors import RaygymError

RAY_ENV_DEFAULTS = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "1",
    "RAY_DATA_LOG_LEVEL": "ERROR",
    "RAY_TRAIN_V2_ENABLED": "1",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "PYTHONWARNINGS": "ignore::DeprecationWarning",
    # Ray Train's controller polls its workers every 2 s, and a worker's report waits for the
    # poll that collects it: ~1.2 s per epoch of `raygym train examples/demo_train.yaml`
    # (10 epochs: 51-52 s at 2 s, 32-39 s at 0.5 s; bench/RESULTS.md, seventeenth session).
    # A poll is one small actor call per worker.
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
}
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
# "0" makes Ray treat this host as it treats macOS and Windows: the node's IP is 127.0.0.1
# (instead of the address that routes outside), and Ray binds its servers to loopback for that
# IP only. ``ray.init(_node_ip_address="127.0.0.1")`` is no way there: Ray resolves it back to
# the outside address. The price: such a node cannot be joined by other nodes.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_FILE = "raygym_auth_token"  # in the Ray session folder, mode 0600
# A custom resource of a local Ray started for a search: one unit per trial the search may run
# at once, so that Ray itself never holds more trial actors (starting, running or cached for
# reuse) than that. See :func:`trial_slots`.
TRIAL_SLOT = "raygym_trial_slot"


def set_ray_env(progress_bars: bool = True) -> None:
    """Set Ray's environment defaults (the user's own values win)."""
    data_level_unset = "RAY_DATA_LOG_LEVEL" not in os.environ
    for key, value in RAY_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if not progress_bars:
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    if data_level_unset and "ray.data" in sys.modules:
        # Ray Data read its level when it was imported (an API user's `import ray.tune` before
        # raygym runs): give its logger the level it would have read, or every dataset's
        # progress is logged at INFO level
        logging.getLogger("ray.data").setLevel(os.environ["RAY_DATA_LOG_LEVEL"])


def ensure_ray(resources: ResourcesConfig | None = None, *, progress_bars: bool = True,
               dashboard: bool = False, trial_slots: int | None = None,
               address_key: str = "resources.address") -> bool:
    """Start a local Ray (or join ``resources.address``) unless one is up; True if started here.

    ``trial_slots``: a local Ray started here gets that many units of :data:`TRIAL_SLOT`.
    ``address_key``: what a failure to join names (``--address`` for predict / evaluate).

    A local Ray listens on 127.0.0.1 only and, unless the user set ``RAY_AUTH_MODE``, demands
    this process's own token (see the module docstring; :func:`session_token_file`).
    """
    set_ray_env(progress_bars)
    import ray

    res = resources or ResourcesConfig()
    if ray.is_initialized():
        _check_running_ray(res.address, address_key)
        return False
    address = res.address or os.environ.get("RAY_ADDRESS")  # set inside `ray job submit`
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": True}
    if address:
        _join(address, kwargs, address_key)
        return True
    token = use_session_token()
    with loopback_node():
        ray.init(
            address="local",  # never join a stale cluster from /tmp/ray/ray_current_cluster
            num_cpus=res.num_cpus,
            object_store_memory=res.object_store_memory,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            resources={TRIAL_SLOT: trial_slots} if trial_slots else None,
            **kwargs,
        )
    if token is not None:
        _write_token_file(token)
    return True


def trial_slots() -> int:
    """Units of :data:`TRIAL_SLOT` in the running Ray (0: none, e.g. a cluster or a user's Ray).

    A trial that takes one cannot get an actor until one of the search's is really free, so
    Tune starts no spare trial processes on logical CPUs the search does not use
    (``bench/RESULTS.md``, bench_scale, sixth pass).
    """
    import ray

    return int(ray.cluster_resources().get(TRIAL_SLOT, 0))


def machine_cores() -> int:
    """CPU cores this process may run on (not Ray's logical CPUs)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def trial_start_limit(nodes: list[dict[str, Any]] | None = None) -> int:
    """How many trial processes may start at once: the cores of the machines Ray runs on.

    A new trial process imports Ray Tune (~1.6 s of CPU); Ray starts one per pending trial on
    whichever node has room, and cannot tell that several nodes share one machine (the
    loopback cluster of ``bench_scale``: 32 nodes on 2 cores took 60 s to the first epoch).
    Nodes are grouped by host name; this machine counts its real cores, any other machine
    the logical CPUs of its Ray nodes. ``nodes``: ``ray.nodes()`` (read here when None).
    """
    if nodes is None:
        import ray

        nodes = ray.nodes()
    here = socket.gethostname()
    cpus_by_host: dict[str, float] = {}
    for node in nodes:
        cpus = float(node.get("Resources", {}).get("CPU", 0.0))
        if node.get("Alive") and cpus > 0:
            host = str(node.get("NodeManagerHostname") or node.get("NodeManagerAddress"))
            cpus_by_host[host] = cpus_by_host.get(host, 0.0) + cpus
    return max(1, sum(min(machine_cores(), int(cpus)) if host == here else int(cpus)
                      for host, cpus in cpus_by_host.items()))


def use_session_token() -> str | None:
    """Turn on Ray's token authentication with a fresh token, unless the user chose a mode.

    Sets ``RAY_AUTH_MODE=token`` and (when the user gave no ``RAY_AUTH_TOKEN`` /
    ``RAY_AUTH_TOKEN_PATH``) ``RAY_AUTH_TOKEN`` to 256 random bits, in this process's
    environment, which the Ray processes it starts inherit. Returns the token made here, else
    None (the user's ``RAY_AUTH_MODE`` is kept, token source and all).
    """
    if AUTH_MODE_ENV in os.environ:
        return None
    token = None
    if not (os.environ.get(AUTH_TOKEN_ENV) or os.environ.get(AUTH_TOKEN_PATH_ENV)):
        # The variable outranks ~/.ray/auth_token, so a stale token there is never used.
        token = secrets.token_hex(32)
        os.environ[AUTH_TOKEN_ENV] = token
    os.environ[AUTH_MODE_ENV] = "token"
    # Ray copied RAY_AUTH_MODE into its C++ config when it was imported (raygym imports Ray
    # before this point on some paths): without a refresh this driver would go on sending no
    # token and its own GCS would refuse it.
    refresh_ray_auth_config()
    return token


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """Make the Ray that starts inside this block a 127.0.0.1 node (unless the user set
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``).

    The variable is set only while Ray starts its processes (they keep it: Ray's state API in
    a worker must resolve ``127.0.0.1:PORT`` to 127.0.0.1 too), then removed again, so that a
    later ``ray start --address`` launched from this process is not refused. Ray read the
    variable into a constant when it was imported; that constant is set for this process,
    which stays a loopback Ray host.
    """
    if LOOPBACK_ENV in os.environ:
        yield
        return
    os.environ[LOOPBACK_ENV] = "0"
    disable_multi_node_address_rewrite()
    try:
        yield
    finally:
        os.environ.pop(LOOPBACK_ENV, None)


def _check_running_ray(address: str | None, key: str) -> None:
    """Refuse, with one line, an explicit cluster address (``host:port``, ``ray://...``)
    other than the Ray this process already runs in: a caller of the Python API who called
    ``ray.init`` before would otherwise run on that Ray, not on the one it named. ``auto``
    and no address take the running Ray."""
    import ray

    if not address or address == "auto":
        return
    if address.startswith("ray://"):
        from ray.util.client import ray as client

        if client.is_connected():
            return  # (Ray Client keeps no address to compare; one client per process)
        running = "a Ray started in this process"
    else:
        running = ray.get_runtime_context().gcs_address
        if _same_endpoint(address, running):
            return
    raise RaygymError(f"asks for the Ray cluster at {address}, but this process already runs "
                      f"in {running}", key=key, fix="call ray.shutdown() first, or drop the "
                      "address to use the running Ray")


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two ``host:port`` addresses name the same port on the same machine
    (``localhost``, ``127.0.0.1`` and this machine's own address alike)."""
    import ipaddress
    import socket

    import ray

    def resolved(address: str) -> tuple[str, str]:
        host, _, port = address.rpartition(":")
        try:
            return socket.gethostbyname(host), port
        except OSError:
            return host, port

    def here(ip: str) -> bool:
        try:
            return (ipaddress.ip_address(ip).is_loopback
                    or ip == ray.util.get_node_ip_address())
        except ValueError:
            return False

    (ip_a, port_a), (ip_b, port_b) = resolved(a), resolved(b)
    return port_a == port_b and (ip_a == ip_b or (here(ip_a) and here(ip_b)))


def _join(address: str, kwargs: dict[str, Any], key: str = "resources.address") -> None:
    """``ray.init(address)``, as a 127.0.0.1 node where the cluster listens there only. An
    address where nothing answers is refused at once, before Ray retries for minutes; a
    refused token becomes one line that says where to get it (Ray's own error is a ~50-line
    traceback after 20 s of retries), and any other failure to join one line too."""
    import ray
    from ray.exceptions import AuthenticationError

    silent = _unreachable(address)
    if silent is not None:  # Ray would retry for minutes, then end in a traceback
        raise RaygymError(f"no Ray cluster answers at {address} ({silent})",
                          key=key, fix=JOIN_FIX)
    join = loopback_node() if _loopback_only(address) else contextlib.nullcontext()
    try:
        with join:
            ray.init(address=address, **kwargs)
    except ConnectionError as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, AuthenticationError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            # Ray 2.60 often reports a missing token only in its C++ log lines
            tokenless = os.environ.get(AUTH_MODE_ENV, "").lower() != "token"
            raise RaygymError(
                f"cannot join the Ray cluster at {address}: {first}" + (
                    "; this driver sends no auth token, which a cluster that requires one "
                    "(as `raygym cluster up` does) refuses" if tokenless else ""),
                key=key, fix=TOKEN_FIX if tokenless else JOIN_FIX) from None
        raise RaygymError(f"the Ray cluster at {address} refused this driver's auth token",
                          key=key, fix=TOKEN_FIX) from err


def _loopback_only(address: str) -> bool:
    """True if ``address`` (``127.0.0.1:PORT`` / ``localhost:PORT``; ``auto`` reads
    ``RAY_ADDRESS``) is a Ray on this machine that answers on 127.0.0.1 but not on the
    machine's outside address: a driver must then join it as a 127.0.0.1 node, or Ray rewrites
    the address to the outside one and fails after 20-60 s. A Ray that listens everywhere
    (a plain ``ray start --head``) is joined as before: its raylet has the outside address."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        return False  # another host, or ray:// (Ray Client, which has no node IP of its own)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 80))  # picks the outside interface; sends nothing
            outside = probe.getsockname()[0]
    except OSError:
        return False  # no outside address: Ray keeps 127.0.0.1 by itself
    return _answers("127.0.0.1", int(port)) and not _answers(outside, int(port))


TOKEN_FIX = (f"export its token ({AUTH_MODE_ENV}=token and {AUTH_TOKEN_ENV}); for `raygym "
             "cluster up`: the export line of `raygym cluster status`")
JOIN_FIX = ("start the cluster first (`raygym cluster up`, or `ray start --head` on its head "
            "node), or correct --address / resources.address")


def _unreachable(address: str) -> str | None:
    """Why nothing answers at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``: refused, timed
    out, unknown host), or None when something listens there (or the form is Ray's own to
    resolve, e.g. ``auto``)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return _silent(host.strip("[]"), int(port), timeout=3.0)


def _silent(host: str, port: int, timeout: float) -> str | None:
    """Why nothing accepts a TCP connection at ``host:port`` (refused, timed out, unknown
    host), or None when something does."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return err.strerror or type(err).__name__


def _answers(host: str, port: int) -> bool:
    return _silent(host, port, timeout=2.0) is None


def session_token_file() -> Path | None:
    """The file (mode 0600) with the token of the local Ray this process started, for a client
    such as the Ray dashboard's login page or ``RAY_AUTH_TOKEN_PATH=FILE ray status``; None
    when there is none."""
    import ray

    if not ray.is_initialized():
        return None
    path = Path(session_dir()) / TOKEN_FILE
    return path if path.is_file() else None


def _write_token_file(token: str) -> None:
    """Write ``token`` beside the Ray session's logs, readable by this user only; the session
    folder goes (``/tmp/ray/session_*``), the token goes with it."""
    path = Path(session_dir()) / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))
