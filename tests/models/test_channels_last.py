"""Regression: torch 2.14.1's CPU strided 1x1 Conv2d on a channels_last input corrupts the heap
(the process aborts). ``SameConv2d`` subsamples and then runs a stride-1 1x1 conv instead.

Each check runs in a subprocess, so a crash fails the test instead of killing pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from raygym.models.gym import SameConv2d


def run_python(code: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


def test_resunet_channels_last_forward_backward_does_not_crash() -> None:
    proc = run_python("""
        import torch
        from raygym.models import build_model

        torch.manual_seed(0)
        model = build_model("gym_resunet", in_channels=4, num_classes=4, filters=4, kernel=3)
        model = model.to(memory_format=torch.channels_last).train()
        for _ in range(3):
            x = torch.randn(2, 4, 64, 64).contiguous(memory_format=torch.channels_last)
            out = model(x)
            out.float().mean().backward()
            assert out.shape == (2, 4, 64, 64) and torch.isfinite(out).all()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x).float().sum().backward()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.parametrize("size", [(8, 8), (9, 7), (64, 64)])
@pytest.mark.parametrize("stride", [2, 3])
def test_same_conv_1x1_strided_equals_nn_conv2d(size: tuple[int, int], stride: int) -> None:
    torch.manual_seed(0)
    ours = SameConv2d(3, 5, 1, stride=stride)
    ref = nn.Conv2d(3, 5, 1, stride=stride)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, *size)  # contiguous (NCHW): the reference conv is safe here
    with torch.no_grad():
        expected = ref(x)
        got = ours(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_same_conv_1x1_strided_channels_last_matches_contiguous() -> None:
    """In a subprocess: the channels_last path must not crash and must give the same numbers
    as the contiguous reference."""
    proc = run_python("""
        import torch
        from torch import nn
        from raygym.models.gym import SameConv2d

        torch.manual_seed(0)
        ours = SameConv2d(8, 16, 1, stride=2)
        ref = nn.Conv2d(8, 16, 1, stride=2)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(4, 8, 64, 64)
        xl = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        out = ours.to(memory_format=torch.channels_last)(xl)
        out.sum().backward()
        torch.testing.assert_close(out, ref(x), rtol=1e-5, atol=1e-5)
        assert xl.grad is not None and torch.isfinite(xl.grad).all()
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
