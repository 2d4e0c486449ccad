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

:class:`BatchNorm2d` is ``nn.BatchNorm2d`` with another backward where PyTorch's is slow: its
channels_last CPU kernel sums each thread's rows into a ``(threads, C)`` float buffer, so with
``C`` not a multiple of 16 two threads write into one 64-byte cache line on every row (false
sharing): at 2 threads the backward of (8, 8, 256, 256) takes 38-54 ms against 13 ms at 1 thread.
Here the sums run over the tensor viewed as ``(N*H*W / k, k*C)`` rows, ``k*C`` a multiple of 16
(per-thread slots a whole cache line each), then fold back to ``C`` channels; the input gradient
is one affine pass. 2 threads, ms: C=8 38 -> 11, C=40 46 -> 37. At 1 thread (no false
sharing) PyTorch's own is kept.

:func:`up_concat_bn_relu` is a decoder block's BN + ReLU of that concatenation, run before the
upsampling (both act per channel, and nearest x2 only repeats values): on a quarter of the
upsampled channels' values, in training. gym_unet f8, batch 8, 256 px, one training step
against BN + ReLU after the upsampling: fp32 +4.8 % at 2 threads, +11 % at 1; bf16 +14.5 %.

:class:`Dropout` is ``nn.Dropout`` whose float32 mask is drawn as uniform numbers (in parts, on
Python threads with their own generators) and compared with ``p``: PyTorch's CPU ``bernoulli_``
is one serial pass at ~6 ns a value, half of a standard dropout layer's time. 2 threads,
(8, 8, 256, 256): 29 -> 10 ms.

A fused BatchNorm + ReLU (GEMV column sums, one pass each for the affine + ReLU and the input
gradient; ``MatrixBNReLU`` in bench_ops.py) was 15-140 % slower than PyTorch's at one thread,
and ``torch.compile`` of the pair 4-12x slower still: not here.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

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


def use_fast_path(*tensors: torch.Tensor, inference: bool = False) -> bool:
    """The one place that decides whether a hand-written op replaces PyTorch's.

    Only where it was measured to pay: CPU tensors in channels_last, same dtype (fp32 or bf16
    under autocast), never while tracing or compiling (ONNX export and ``torch.compile`` keep
    the stock ops), and while autograd records: most forwards alone are as fast as PyTorch's.
    ``inference=True`` drops that last condition, for the one measured to pay in inference too
    (the decoder's BN + ReLU before the upsampling: predict -4 % at 2 threads).
    """
    if not _ENABLED or torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    if not inference and not (torch.is_grad_enabled()
                              and any(t.requires_grad for t in tensors)):
        return False
    first = tensors[0]
    return all(t.device.type == "cpu" and t.dtype == first.dtype and t.dim() == 4
               and t.is_contiguous(memory_format=torch.channels_last) for t in tensors)


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


# Floats per 64-byte cache line: PyTorch's channels_last BN backward accumulates in float32
_LINE_FLOATS = 16


def _widening(x: torch.Tensor) -> int:
    """How many NHWC rows :class:`BatchNorm2d`'s backward views as one (``k``) so that
    ``k * C`` fills whole cache lines; 1 where PyTorch's own backward is kept: one thread (no
    false sharing), C a multiple of 16, and bf16 from 16 channels up (its float32 input
    gradient costs a pass more, which pays only where every row's slot shares a line:
    (8, 8, 256, 256) 43 -> 18 ms, while C = 40 would go 46 -> 69 ms)."""
    rows, channels = x.numel() // x.shape[1], x.shape[1]
    k = _LINE_FLOATS // math.gcd(channels, _LINE_FLOATS)
    dtype_pays = x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and channels < 16)
    if k == 1 or not dtype_pays or torch.get_num_threads() == 1 or rows % k:
        return 1
    return k


