"""Per-op micro-benchmarks behind ``raygym.models.fused``: forward and backward of the gym_unet
f8 k7 non-convolution ops at their real shapes (batch 8, 256 px), variants alternated.

* ``bn_relu``: BatchNorm (training, batch statistics) + ReLU. ``stock`` = ``nn.BatchNorm2d`` +
  ``relu_`` in channels_last; ``raygym`` = ``raygym.models.fused.BatchNorm2d`` + ``relu_`` (its
  backward sums over widened rows where PyTorch's false-shares a cache line between threads:
  compare at ``--threads 2``); ``nchw`` = the stock pair in NCHW; ``matrix`` = a hand-written
  autograd function over the ``(N*H*W, C)`` view of the NHWC tensor (GEMV column sums, fused
  affine + ReLU, hand-written backward) - the candidate that was measured and *not* adopted;
  ``compiled`` (with ``--compile``) = ``torch.compile`` of the functional pair.
* ``up_concat``: ``stock`` = ``cat([interpolate(x, 2), skip])``; ``fused`` = raygym's.

With ``--threads 1`` (default) the figures are the thread's CPU milliseconds
(``time.thread_time``), which other processes' load barely moves; otherwise wall ms. Each cell:
min / median over ``--rounds``.

    python bench/bench_ops.py --rounds 7
    python bench/bench_ops.py --rounds 7 --threads 2
    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1099511627776 python bench/bench_ops.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raygym.models.fused import BatchNorm2d, fast_paths, up_concat

CL = torch.channels_last
BN_SHAPES = [(8, 8, 256, 256), (8, 16, 128, 128), (8, 40, 256, 256), (8, 80, 128, 128),
             (8, 160, 64, 64), (8, 192, 32, 32)]
UP_SHAPES = [((8, 128, 16, 16), (8, 64, 32, 32)), ((8, 128, 32, 32), (8, 32, 64, 64)),
             ((8, 64, 64, 64), (8, 16, 128, 128)), ((8, 32, 128, 128), (8, 8, 256, 256))]


class MatrixBNReLU(torch.autograd.Function):
    """BN (batch stats, Keras-style running update) + ReLU on the ``(N*H*W, C)`` view."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):  # noqa: ANN001, ANN205
        n, c, h, w = x.shape
        x2 = x.permute(0, 2, 3, 1).reshape(-1, c)  # free view of an NHWC tensor
        m = x2.shape[0]
        mean = torch.mv(x2.t(), x2.new_ones(m)).div_(m)
        d = x2 - mean
        var = torch.linalg.vecdot(d, d, dim=0).div_(m)
        rstd = (var + eps).rsqrt_()
        running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        running_var.mul_(1 - momentum).add_(var * (m / max(m - 1, 1)), alpha=momentum)
        y2 = torch.addcmul(bias, d, weight * rstd, out=d).relu_()
        ctx.save_for_backward(x2, y2, weight, mean, rstd)
        return y2.view(n, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        x2, y2, weight, mean, rstd = ctx.saved_tensors
        m, c = x2.shape
        dy2 = dy.contiguous(memory_format=CL).permute(0, 2, 3, 1).reshape(-1, c)
        dz = torch.ops.aten.threshold_backward(dy2, y2, 0)
        dbias = torch.mv(dz.t(), dz.new_ones(m))
        dweight = (torch.linalg.vecdot(dz, x2, dim=0) - mean * dbias) * rstd
        a = weight * rstd
        b = -a * rstd * dweight / m
        dx2 = torch.addcmul(-a * dbias / m - b * mean, dz, a, out=dz).addcmul_(x2, b)
        return (dx2.view(dy.shape[0], dy.shape[2], dy.shape[3], c).permute(0, 3, 1, 2),
                dweight, dbias, None, None, None, None)


def timed(fn: Callable[[], torch.Tensor], grad: torch.Tensor, clock: Callable[[], float]
          ) -> tuple[float, float]:
    """(forward ms, backward ms) of one call."""
    t0 = clock()
    out = fn()
    t1 = clock()
    out.backward(grad)
    return 1e3 * (t1 - t0), 1e3 * (clock() - t1)


def run(cases: dict[str, Callable[[], torch.Tensor]], grad: dict[str, torch.Tensor],
        rounds: int, clock: Callable[[], float]) -> dict[str, list[tuple[float, float]]]:
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for r in range(rounds + 1):  # round 0 warms up
        for name, fn in cases.items():
            t = timed(fn, grad[name], clock)
            if r:
                times[name].append(t)
    return times


def cell(values: list[tuple[float, float]], i: int) -> str:
    v = [t[i] for t in values]
    return f"{min(v):.1f} / {statistics.median(v):.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="add torch.compile'd BN + ReLU")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    unit = "thread CPU ms" if args.threads == 1 else "wall ms"
    compiled = torch.compile(lambda x, w, b, rm, rv: F.relu(
        F.batch_norm(x, rm, rv, w, b, True, 0.01, 1e-3))) if args.compile else None
    print(f"bench_ops: torch {torch.__version__}, {args.threads} thread(s), {unit} min / median "
          f"of {args.rounds}; load average (1 min) {os.getloadavg()[0]:.1f}\n")
    print(f"| op | shape | variant | forward {unit} | backward {unit} |\n|---|---|---|---|---|")
    for shape in BN_SHAPES:
        bn = nn.BatchNorm2d(shape[1], eps=1e-3, momentum=0.01)
        ours = BatchNorm2d(shape[1], eps=1e-3, momentum=0.01)
        x = torch.randn(shape).contiguous(memory_format=CL).requires_grad_()
        xn = x.detach().contiguous().requires_grad_()
        g = torch.randn(shape).contiguous(memory_format=CL)
        cases = {
            "stock": lambda bn=bn, x=x: F.relu(bn(x), inplace=True),
            "raygym": lambda bn=ours, x=x: F.relu(bn(x), inplace=True),
            "nchw": lambda bn=bn, x=xn: F.relu(bn(x), inplace=True),
            "matrix": lambda bn=bn, x=x: MatrixBNReLU.apply(
                x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps),
        }
        if compiled is not None:
            cases["compiled"] = lambda bn=bn, x=x: compiled(
                x, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        grads = {k: g.contiguous() if k == "nchw" else g for k in cases}
        for name, t in run(cases, grads, args.rounds, clock).items():
            print(f"| bn_relu | {shape} | {name} | {cell(t, 0)} | {cell(t, 1)} |", flush=True)
    for xs, ss in UP_SHAPES:
        x = torch.randn(xs).contiguous(memory_format=CL).requires_grad_()
        skip = torch.randn(ss).contiguous(memory_format=CL).requires_grad_()
        g = torch.randn(xs[0], xs[1] + ss[1], *ss[2:]).contiguous(memory_format=CL)

        def call(on: bool, x: torch.Tensor = x, skip: torch.Tensor = skip) -> torch.Tensor:
            with fast_paths(on):
                return up_concat(x, skip)

        cases = {"stock": lambda: call(False), "fused": lambda: call(True)}
        for name, t in run(cases, {k: g for k in cases}, args.rounds, clock).items():
            print(f"| up_concat | {xs} + {ss} | {name} | {cell(t, 0)} | {cell(t, 1)} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
