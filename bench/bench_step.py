"""One training step of gym_unet, variants alternated in one process: the A/B bench for
``raygym.models.fused``, robust to a shared machine.

Each variant owns a model (same seed, same weights) and an Adam optimiser; every round runs
one step of each variant in turn (forward, Dice loss, backward, Adam), so load from other
processes hits all variants alike. Printed per variant: median and min-max of wall seconds per
step, img/s, and the ratio to the first variant, with the 1-min load average before and after.
With ``--threads 1`` it also prints the thread's CPU seconds per step (``time.thread_time``),
which other processes' load barely moves: the figure to trust on a busy machine.

Variants (``--variants``): ``stock``, PyTorch's own ops (``fused.fast_paths(False)``);
``fused``, raygym's fast paths; ``fused-stock-bn``, the same with ``nn.BatchNorm2d``'s own
backward in place of ``fused.BatchNorm2d``'s (compare at 2 threads or more); ``fused-late-bn``,
the decoders' BN + ReLU after the upsampling (``up_concat_bn_relu`` off);
``fused-stock-dropout``, ``nn.Dropout``'s own masks in place of ``fused.Dropout``'s; ``compiled`` /
``compiled-autotune``: PyTorch's ops under ``torch.compile`` (inductor, default mode /
``max-autotune-no-cudagraphs``), printed with their first step's wall time, which holds the
compile. The allocator is a process-wide setting, so
compare it across processes, alternating runs with and without ``--keep-freed-memory``
(:func:`raygym.allocator.keep_freed_memory`: glibc reuses freed memory instead of mapping and
page-faulting every large activation afresh).

    python bench/bench_step.py --rounds 7                           # fp32, channels_last
    python bench/bench_step.py --threads 1 --precision bf16-mixed --keep-freed-memory
    python bench/bench_step.py --variants fused compiled compiled-autotune --keep-freed-memory
    python bench/bench_step.py --variants fused-stock-bn fused --threads 2 --rounds 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

from raygym.allocator import keep_freed_memory
from raygym.inference.runtime import logits
from raygym.models import build_model
from raygym.models.fused import BatchNorm2d, Dropout, fast_paths, up_concat
from raygym.models.gym import ConvBlock
from raygym.train.losses import build_loss

BANDS, CLASSES = 3, 4
# torch.compile (inductor) variants: name -> mode; the first step's wall time (the compile
# included) is printed beside them
COMPILE_MODES = {"compiled": "default", "compiled-autotune": "max-autotune-no-cudagraphs"}
FUSED_VARIANTS = ("fused", "fused-stock-bn", "fused-late-bn", "fused-stock-dropout")


class Variant:
    """A model + optimiser trained with or without raygym's fast paths."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        if name not in COMPILE_MODES and name not in FUSED_VARIANTS + ("stock",):
            raise SystemExit(f"--variants {name!r}: use stock | " + " | ".join(FUSED_VARIANTS)
                             + " | " + " | ".join(COMPILE_MODES))
        # compiled variants trace PyTorch's own ops: inductor makes its own fusions
        self.name, self.fused = name, name in FUSED_VARIANTS
        self.args = args
        torch.manual_seed(0)
        self.model = build_model(args.arch, in_channels=BANDS, num_classes=CLASSES,
                                 filters=args.filters, kernel=args.kernel, dropout=0.1)
        if name == "fused-stock-bn":  # same modules and state, PyTorch's own forward/backward
            for module in self.model.modules():
                if isinstance(module, BatchNorm2d):
                    module.__class__ = nn.BatchNorm2d
        if name == "fused-stock-dropout":  # PyTorch's bernoulli_ masks
            for module in self.model.modules():
                if isinstance(module, Dropout):
                    module.__class__ = nn.Dropout
        if name == "fused-late-bn":  # decoder BN + ReLU after the upsampling, as before
            for module in self.model.modules():
                if isinstance(module, ConvBlock):
                    module.forward_up = (  # type: ignore[method-assign]
                        lambda x, skip, block=module: block(up_concat(x, skip)))
        if args.layout == "cl":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.loss = build_loss("dice", CLASSES, None)
        if name in COMPILE_MODES:
            self.model = torch.compile(self.model, mode=COMPILE_MODES[name])
        self.first_s = 0.0  # round 0: warm-up, and for compiled variants the compile
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def step(self, x: torch.Tensor, y: torch.Tensor, record: bool) -> None:
        a = self.args
        with fast_paths(self.fused):
            wall, cpu = time.perf_counter(), time.thread_time()
            self.model.train()
            self.opt.zero_grad(set_to_none=True)
            out = logits(self.model, x, device=torch.device("cpu"), precision=a.precision,
                         channels_last=a.layout == "cl")
            self.loss(out, y).backward()
            self.opt.step()
            if record:
                self.wall.append(time.perf_counter() - wall)
                self.cpu.append(time.thread_time() - cpu)
            else:
                self.first_s = time.perf_counter() - wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["stock", "fused"])
    p.add_argument("--rounds", type=int, default=5, help="timed steps per variant")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16-mixed"])
    p.add_argument("--layout", default="cl", choices=["cl", "nchw"])
    p.add_argument("--arch", default="gym_unet")
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--kernel", type=int, default=7)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc: reuse freed memory (raygym.allocator) for the whole process")
    args = p.parse_args(argv)
    keep = args.keep_freed_memory and keep_freed_memory()
    torch.set_num_threads(args.threads)
    variants = [Variant(v, args) for v in args.variants]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, BANDS, args.size, args.size, generator=gen)
    y = torch.randint(0, CLASSES, (args.batch, args.size, args.size), generator=gen)
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds + 1):  # round 0 warms up (oneDNN primitives, allocator)
        for v in variants:
            v.step(x, y, record=r > 0)
    loads.append(os.getloadavg()[0])
    print(f"bench_step: {args.arch} f{args.filters} k{args.kernel}, batch {args.batch}, "
          f"{args.size} px, {args.precision}, {args.layout}, {args.threads} threads, "
          f"keep freed memory {keep}, torch "
          f"{torch.__version__}, {args.rounds} rounds alternating; load average (1 min) "
          f"{loads[0]:.1f} -> {loads[1]:.1f}\n")
    cpu_cols = args.threads == 1
    head = "| variant | first step s | wall s/step median | min-max | img/s | x first |"
    print(head + (" CPU s/step median | min-max | x first |" if cpu_cols else ""))
    print("|---" * (head.count("|") - 1 + (3 if cpu_cols else 0)) + "|")
    base_wall = statistics.median(variants[0].wall)
    base_cpu = statistics.median(variants[0].cpu)
    for v in variants:
        w, c = statistics.median(v.wall), statistics.median(v.cpu)
        row = (f"| {v.name} | {v.first_s:.1f} | {w:.3f} | {min(v.wall):.3f}-{max(v.wall):.3f} | "
               f"{args.batch / w:.2f} | {base_wall / w:.3f} |")
        if cpu_cols:
            row += f" {c:.3f} | {min(v.cpu):.3f}-{max(v.cpu):.3f} | {base_cpu / c:.3f} |"
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