class _BatchNormNHWC(torch.autograd.Function):
    """Training-mode batch norm of an NHWC tensor (fp32, or bf16 with fp32 parameters):
    PyTorch's forward, and a backward whose per-channel sums run over ``(N*H*W / k, k*C)``
    rows (see the module docstring)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, momentum: float, eps: float, k: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (out, the batch's mean, its invstd); updates given running statistics in place,
        as F.batch_norm does."""
        out, mean, invstd = torch.ops.aten.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps, ctx.k = eps, k  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(mean, invstd)
        return out, mean, invstd

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor,
                 *_stats_grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, mean, invstd = ctx.saved_tensors  # type: ignore[attr-defined]
        eps, k = ctx.eps, ctx.k  # type: ignore[attr-defined]
        n, c, h, w = x.shape
        rows = n * h * w
        grad = grad.contiguous(memory_format=torch.channels_last)
        # (N, C, H, W) NHWC -> (rows / k, k * C), free views; eval mode with the batch's own
        # statistics gives sum(dy * x_hat) and sum(dy) per widened channel
        x2 = x.permute(0, 2, 3, 1).reshape(rows // k, k * c)
        dy2 = grad.permute(0, 2, 3, 1).reshape(rows // k, k * c)
        var = invstd.pow(-2).sub_(eps)
        # a float32 weight (of ones) keeps a bf16 input's sums in float32
        _, dot_k, sum_k = torch.ops.aten.native_batch_norm_backward(
            dy2, x2, weight.new_ones(k * c), mean.repeat(k), var.repeat(k), None, None, False,
            eps, [False, True, True])
        grad_weight = dot_k.view(k, c).sum(0)  # sum(dy * (x - mean)) * invstd
        grad_bias = sum_k.view(k, c).sum(0)  # sum(dy)
        # dx = w * invstd * (dy - sum(dy) / rows - x_hat * grad_weight / rows), as one affine
        # map of dy and x per channel
        a = weight * invstd
        b = -a * invstd * grad_weight / rows
        d = -a * grad_bias / rows - b * mean
        shape = (1, c, 1, 1)
        # float32 math (the coefficients are float32), rounded once to a bf16 input's dtype
        grad_x = torch.addcmul(d.view(shape), x, b.view(shape)).addcmul_(grad, a.view(shape))
        return grad_x.to(x.dtype), grad_weight, grad_bias, None, None, None, None, None


def _updates_running_stats(bn: nn.BatchNorm2d) -> bool:
    """``bn`` normalises by the batch's statistics and moves its running ones by a fixed
    momentum: the training mode the hand-written batch norms reproduce."""
    return bn.training and bn.track_running_stats and bn.momentum is not None and bn.affine


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and results) whose training backward avoids
    PyTorch's false sharing on NHWC CPU tensors with ``C`` not a multiple of 16 (fp32; bf16
    below 16 channels), at more than one thread; elsewhere it is ``nn.BatchNorm2d`` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = 1
        if _updates_running_stats(self) and use_fast_path(x):
            k = _widening(x)
        if k == 1:
            return super().forward(x)
        assert self.num_batches_tracked is not None  # track_running_stats
        self.num_batches_tracked.add_(1)
        return _BatchNormNHWC.apply(x, self.weight, self.bias, self.running_mean,
                                    self.running_var, self.momentum, self.eps, k)[0]


def _bn_train_channels(x: torch.Tensor, bn: nn.BatchNorm2d, first: int, repeats: int
                       ) -> torch.Tensor:
    """Training-mode batch norm of ``x`` with channels ``first : first + C`` of ``bn``, its
    running statistics updated as if every value of ``x`` appeared ``repeats`` times (the
    unbiased variance's count); ``x (B, C, H, W)`` NHWC -> the same shape."""
    assert bn.weight is not None and bn.bias is not None and bn.momentum is not None
    assert bn.running_mean is not None and bn.running_var is not None
    last = first + x.shape[1]
    weight, bias = bn.weight[first:last], bn.bias[first:last]
    k = _widening(x)
    if k > 1:
        out, mean, invstd = _BatchNormNHWC.apply(x, weight, bias, None, None, bn.momentum,
                                                 bn.eps, k)
    else:
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, None, None, True,
                                                    bn.momentum, bn.eps)
    with torch.no_grad():
        count = x.numel() // x.shape[1] * repeats
        unbiased = invstd.pow(-2).sub_(bn.eps).mul_(count / max(count - 1, 1))
        bn.running_mean[first:last].lerp_(mean, bn.momentum)
        bn.running_var[first:last].lerp_(unbiased, bn.momentum)
    return out


