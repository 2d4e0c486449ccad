"""``raygym dashboard RESULTS``: optuna-dashboard and TensorBoard for a search, live or after.

Both run as child processes of this one (``optuna-dashboard RESULTS/optuna.journal`` and
``tensorboard --logdir <Tune storage>/<name>``), bound to 127.0.0.1 by default: neither has any
authentication (and optuna-dashboard can delete studies), so another host address needs
``--allow-remote`` as well and gets a warning. A port
that is taken moves to the next free one (and says so). The Ray dashboard's address is printed
too when a Ray cluster answers on 127.0.0.1:8265. Ctrl-C stops both children.

The children die with this process however it ends: Ctrl-C, SIGTERM, SIGHUP and a normal exit
stop them (signal handlers, ``atexit``); on Linux the kernel sends them SIGTERM when this
process is killed outright (``PR_SET_PDEATHSIG``, which follows the thread that started
them: call :func:`start_dashboards` from one that lives as long as they should). ``raygym-dashboard-*/dashboard.json`` in
the temp folder is the pidfile (this process, its children, the URLs); the next start sweeps
the folders of dashboards that are gone and the children they left behind (elsewhere than
Linux, where SIGKILL leaves them running).

:func:`start_dashboards` is the library function (tests use it); :func:`serve_dashboards` is the
CLI's blocking loop around it. Both viewers come with the ``dashboard`` extra
(``pip install 'raygym[dashboard]'``); without them the command stops at once with one line
naming what is missing (:func:`require_viewers`), before anything starts.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from raygym.atomic import pid_alive
from raygym.errors import DataError, RaygymError
from raygym.search.study_storage import STUDY_FILE, dashboard_argument, study_file

RAY_DASHBOARD = "http://127.0.0.1:8265"
PORT_TRIES = 50
START_TIMEOUT_S = 60.0
TEMP_PREFIX = "raygym-dashboard-"
PIDFILE = "dashboard.json"
VIEWERS = {"optuna-dashboard": "optuna_dashboard", "tensorboard": "tensorboard"}
"""The viewers' distributions (what pip installs) -> the modules this Python must import."""


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    log: IO[bytes]


