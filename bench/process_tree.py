"""Memory and CPU of a process tree, sampled with psutil (for ``bench_prepare.py``): the driver,
Ray's system processes and workers, RSS and RSS minus shared pages, plus Ray's object store."""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

try:
    import psutil
except ImportError:  # not a raygym dependency; `import ray` puts Ray's own copy on sys.path
    import ray  # noqa: F401

    psutil = importlib.import_module("psutil")



@dataclass
class TreeStats:
    """Peaks over a process tree, sampled every ``interval`` seconds."""

    samples: int = 0
    peak_rss: int = 0  # sum of RSS over the tree (shared pages counted once per process)
    peak_private: int = 0  # sum of RSS - shared: memory no other process maps
    peak_driver_rss: int = 0
    peak_workers_rss: int = 0  # ray::<task> / ray::IDLE processes
    peak_system_rss: int = 0  # gcs_server, raylet, dashboard, agents, monitors
    peak_store_used: int | None = None  # Ray object store bytes in use
    store_created: int | None = None  # bytes put into the object store during the run
    cpu_seconds: float = 0.0  # user + system of every process seen, during the run
    cpu_by_kind: dict[str, float] = field(default_factory=dict)  # driver / worker / system
    sampler_cpu: float = 0.0  # this sampler's own CPU, taken out of the figures above
    processes: int = 0


def _kind(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return "driver"
    name = proc.name()
    if name.startswith("ray::") and not name.endswith(("Agent", "agent")):
        return "worker"
    return "system"


class TreeSampler(threading.Thread):
    """Samples RSS and CPU time of ``root`` and all its descendants (Ray's processes are
    children of a driver that started a local Ray), plus the object store when ``store``."""

    def __init__(self, root: int, interval: float = 0.2,
                 store: Callable[[], tuple[int, int]] | None = None) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.store = store
        self.stats = TreeStats()
        self._stop_event = threading.Event()
        self._cpu_start: dict[int, float] = {}
        self._cpu_last: dict[int, float] = {}
        self._kinds: dict[int, str] = {}
        self._store_start: int | None = None
        for proc in self._tree():  # CPU already spent before the run is not counted
            try:
                t = proc.cpu_times()
                self._cpu_start[proc.pid] = t.user + t.system
            except psutil.Error:
                pass
        if store is not None:
            try:
                self._store_start = store()[1]
            except Exception:  # noqa: BLE001 - private Ray API; memory stays "n/a"
                self.store = None

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        totals = {"rss": 0, "private": 0, "driver": 0, "worker": 0, "system": 0}
        for proc in self._tree():
            try:
                mem = proc.memory_info()
                t = proc.cpu_times()
                kind = _kind(proc, self.root)
            except psutil.Error:
                continue
            self._cpu_last[proc.pid] = t.user + t.system
            self._kinds[proc.pid] = kind
            totals["rss"] += mem.rss
            totals["private"] += mem.rss - getattr(mem, "shared", 0)
            totals[kind] += mem.rss
        s = self.stats
        s.samples += 1
        s.peak_rss = max(s.peak_rss, totals["rss"])
        s.peak_private = max(s.peak_private, totals["private"])
        s.peak_driver_rss = max(s.peak_driver_rss, totals["driver"])
        s.peak_workers_rss = max(s.peak_workers_rss, totals["worker"])
        s.peak_system_rss = max(s.peak_system_rss, totals["system"])
        if self.store is not None and s.samples % 2 == 1:
            try:
                used, created = self.store()
            except Exception:  # noqa: BLE001 - Ray shutting down or API moved
                return
            s.peak_store_used = max(s.peak_store_used or 0, used)
            if self._store_start is not None:
                s.store_created = created - self._store_start

    def run(self) -> None:
        while not self._stop_event.is_set():
            t = time.thread_time()
            self.sample()
            self.stats.sampler_cpu += time.thread_time() - t
            self._stop_event.wait(self.interval)

    def finish(self) -> TreeStats:
        self._stop_event.set()
        self.join()
        self.sample()
        s = self.stats
        s.processes = len(self._cpu_last)
        for pid, v in self._cpu_last.items():
            used = v - self._cpu_start.get(pid, 0.0)
            if pid == os.getpid():  # the sampler thread runs in this process: not the bench's work
                used -= s.sampler_cpu
            s.cpu_seconds += used
            kind = self._kinds[pid]
            s.cpu_by_kind[kind] = s.cpu_by_kind.get(kind, 0.0) + used
        return s


def ray_store_probe() -> Callable[[], tuple[int, int]]:
    """(bytes in use, cumulative bytes created) of the local Ray object store.

    Private Ray API (``ray._private.internal_api``), the same call ``ray memory`` makes."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    state = get_state_from_address(ray.get_runtime_context().gcs_address)

    def probe() -> tuple[int, int]:
        stats = get_memory_info_reply(state).store_stats
        return int(stats.object_store_bytes_used), int(stats.cumulative_created_bytes)

    return probe
