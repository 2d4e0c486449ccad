"""Speed in view (``raygym.train.throughput``): the peak probe and its cache, FLOPs per image
from the model summary, and the per-epoch GFLOP/s / peak-share metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from raygym.models import build_model
from raygym.models.summary import model_summary
from raygym.train import throughput
from raygym.train.throughput import (
    TRAIN_FLOPS_FACTOR,
    ThroughputMeter,
    forward_flops_per_image,
    peak_gflops,
    peak_key,
)

CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAYGYM_CACHE_DIR", str(tmp_path))
    peak_gflops.cache_clear()
    yield tmp_path
    peak_gflops.cache_clear()


def test_peak_is_probed_once_then_read_from_the_cache(cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[torch.dtype] = []

    def fake_probe(device: torch.device, dtype: torch.dtype, seconds: float = 0.5) -> float:
        calls.append(dtype)
        return 123.0

    monkeypatch.setattr(throughput, "probe_peak_gflops", fake_probe)
    monkeypatch.setattr(throughput, "_busy", lambda: 0.5)
    assert peak_gflops(CPU, torch.float32) == 123.0
    peak_gflops.cache_clear()  # a new process: reads the file, does not probe again
    assert peak_gflops(CPU, torch.float32) == 123.0
    assert calls == [torch.float32]
    table = json.loads((cache / "peak.json").read_text())
    key = peak_key(CPU, torch.float32)
    assert table == {key: {"gflops": 123.0, "busy": 0.5}}
    assert "float32" in key and torch.__version__ in key and "threads" in key


def test_a_probe_under_load_is_retried_when_quieter(cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    rates = iter([20.0, 90.0])
    monkeypatch.setattr(throughput, "probe_peak_gflops", lambda *a, **k: next(rates))
    monkeypatch.setattr(throughput, "_busy", lambda: 10.0)  # 10 processes per core
    assert peak_gflops(CPU, torch.float32) == 20.0
    peak_gflops.cache_clear()
    assert peak_gflops(CPU, torch.float32) == 20.0  # as loaded as before: not probed again
    peak_gflops.cache_clear()
    monkeypatch.setattr(throughput, "_busy", lambda: 0.3)
    assert peak_gflops(CPU, torch.float32) == 90.0
    peak_gflops.cache_clear()
    assert peak_gflops(CPU, torch.float32) == 90.0  # quiet now: cached for good


def test_the_real_probe_measures_a_positive_rate() -> None:
    assert throughput.probe_peak_gflops(CPU, torch.float32, seconds=0.05) > 0.1


def test_flops_per_image_are_the_summary_s_and_leave_the_rng_alone() -> None:
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=2, kernel=3).train()
    torch.manual_seed(0)
    flops = forward_flops_per_image(model, (3, 32, 32))
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), after)  # the counter drew no random numbers visibly
    assert flops == model_summary(model, (3, 32, 32)).flops_per_image > 0
    assert model.training


def test_meter_metrics(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throughput, "probe_peak_gflops", lambda *a, **k: 10.0)
    meter = ThroughputMeter(CPU, "bf16-mixed")
    assert math.isnan(meter.metrics(8, 1.0)["gflop_per_s"])  # nothing observed yet
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=2, kernel=3)
    meter.observe(model, torch.zeros(4, 3, 32, 32))
    got = meter.metrics(8, 2.0)
    want = TRAIN_FLOPS_FACTOR * meter.flops_per_image * 8 / 2.0 / 1e9
    assert got["gflop_per_s"] == pytest.approx(want)
    assert got["peak_share"] == pytest.approx(want / 10.0)
    assert "bfloat16" in next(iter(json.loads((cache / "peak.json").read_text())))
