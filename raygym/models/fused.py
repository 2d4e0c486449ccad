"""Hand-written autograd ops for the Gym networks where PyTorch's own CPU kernels are slow in
channels_last (NHWC), and the one switch that decides when they are used.

:func:`up_concat` is the decoder's ``cat([nearest_x2(x), skip], dim=1)``. In NHWC a channel slice
of the concatenated gradient is strided, so autograd's ``cat`` backward hands
``upsample_nearest2d_backward`` a non-contiguous tensor: PyTorch copies it, zero-fills the
result and scatters into it, and the skip's slice is copied again later. Here the forward writes
both parts straight into one NHWC buffer, and the backward reads the gradient once: the
upsampled part as the sum of its four strided 2 x 2 phases, the skip part as one contiguous
copy. Forward + backward of the four gym_unet f8 levels (batch 8, 256 px), 1 thread, CPU ms:
294 -> 117 (135 -> 52 where glibc keeps freed memory instead of page-faulting every large
output afresh); ``bench/bench_ops.py`` measures it, ``bench/bench_step.py`` the whole step.

A fused BatchNorm + ReLU was measured too and is *not* here: written as an autograd function
over the ``(N*H*W, C)`` view of an NHWC tensor (GEMV column sums, one elementwise pass each for
normalise + affine + ReLU and for the input gradient; ``MatrixBNReLU`` in bench_ops.py), it was
15-140 % slower than PyTorch's own channels_last ``batch_norm`` + ``relu_`` at every gym_unet
shape, forward and backward, and ``torch.compile`` of the pair was 4-12x slower still. At one
thread PyTorch's channels_last BN is not the bottleneck it looked like in a 2-thread profile on
a busy machine: it is as fast as NCHW's (bench_ops.py) and ~3 % of a training step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

_ENABLED = True  # flipped only by fast_paths(), for A/B benchmarks and tests


@contextlib.contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Turn the hand-written ops on or off inside a ``with`` block (benchmarks, tests)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, enabled
    try:
        yield
    finally:
        _ENABLED = before


def use_fast_path(*tensors: torch.Tensor) -> bool:
    """The one place that decides whether a hand-written op replaces PyTorch's.

    Only where it was measured to pay: CPU tensors in channels_last, same dtype (fp32 or bf16
    under autocast), while autograd records (the forward alone is as fast as PyTorch's, so
    inference, ONNX export and ``torch.compile`` keep the stock ops), and never while tracing.
    """
    if not (_ENABLED and torch.is_grad_enabled()) or torch.compiler.is_compiling():
        return False
    first = tensors[0]
    return (
        any(t.requires_grad for t in tensors)
        and all(t.device.type == "cpu" and t.dtype == first.dtype and t.dim() == 4
                and t.is_contiguous(memory_format=torch.channels_last) for t in tensors)
    )


class _UpConcatNHWC(torch.autograd.Function):
    """``cat([nearest_x2(x), skip], 1)`` on NHWC tensors, with a one-pass backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                skip: torch.Tensor) -> torch.Tensor:
        n, c1, h, w = x.shape
        c2 = skip.shape[1]
        out = torch.empty((n, c1 + c2, 2 * h, 2 * w), dtype=x.dtype, device=x.device,
                          memory_format=torch.channels_last)
        nhwc = out.permute(0, 2, 3, 1)  # (N, 2H, 2W, C), contiguous
        # (N, H, 2, W, 2, C): the 2 x 2 phases of each source pixel, filled by broadcasting
        nhwc.view(n, h, 2, w, 2, c1 + c2)[..., :c1].copy_(
            x.permute(0, 2, 3, 1)[:, :, None, :, None, :])
        nhwc[..., c1:].copy_(skip.permute(0, 2, 3, 1))
        ctx.c1 = c1
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx,
                 grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c1: int = ctx.c1  # type: ignore[attr-defined]
        n, c, h2, w2 = grad.shape
        g = grad.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        phases = g.reshape(n, h2 // 2, 2, w2 // 2, 2, c)[..., :c1]
        p00, p01, p10, p11 = (phases[:, :, i, :, j] for i in (0, 1) for j in (0, 1))
        # Sum the four phases, in float32 for bf16/fp16 gradients as PyTorch's kernel does.
        acc_dtype = torch.promote_types(grad.dtype, torch.float32)
        acc = torch.empty((n, h2 // 2, w2 // 2, c1), dtype=acc_dtype, device=grad.device)
        if grad.dtype == acc_dtype:
            torch.add(p00, p01, out=acc)
        else:
            acc.copy_(p00).add_(p01)
        acc.add_(p10).add_(p11)
        grad_x = acc.to(grad.dtype).permute(0, 3, 1, 2)
        grad_skip = g[..., c1:].contiguous().permute(0, 3, 1, 2)
        return grad_x, grad_skip


def up_concat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Gym ``upsamp_concat_block``: nearest x2 of ``x``, then ``[up, skip]`` on channels.

    ``x (B, C1, H, W)``, ``skip (B, C2, 2H, 2W)`` -> ``(B, C1 + C2, 2H, 2W)``; NHWC in, NHWC
    out on the fast path (see :func:`use_fast_path`), PyTorch's own ops otherwise.
    """
    if use_fast_path(x, skip) and skip.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1]):
        return _UpConcatNHWC.apply(x, skip)
    return torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skip], dim=1)