def up_concat_bn_relu(x: torch.Tensor, skip: torch.Tensor, bn: nn.BatchNorm2d
                      ) -> torch.Tensor | None:
    """``relu(bn(up_concat(x, skip)))``: a decoder block's input, BN-ReLU'd.

    Batch norm and ReLU act per channel, and nearest x2 only repeats each value four times:
    the batch's mean and variance of the upsampled channels are those of ``x``, and the
    gradients come out the same. So on the fast path both run before the upsampling and the
    concatenation, on ``x`` (a quarter of the upsampled values) and ``skip``, in training;
    the running statistics count each value of ``x`` four times, as PyTorch's would. In eval
    mode (running statistics) likewise, with the one-pass up-concat also without autograd.
    ``None`` elsewhere: the caller runs its own modules (their hooks fire as usual).
    ``x (B, C1, H, W)``, ``skip (B, C2, 2H, 2W)``, ``bn`` over ``C1 + C2`` channels.
    """
    same_grid = skip.shape[-2:] == (2 * x.shape[-2], 2 * x.shape[-1])
    if _updates_running_stats(bn) and same_grid and use_fast_path(x, skip):
        assert bn.num_batches_tracked is not None
        bn.num_batches_tracked.add_(1)
        up = _bn_train_channels(x, bn, 0, repeats=4)
        side = _bn_train_channels(skip, bn, x.shape[1], repeats=1)
        return up_concat(up.relu_(), side.relu_())
    if (not bn.training and bn.running_mean is not None and bn.running_var is not None
            and bn.affine and same_grid and use_fast_path(x, skip, inference=True)):
        c1 = x.shape[1]
        parts = [F.batch_norm(part, bn.running_mean[lo:hi], bn.running_var[lo:hi],
                              bn.weight[lo:hi], bn.bias[lo:hi], False, 0.0, bn.eps).relu_()
                 for part, lo, hi in ((x, 0, c1), (skip, c1, c1 + skip.shape[1]))]
        return _UpConcatNHWC.apply(*parts)
    return None


# Dropout masks: parts of at least this many values, at most this many at once (one per thread)
_MASK_PART_MIN, _MASK_PARTS_MAX = 1 << 16, 8
_mask_pool: ThreadPoolExecutor | None = None


def _drop_mask_pool() -> ThreadPoolExecutor:
    global _mask_pool
    if _mask_pool is None:
        _mask_pool = ThreadPoolExecutor(_MASK_PARTS_MAX - 1, thread_name_prefix="raygym-mask")
    return _mask_pool


def _forget_mask_pool() -> None:  # a forked child has the executor but not its threads
    global _mask_pool
    _mask_pool = None


os.register_at_fork(after_in_child=_forget_mask_pool)


def dropout_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """A dropout noise tensor like ``x`` (dense): ``1 / (1 - p)`` with probability ``1 - p``,
    else 0. Uniform numbers fill it in up to one part per thread, each part from its own
    generator seeded by PyTorch's default one (``torch.manual_seed`` makes it repeatable; the
    masks differ from ``bernoulli_``'s); uniform_ is a serial kernel, so the workers start no
    OpenMP teams of their own; the comparison and the scaling run after, on PyTorch's threads."""
    noise = torch.empty_like(x)
    flat = noise.as_strided((noise.numel(),), (1,))
    parts = max(1, min(torch.get_num_threads(), _MASK_PARTS_MAX,
                       flat.numel() // _MASK_PART_MIN))
    seeds = torch.randint(0, 2**62, (parts,)).tolist()
    bounds = [flat.numel() * i // parts for i in range(parts + 1)]

    def fill(i: int) -> None:
        generator = torch.Generator().manual_seed(seeds[i])
        flat[bounds[i]:bounds[i + 1]].uniform_(generator=generator)

    pending = [_drop_mask_pool().submit(fill, i) for i in range(1, parts)]
    fill(0)
    for future in pending:
        future.result()
    return noise.ge_(p).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose training mask on float32 NHWC CPU tensors (the fast path) comes from
    :func:`dropout_mask`; the output is ``x * mask`` and the gradient ``grad * mask``, as
    PyTorch's. Elsewhere, and for bf16 (its coarse uniform numbers would bias ``p``), it is
    ``nn.Dropout`` itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and 0.0 < self.p < 1.0 and not self.inplace
                and x.dtype == torch.float32 and use_fast_path(x)):
            return x * dropout_mask(x, self.p)
        return super().forward(x)
