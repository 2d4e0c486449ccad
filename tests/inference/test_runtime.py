"""Device, precision and layout: one forward path that matches a plain call of the model."""

from __future__ import annotations

import pytest
import torch

from raygym.inference.runtime import (
    autocast_for,
    explain_precision,
    logits,
    mps_available,
    resolve_device,
    resolve_precision,
    to_layout,
)
from raygym.models import build_model

CPU = torch.device("cpu")


def test_precision_auto_resolves_to_a_runnable_choice() -> None:
    assert resolve_precision("auto", CPU) in ("fp32", "bf16-mixed")
    for explicit in ("fp32", "bf16-mixed", "fp16-mixed"):
        assert resolve_precision(explicit, CPU) == explicit


def test_device_auto_is_cpu_without_cuda() -> None:
    assert resolve_device("cpu") == CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU


@pytest.mark.parametrize("channels_last", [False, True])
def test_logits_equal_a_plain_fp32_call_in_either_layout(channels_last: bool) -> None:
    torch.manual_seed(0)
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=2, kernel=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
        to_layout(model, channels_last)
        got = logits(model, x, device=CPU, precision="fp32", channels_last=channels_last)
    assert got.dtype == torch.float32 and got.shape == (2, 4, 32, 32)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_runs_in_bf16_and_returns_fp32() -> None:
    model = torch.nn.Conv2d(3, 2, 1)
    with autocast_for("bf16-mixed", CPU):
        assert model(torch.randn(1, 3, 4, 4)).dtype == torch.bfloat16
    out = logits(model, torch.randn(1, 3, 4, 4), device=CPU, precision="bf16-mixed")
    assert out.dtype == torch.float32


def test_precision_auto_says_why() -> None:
    chosen, why = explain_precision("auto", CPU)
    assert chosen == resolve_precision("auto", CPU) and "bf16" in why
    assert explain_precision("fp32", CPU) == ("fp32", "set in the config (train.precision)")


def test_explicit_devices_that_are_absent_are_refused() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            resolve_device("cuda")
    if not mps_available():
        with pytest.raises(RuntimeError, match="MPS"):
            resolve_device("mps")
        assert resolve_device("auto").type in ("cuda", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_auto_runs_half_precision_logits() -> None:
    dev = resolve_device("auto")
    precision = resolve_precision("auto", dev)
    assert dev.type == "cuda" and precision in ("bf16-mixed", "fp16-mixed")
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=2, kernel=3).to(dev)
    out = logits(to_layout(model, True), torch.randn(2, 3, 32, 32), device=dev,
                 precision=precision, channels_last=True)
    assert out.dtype == torch.float32 and out.device.type == "cuda"


@pytest.mark.skipif(not mps_available(), reason="no Apple MPS backend on this machine")
def test_mps_auto_runs_half_precision_logits() -> None:
    dev = resolve_device("auto" if not torch.cuda.is_available() else "mps")
    precision = resolve_precision("auto", dev)
    assert dev.type == "mps" and precision in ("bf16-mixed", "fp16-mixed")
    model = build_model("gym_unet", in_channels=3, num_classes=4, filters=2, kernel=3).to(dev)
    out = logits(model, torch.randn(2, 3, 32, 32), device=dev, precision=precision)
    assert out.dtype == torch.float32 and out.device.type == "mps"