@dataclass
class DashboardHandles:
    """The running dashboards: ``urls`` (name -> URL), ``notes`` (what was skipped or moved)
    and :meth:`stop`."""

    urls: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    children: list[_Child] = field(default_factory=list)
    log_dir: Path | None = None

    @property
    def pidfile(self) -> Path | None:
        """``dashboard.json`` (this process's pid, its children's, the URLs) while running."""
        return self.log_dir / PIDFILE if self.log_dir is not None else None

    def alive(self) -> dict[str, bool]:
        """Name -> whether that child process is still running."""
        return {c.name: c.proc.poll() is None for c in self.children}

    def log_tail(self, name: str, chars: int = 2000) -> str:
        """The end of a child's combined stdout/stderr (to explain a crash)."""
        for c in self.children:
            if c.name == name:
                c.log.flush()
                return c.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the children and their own helpers (TensorBoard's data server): SIGTERM
        to each child's process group, SIGKILL after ``timeout``; idempotent."""
        for c in self.children:
            _signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in self.children:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(c.proc, signal.SIGKILL)
                c.proc.wait(timeout=5)
            with contextlib.suppress(OSError):
                c.log.close()
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> DashboardHandles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------ helpers
def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group a still-running child leads (it was started in its own
    session, so the group holds only that child and what it spawned, e.g. TensorBoard's data
    server). Nothing is sent once the child is gone, so a reused id is never hit."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote``: the dashboards have no
    authentication."""
    if not is_loopback(host) and not allow_remote:
        raise RaygymError(f"refusing to serve the dashboards on {host}: they have no "
                          "authentication and optuna-dashboard can delete studies",
                          key="--host", fix="bind 127.0.0.1 and use an SSH tunnel, or add "
                          "--allow-remote to accept the risk")


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``port`` on ``host`` right now (with ``SO_REUSEADDR``, as
    servers do, so connections lingering in TIME_WAIT do not count as taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def find_free_port(host: str, start: int, taken: set[int] | None = None) -> int:
    """``start`` or the next bindable port after it (``taken`` ports are skipped)."""
    taken = taken or set()
    for port in range(start, min(start + PORT_TRIES, 65536)):
        if port not in taken and port_free(host, port):
            return port
    raise RaygymError(f"no free port in {start}..{start + PORT_TRIES - 1} on {host}",
                      fix="pass another --optuna-port / --tensorboard-port")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with a 2xx/3xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URL
            return 200 <= resp.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def ray_dashboard_url(url: str = RAY_DASHBOARD, timeout: float = 1.0) -> str | None:
    """The Ray dashboard's URL when a local Ray cluster serves it (no ``ray.init``)."""
    try:  # Ray's own health route (its /api/* routes may require an auth token)
        with urllib.request.urlopen(url.rstrip("/") + "/api/gcs_healthz",  # noqa: S310
                                    timeout=timeout) as resp:
            return url if resp.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _script(name: str) -> str | None:
    """A console script installed beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _search_info(results: Path) -> dict[str, Any]:
    try:
        return json.loads((results / "search.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def tensorboard_logdir(results: Path) -> str:
    """Where Tune writes the event files: ``search.storage_path`` (from ``search.json``) or
    ``RESULTS/ray``, then the experiment's name when that folder exists or the search is
    still to create it."""
    info = _search_info(results)
    config = info.get("config") or {}
    storage = (config.get("search") or {}).get("storage_path") or str(results / "ray")
    name = info.get("name") or config.get("name")
    if "://" in storage and not storage.startswith("file://"):
        return f"{storage.rstrip('/')}/{name}" if name else storage
    base = Path(storage.removeprefix("file://"))
    if name and ((base / name).is_dir() or not base.is_dir()):
        return str(base / name)
    return str(base)


def optuna_storage(results: Path) -> str | None:
    """What optuna-dashboard takes for the search's study (``RESULTS/optuna.journal``, or an
    older search's ``sqlite:///RESULTS/optuna.db``); None when there is none yet."""
    path = study_file(results)
    return dashboard_argument(path) if path is not None else None


def _die_with_parent() -> Any:
    """Linux: a ``preexec_fn`` that makes the child get SIGTERM when this process dies, even
    by SIGKILL, when no handler of ours can run; None elsewhere. libc is loaded here, before
    the fork: the child only calls into it."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, pr_set_pdeathsig = os.getpid(), 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return arm


def _write_pidfile(handles: DashboardHandles, results: Path) -> None:
    from raygym.atomic import write_text_atomic

    if handles.pidfile is not None:
        write_text_atomic(handles.pidfile, json.dumps({
            "pid": os.getpid(), "results": str(results), "urls": handles.urls,
            "children": {c.name: c.proc.pid for c in handles.children}}))


def sweep_stale(temp: Path | None = None) -> list[Path]:
    """Remove the temp folders of dashboards whose process is gone, first stopping the
    children they left (a child is signalled only while its command line still names the
    dashboard it was, so a reused pid is never hit); returns the folders removed."""
    removed = []
    for folder in Path(temp or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            info = json.loads((folder / PIDFILE).read_text())
            owner, children = int(info["pid"]), dict(info["children"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # starting, or not ours: left alone
        if pid_alive(owner):
            continue
        for name, pid in children.items():  # name: "optuna" or "tensorboard"
            with contextlib.suppress(OSError, ValueError):
                if name in Path(f"/proc/{int(pid)}/cmdline").read_bytes().decode(
                        errors="replace"):
                    os.killpg(int(pid), signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _launch(name: str, cmd: list[str], url: str, log_dir: Path) -> _Child:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Own session: a terminal's Ctrl-C reaches only this process, which then stops the
    # children cleanly (and the children never outlive it by accident of signal order).
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True,
                            preexec_fn=_die_with_parent())
    return _Child(name, proc, url, log_path, log)


def _wait_up(handles: DashboardHandles, child: _Child, probe: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            tail = handles.log_tail(child.name, 800).strip().splitlines()
            raise RaygymError(f"{child.name} exited with code {child.proc.returncode} at start: "
                              + (tail[-1] if tail else "no output"))
        if http_ok(probe, timeout=2.0):
            return
        time.sleep(0.3)
    raise RaygymError(f"{child.name} did not answer on {child.url} within {timeout:.0f} s")


def _pause(seconds: float) -> None:
    """The serve loop's tick (a seam for tests to interrupt it)."""
    time.sleep(seconds)


def require_viewers() -> None:
    """Refuse to start when optuna-dashboard or TensorBoard is not installed in this Python
    (they are the optional ``dashboard`` extra; searches need neither).

    Raises:
        RaygymError: naming the missing distributions and ``pip install 'raygym[dashboard]'``.
    """
    missing = [dist for dist, module in VIEWERS.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise RaygymError(f"raygym dashboard needs {' and '.join(missing)}, which {verb} not "
                          "installed", fix="pip install 'raygym[dashboard]'")


# ---------------------------------------------------------------------------------- API
def start_dashboards(results: Path, host: str = "127.0.0.1", optuna_port: int = 8080,
                     tensorboard_port: int = 6006, *, allow_remote: bool = False,
                     wait: bool = True, timeout: float = START_TIMEOUT_S) -> DashboardHandles:
    """Start optuna-dashboard (when the search's study file exists) and TensorBoard.

    Args:
        results: a search's results folder (``results/<name>``); may be a running search.
        host: the address to bind; loopback only unless ``allow_remote``.
        optuna_port, tensorboard_port: preferred ports; a taken one moves to the next free
            port, noted in ``handles.notes``.
        allow_remote: allow a non-loopback ``host`` (the dashboards have no authentication).
        wait: return only once each dashboard answers HTTP (bounded by ``timeout``).

    Returns:
        :class:`DashboardHandles` with ``urls`` {"optuna": ..., "tensorboard": ...}; call
        ``stop()`` (or use it as a context manager) to end them.

    Raises:
        RaygymError: a viewer not installed (:func:`require_viewers`), a missing results
            folder, a remote host without ``allow_remote``, no
            free port, or a dashboard that exits or stays silent at start (both are stopped).
    """
    require_viewers()
    results = Path(results).resolve()
    if not results.is_dir():
        raise DataError("results folder not found", file=results,
                        fix="give the folder `raygym search` printed (results/<name>)")
    check_host(host, allow_remote)
    sweep_stale()
    log_dir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    handles = DashboardHandles(log_dir=log_dir)
    atexit.register(handles.stop)  # an exception or sys.exit in the caller stops them too
    shown = _url_host(host)
    try:
        storage = optuna_storage(results)
        taken: set[int] = set()
        if storage is None and (results / "metrics.csv").is_file():
            handles.notes.append(f"{results} is a train run (one model, no Optuna study): "
                                 "TensorBoard only")
        elif storage is None:
            handles.notes.append(f"no {STUDY_FILE} in {results} (random/grid search, or the "
                                 "search has not started): optuna-dashboard not started")
        else:
            exe = _script("optuna-dashboard")
            cmd = ([exe] if exe else [sys.executable, "-m", "optuna_dashboard._cli"])
            port = find_free_port(host, optuna_port)
            if port != optuna_port:
                handles.notes.append(f"port {optuna_port} is taken: optuna-dashboard on {port}")
            taken.add(port)
            url = f"http://{shown}:{port}/"
            handles.children.append(_launch(
                "optuna", [*cmd, storage, "--host", host, "--port", str(port), "--quiet"],
                url, log_dir))
            handles.urls["optuna"] = url
        logdir = tensorboard_logdir(results)
        exe = _script("tensorboard")
        cmd = [exe] if exe else [sys.executable, "-m", "tensorboard.main"]
        port = find_free_port(host, tensorboard_port, taken)
        if port != tensorboard_port:
            handles.notes.append(f"port {tensorboard_port} is taken: TensorBoard on {port}")
        url = f"http://{shown}:{port}/"
        handles.children.append(_launch(
            "tensorboard", [*cmd, "--logdir", logdir, "--host", host, "--port", str(port),
                            "--reload_interval", "5"], url, log_dir))
        handles.urls["tensorboard"] = url
        _write_pidfile(handles, results)
        if wait:
            for child in handles.children:
                probe = child.url + ("api/studies" if child.name == "optuna" else
                                     "data/plugins_listing")
                _wait_up(handles, child, probe, timeout)
    except BaseException:
        handles.stop()
        raise
    return handles


def serve_dashboards(results: Path, *, host: str = "127.0.0.1", optuna_port: int = 8080,
                     tensorboard_port: int = 6006, console: Any = None,
                     wait_for_study_s: float = 60.0, allow_remote: bool = False) -> int:
    """Serve the dashboards until Ctrl-C (the ``raygym dashboard`` command); returns the exit
    code. A non-loopback ``host`` needs ``allow_remote`` (``--allow-remote``) and is served
    with a warning. During a search that has not created its study yet (Optuna search),
    waits up to ``wait_for_study_s`` for it."""
    from rich.console import Console

    console = console or Console()
    require_viewers()
    results = Path(results).resolve()
    check_host(host, allow_remote)
    if not is_loopback(host):
        console.print(f"[bold yellow]warning:[/] serving on {host}: optuna-dashboard and "
                      "TensorBoard have no authentication; anyone who can reach this address "
                      "can read (and edit notes in) the study")
    info = _search_info(results)
    algorithm = ((info.get("config") or {}).get("search") or {}).get("algorithm")
    if results.is_dir() and optuna_storage(results) is None and algorithm == "optuna" \
            and info.get("status") == "running":
        console.print(f"waiting for the search to create {STUDY_FILE} ...")
        deadline = time.monotonic() + wait_for_study_s
        while optuna_storage(results) is None and time.monotonic() < deadline:
            time.sleep(1.0)
    handles = start_dashboards(results, host, optuna_port, tensorboard_port,
                               allow_remote=True)
    previous = _interrupt_on_signals()
    try:
        for note in handles.notes:
            console.print(f"[yellow]note:[/] {note}")
        if "optuna" in handles.urls:
            console.print(f"optuna-dashboard: [bold]{handles.urls['optuna']}[/]")
        console.print(f"TensorBoard:      [bold]{handles.urls['tensorboard']}[/]  "
                      f"(logdir {tensorboard_logdir(results)})")
        ray_url = ray_dashboard_url()
        if ray_url:
            console.print(f"Ray dashboard:    [bold]{ray_url}[/] (a Ray cluster is running)")
        console.print("press Ctrl-C to stop")
        while True:
            _pause(1.0)
            dead = [n for n, ok in handles.alive().items() if not ok]
            if dead:
                for name in dead:
                    tail = handles.log_tail(name, 600).strip().splitlines()
                    console.print(f"[bold red]{name} stopped unexpectedly[/]"
                                  + (f": {tail[-1]}" if tail else ""))
                return 1
    except KeyboardInterrupt:
        console.print("stopping dashboards")
        return 0
    finally:
        handles.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt_on_signals() -> dict[int, Any]:
    """Make SIGTERM and SIGHUP (the terminal closed) end the serve loop like Ctrl-C, so the
    children are stopped; returns the previous handlers (none off the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    return {int(signum): signal.signal(signum, handler) for signum in wanted}
