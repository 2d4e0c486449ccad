"""Speed in view: achieved GFLOP/s of training and its share of the device's peak (MFU).

Like nanoGPT's MFU line, but measured rather than looked up: the peak is what a short matmul
probe reaches on this device, in the run's compute dtype, with this many threads. The probe runs
once per machine and is cached in ``<cache>/raygym/peak.json`` (``<cache>``: ``$RAYGYM_CACHE_DIR``,
else ``$XDG_CACHE_HOME``, else ``~/.cache``), keyed by device name, dtype, torch version and
thread count. A low share flags a slow configuration: a tiny batch, fp32 on a bf16 CPU, or a
loop that waits for its data (the training time includes fetching batches).

FLOPs follow ``torch.utils.flop_counter`` (a multiply-add is 2 FLOPs; convolutions and matmuls
only), counted once per input size by :func:`raygym.models.summary.model_summary`. A training
step costs :data:`TRAIN_FLOPS_FACTOR` x the forward pass (backward ~ 2 x forward, the usual MFU
convention).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

TRAIN_FLOPS_FACTOR = 3.0
"""FLOPs of one training step (forward + backward) per forward FLOP."""

PRECISION_DTYPES = {"fp32": torch.float32, "bf16-mixed": torch.bfloat16,
                    "fp16-mixed": torch.float16}
"""The dtype the convolutions run in under each ``train.precision``."""

PROBE_SECONDS = 0.5
"""Wall time the peak probe spends (after a warm-up) per measurement."""


def cache_dir() -> Path:
    """``$RAYGYM_CACHE_DIR``, else ``$XDG_CACHE_HOME/raygym``, else ``~/.cache/raygym``."""
    if os.environ.get("RAYGYM_CACHE_DIR"):
        return Path(os.environ["RAYGYM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "raygym"


def device_name(device: torch.device) -> str:
    """A name that tells machines apart: the GPU model, Apple's MPS, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"mps {platform.machine()}"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


def peak_key(device: torch.device, dtype: torch.dtype) -> str:
    """The cache key: device name, dtype, torch version and (CPU) thread count."""
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return (f"{device_name(device)}|{str(dtype).removeprefix('torch.')}|"
            f"torch {torch.__version__}|threads {threads}")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (CUDA, MPS); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def probe_peak_gflops(device: torch.device, dtype: torch.dtype,
                      seconds: float = PROBE_SECONDS) -> float:
    """Best GFLOP/s (1e9 FLOP/s) of square matmuls in ``dtype`` on ``device``.

    n = 1024 on a CPU (~2 GFLOP a product: many repeats in ``seconds``), 8192 on a GPU (large
    enough to fill it). The best of the timed repeats: other processes only ever slow it down.
    """
    n = 1024 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)  # warm-up: library init, kernel choice
    synchronize(device)
    best, spent = 0.0, 0.0
    while spent < seconds:
        tick = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        synchronize(device)
        took = time.perf_counter() - tick
        spent += took
        best = max(best, 4 * 2 * n**3 / took / 1e9)
    return best


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (trials starting together probe once, not at once:
    concurrent probes would share the cores and each record a fraction of the peak)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _busy() -> float:
    """The 1-minute load average per CPU core (> 1: other processes compete for the cores)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


@functools.cache
def peak_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """The device's peak GFLOP/s in ``dtype``: cached per machine in ``peak.json``, probed by
    :func:`probe_peak_gflops` the first time (about a second).

    A CPU probe taken while other processes loaded the cores (load average above the core
    count) reads low: such an entry is probed again when the machine is quieter, keeping the
    higher figure. Delete ``peak.json`` to measure afresh.
    """
    from raygym.atomic import write_text_atomic

    path = cache_dir() / "peak.json"
    key = peak_key(device, dtype)
    with _locked(path.with_suffix(".lock")):
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
        entry = table.get(key)
        if not isinstance(entry, dict) or not entry.get("gflops", 0) > 0:
            entry = {"gflops": 0.0, "busy": math.inf}
        busy = _busy() if device.type == "cpu" else 0.0
        if entry["busy"] > 1.0 and busy < entry["busy"]:
            probed = probe_peak_gflops(device, dtype)
            if probed > entry["gflops"]:
                entry = {"gflops": round(probed, 2), "busy": round(busy, 2)}
            table[key] = entry
            with contextlib.suppress(OSError):  # a read-only home: measured, just not kept
                write_text_atomic(path, json.dumps(table, indent=1, sort_keys=True))
        return float(entry["gflops"])


def forward_flops_per_image(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass of one ``(C, H, W)`` image, from the model summary's counter.

    ``model`` may be DDP-wrapped; its training flag is restored afterwards.
    """
    from raygym.models.summary import model_summary

    core = model.module if hasattr(model, "module") else model
    # the summary draws a random image: fork the RNG so training's dropout draws stay the same
    param = next(core.parameters(), None)
    on_gpu = param is not None and param.device.type == "cuda"
    with torch.random.fork_rng(devices=[param.device] if on_gpu else []):
        return model_summary(core, input_shape).flops_per_image


@dataclass
class ThroughputMeter:
    """Turns (images, seconds) of a training epoch into the metrics the loop reports.

    ``flops_per_image`` is counted on the first batch's ``(C, H, W)`` (:meth:`observe`);
    ``peak`` is the device's peak GFLOP/s in the run's compute dtype.
    """

    device: torch.device
    precision: str
    flops_per_image: int = 0
    peak: float = 0.0

    def observe(self, model: nn.Module, x: torch.Tensor) -> None:
        """Count FLOPs on the first ``(B, C, H, W)`` batch seen (later calls: nothing)."""
        if not self.flops_per_image:
            self.flops_per_image = forward_flops_per_image(model, tuple(x.shape[1:]))
            self.peak = peak_gflops(self.device, PRECISION_DTYPES.get(self.precision,
                                                                      torch.float32))

    def metrics(self, n_images: int, seconds: float) -> dict[str, float]:
        """``gflop_per_s``: training GFLOP/s achieved over ``seconds`` (data waits included);
        ``peak_share``: that over the peak, a fraction in [0, 1] (NaN when nothing ran)."""
        if not self.flops_per_image or seconds <= 0 or n_images <= 0:
            return {"gflop_per_s": float("nan"), "peak_share": float("nan")}
        achieved = TRAIN_FLOPS_FACTOR * self.flops_per_image * n_images / seconds / 1e9
        return {"gflop_per_s": achieved,
                "peak_share": achieved / self.peak if self.peak > 0 else float("nan")}
