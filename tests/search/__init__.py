"""Helpers shared by the ``raygym search`` tests: a small real search on the S2 data set.

Every search here trains tiny Gym UNets (filters 2-4, kernel 3) on S2 resized to 64 x 64 for
a few epochs; the prepared dataset is made once per test session and shared (see
:func:`shared_prepared`).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SEARCH_MODEL = {"arch": {"choice": ["gym_unet", "gym_resunet"]},
                "filters": {"choice": [2, 4]}, "kernel": 3}
SEARCH_LOSS = {"name": {"choice": ["dice", "cce"]}}
SEARCH_TRAIN = {"batch_size": 8, "max_epochs": 4, "patience": 10, "rampup_epochs": 1,
                "start_lr": 1e-5, "min_lr": 1e-5,
                "max_lr": {"loguniform": [3e-4, 3e-3]}, "precision": "fp32"}
# Used when a search runs in its own process (its own local Ray): same budget as the tests'
# shared Ray session.
OWN_RAY = {"num_cpus": 2, "object_store_memory": 512 * 2**20}
FINISHED = ("completed", "early-stopped")


def shared_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prepared S2 dataset (64 x 64, no augmented copies) per test session.

    ``raygym search`` prepares it on first use; later searches find it ready.
    """
    return tmp_path_factory.getbasetemp() / "search_s2_prepared"


def search_sections(make_s2_config: Callable[..., dict[str, Any]], prepared: Path,
                    results: Path, name: str, **search: Any) -> dict[str, Any]:
    """Experiment sections for a small S2 search (6 trials, ASHA grace 1, rf 2, 4 epochs,
    no repeats)."""
    sections = make_s2_config(prepared)
    sections["name"] = name
    sections["data"]["augment"] = {"copies": 0}
    sections["model"] = json.loads(json.dumps(SEARCH_MODEL))
    sections["loss"] = dict(SEARCH_LOSS)
    sections["train"] = json.loads(json.dumps(SEARCH_TRAIN))
    # repeat_top 0: these searches check one trial per configuration (repeats of the
    # leaders are tested in test_optuna_search, test_simulate, test_replay and test_report)
    sections["search"] = {"num_samples": 6, "max_concurrent": 2, "scheduler": "asha",
                          "grace_period": 1, "reduction_factor": 2, "top_k": 2,
                          "repeat_top": 0, "results_dir": str(results), **search}
    sections["resources"] = {"workers_per_trial": 1, "cpus_per_worker": 1}
    return sections


def write_space(path: Path, sections: dict[str, Any]) -> Path:
    """Write experiment sections as YAML (for module-scoped fixtures: no ``write_config``)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(json.loads(json.dumps(sections, default=str)),
                                   sort_keys=False))
    return path


def read_leaderboard(out: Path) -> list[dict[str, str]]:
    with (out / "leaderboard.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def leaderboard_by_trial(out: Path) -> dict[str, dict[str, str]]:
    """The leaderboard's rows by trial id."""
    return {r["trial_id"]: r for r in read_leaderboard(out)}


def run_cli(argv: list[str], capsys: pytest.CaptureFixture | None = None
            ) -> tuple[int, str]:
    """``raygym ARGV`` in this process: (exit code, stderr)."""
    from raygym.cli import main

    code = main(argv)
    err = capsys.readouterr().err if capsys is not None else ""
    return code, err


def one_error_line(err: str) -> str:
    """The CLI's error message: exactly one non-empty line starting with 'error:'."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    return errors[0]


# ------------------------------------------------------------------ processes of a Ray run
def processes_with_env(marker: str) -> list[int]:
    """Pids whose environment holds ``RAYGYM_TEST_RUN=<marker>`` (Ray's children inherit it)."""
    needle = f"RAYGYM_TEST_RUN={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def reap(marker: str, grace_s: float = 20.0) -> list[int]:
    """Wait for a killed run's processes to exit; SIGKILL (by pid) those still there after
    ``grace_s``. Returns the pids that had to be killed."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not processes_with_env(marker):
            return []
        time.sleep(0.5)
    left = processes_with_env(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def start_search(space: Path, marker: str, *extra: str, log: Path,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """``raygym search SPACE *extra`` in a process group of its own (pgid == pid), its Ray
    processes findable by ``marker`` (:func:`processes_with_env`), output to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "raygym.cli", "search", str(space), *extra],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "RAYGYM_TEST_RUN": marker, **(env or {})},
        start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a :func:`start_search` process group (gone already: nothing to do)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
