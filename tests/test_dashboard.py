"""``raygym dashboard``: optuna-dashboard and TensorBoard as children, on free loopback ports.

A tiny Optuna study (3 trials) in ``optuna.journal`` and one TensorBoard event file under
``ray/<name>/<trial>/`` stand in for a search; each server's pages are fetched over HTTP, and
the ports must be closed again after ``stop()``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from raygym.dashboard import (
    find_free_port,
    is_loopback,
    port_free,
    serve_dashboards,
    start_dashboards,
    tensorboard_logdir,
)
from raygym.errors import RaygymError
from tests.ray_exposure import free_loopback_port

STUDY = "dash_study"
TRIAL = "abc12345"


def _fetch(url: str, timeout_s: float = 60.0) -> tuple[int, bytes]:
    """GET ``url``, retrying until it answers (bounded)."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read()
        except (urllib.error.URLError, OSError) as err:
            last = err
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout_s} s: {last}")


def _processes_mentioning(text: str) -> list[str]:
    """Command lines (from /proc) of processes whose arguments contain ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args[:200])
    return found


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder with a 3-trial study and one run of TensorBoard scalars."""
    import optuna
    from torch.utils.tensorboard import SummaryWriter

    out = tmp_path / "results" / STUDY
    out.mkdir(parents=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from raygym.search.study_storage import STUDY_FILE, journal_storage

    study = optuna.create_study(storage=journal_storage(out / STUDY_FILE), study_name=STUDY,
                                direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=3)
    (out / "search.json").write_text(json.dumps({"name": STUDY, "config": {"search": {}}}))
    writer = SummaryWriter(log_dir=str(out / "ray" / STUDY / TRIAL))
    for step in range(3):
        writer.add_scalar("val_mean_iou", 0.1 * step, step)
    writer.close()
    return out


def _ports() -> tuple[int, int]:
    a = free_loopback_port()
    b = free_loopback_port()
    while b == a:
        b = free_loopback_port()
    return a, b


def test_dashboards_serve_the_study_and_the_runs(results: Path) -> None:
    optuna_port, tb_port = _ports()
    handles = start_dashboards(results, "127.0.0.1", optuna_port, tb_port)
    try:
        assert handles.urls == {"optuna": f"http://127.0.0.1:{optuna_port}/",
                                "tensorboard": f"http://127.0.0.1:{tb_port}/"}
        assert handles.notes == []
        status, body = _fetch(handles.urls["optuna"])
        assert status == 200 and b"<html" in body.lower()
        status, body = _fetch(handles.urls["optuna"] + "api/studies")
        assert status == 200
        names = [s["study_name"] for s in json.loads(body)["study_summaries"]]
        assert names == [STUDY]
        status, body = _fetch(handles.urls["tensorboard"])
        assert status == 200
        deadline = time.monotonic() + 60
        runs: list[Any] = []
        while time.monotonic() < deadline:  # TensorBoard loads the logdir in the background
            status, body = _fetch(handles.urls["tensorboard"] + "data/runs")
            runs = json.loads(body)
            if TRIAL in runs:
                break
            time.sleep(1.0)
        assert status == 200 and TRIAL in runs
        status, body = _fetch(handles.urls["tensorboard"] + "data/plugins_listing")
        assert status == 200 and "scalars" in json.loads(body)
        assert all(handles.alive().values())
    finally:
        handles.stop()
    assert not any(handles.alive().values())
    assert not _listening(optuna_port) and not _listening(tb_port)
    assert port_free("127.0.0.1", optuna_port) and port_free("127.0.0.1", tb_port)
    if Path("/proc").is_dir():  # TensorBoard's data server goes too, not only its parent
        deadline = time.monotonic() + 10
        while _processes_mentioning(str(results)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _processes_mentioning(str(results)) == []


def test_taken_port_moves_to_the_next_free_one(results: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    try:
        assert find_free_port("127.0.0.1", taken) != taken
        tb_port = free_loopback_port()
        handles = start_dashboards(results, "127.0.0.1", taken, tb_port)
        try:
            port = int(handles.urls["optuna"].rstrip("/").rsplit(":", 1)[1])
            assert port != taken
            assert any(f"port {taken} is taken" in n for n in handles.notes)
            assert _fetch(handles.urls["optuna"] + "api/studies")[0] == 200
        finally:
            handles.stop()
        assert not _listening(port)
    finally:
        blocker.close()


def test_without_a_study_only_tensorboard(results: Path) -> None:
    (results / "optuna.journal").unlink()
    with start_dashboards(results, "127.0.0.1", free_loopback_port(), free_loopback_port()) as handles:
        assert list(handles.urls) == ["tensorboard"]
        assert any("no optuna.journal" in n for n in handles.notes)
        assert _fetch(handles.urls["tensorboard"] + "data/plugins_listing")[0] == 200
    assert not any(handles.alive().values())
    # a train run's folder (metrics.csv, no study) is said to be one, not a search without one
    (results / "metrics.csv").write_text("epoch,val_loss\n1,0.5\n")
    with start_dashboards(results, "127.0.0.1", free_loopback_port(), free_loopback_port()) as handles:
        assert list(handles.urls) == ["tensorboard"]
        assert any("is a train run" in n for n in handles.notes)
    assert not any(handles.alive().values())


def test_remote_host_needs_explicit_consent(results: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    with pytest.raises(RaygymError, match="no authentication"):
        start_dashboards(results, "0.0.0.0", free_loopback_port(), free_loopback_port())


def test_logdir_follows_storage_path(results: Path, tmp_path: Path) -> None:
    assert tensorboard_logdir(results) == str(results / "ray" / STUDY)
    shared = tmp_path / "shared_storage"
    (results / "search.json").write_text(json.dumps(
        {"name": STUDY, "config": {"search": {"storage_path": str(shared)}}}))
    assert tensorboard_logdir(results) == str(shared / STUDY)


def test_serve_until_interrupt(results: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loop prints the URLs, and Ctrl-C stops the children and returns 0."""
    from rich.console import Console

    import raygym.dashboard as dash

    started: list[Any] = []
    real_start = dash.start_dashboards

    def spy(*args: Any, **kwargs: Any) -> Any:
        handles = real_start(*args, **kwargs)
        started.append(handles)
        return handles

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dash, "start_dashboards", spy)
    monkeypatch.setattr(dash, "ray_dashboard_url", lambda *a, **k: None)
    console = Console(record=True, width=200)
    monkeypatch.setattr(dash, "_pause", interrupt)
    code = serve_dashboards(results, optuna_port=free_loopback_port(), tensorboard_port=free_loopback_port(),
                            console=console)
    text = console.export_text()
    assert code == 0
    assert "optuna-dashboard: http://127.0.0.1:" in text and "TensorBoard:" in text
    assert started and not any(started[0].alive().values())


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_killed_dashboard(results: Path) -> None:
    """SIGKILL leaves the dashboard no chance to clean up: the kernel ends its children
    (and they their helpers); its pidfile names them, and the next start sweeps its folder."""
    from raygym.dashboard import sweep_stale

    optuna_port, tb_port = _ports()
    script = ("import sys, time\nfrom pathlib import Path\n"
              "from raygym.dashboard import start_dashboards\n"
              f"h = start_dashboards(Path({str(results)!r}), optuna_port={optuna_port}, "
              f"tensorboard_port={tb_port})\n"
              "print(h.pidfile, flush=True)\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pidfile = Path(proc.stdout.readline().strip())
        info = json.loads(pidfile.read_text())
        assert info["pid"] == proc.pid and info["results"] == str(results)
        children = list(info["children"].values())
        assert len(children) == 2 and all(_running(pid) for pid in children)
        assert _listening(optuna_port) and _listening(tb_port)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (any(map(_running, children)) or _processes_mentioning(str(results))) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, children)), "children outlived the dashboard"
    assert _processes_mentioning(str(results)) == [], "TensorBoard's helper outlived it"
    assert not _listening(optuna_port) and not _listening(tb_port)
    assert pidfile.is_file(), "a killed dashboard leaves its pidfile ..."
    assert pidfile.parent in sweep_stale(), "... which the next start sweeps"
    assert not pidfile.parent.exists()


@pytest.mark.parametrize("absent", [["optuna_dashboard"], ["tensorboard"],
                                    ["optuna_dashboard", "tensorboard"]])
def test_missing_viewer_is_one_line_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        absent: list[str]) -> None:
    """Without the ``dashboard`` extra the command names what is missing and the extra to
    install, exits 2, and starts nothing (no temp folder, no child, no port)."""
    import tempfile

    from raygym.cli import main

    results = tmp_path / "results"
    results.mkdir()
    for module in absent:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    optuna_port, tb_port = _ports()
    code = main(["dashboard", str(results), "--optuna-port", str(optuna_port),
                 "--tensorboard-port", str(tb_port)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    names = {"optuna_dashboard": "optuna-dashboard", "tensorboard": "tensorboard"}
    for module, dist in names.items():
        assert (f"needs {dist}" in lines[0] or f"and {dist}" in lines[0]) == (module in absent)
    assert "pip install 'raygym[dashboard]'" in lines[0]
    assert list(temp.iterdir()) == []
    assert not _listening(optuna_port) and not _listening(tb_port)
