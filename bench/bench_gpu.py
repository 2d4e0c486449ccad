"""GPU throughput of raygym's training step and predictor, in minutes on one GPU.

Measures, each with channels_last and raygym's own forward path (``inference.runtime.logits``):

* train img/s (forward + Dice loss + backward + Adam step) of ``gym_unet`` (filters 8,
  kernel 7) and smp ``unet`` with a resnet34 encoder (``encoder_weights=None``) at 256 and 512
  px, in fp32 / bf16-mixed / fp16-mixed (fp16 with loss scaling), with achieved GFLOP/s;
* predict img/s (eval, ``no_grad``) of the same models and numerics;
* with 2+ GPUs: one 2-worker DDP (nccl) training step rate (``torch.multiprocessing``);
* 4 trials packed on one GPU, as ``resources.gpus_per_worker: 0.25`` packs them: 4 Ray tasks
  asking for 0.25 GPU each train gym_unet concurrently; the GPU's busy share (NVML via
  ``pynvml`` if installed, else ``nvidia-smi``) is sampled during one trial alone and during
  the four, with the summed img/s.

Prints a Markdown table ready for ``bench/RESULTS.md``. On a machine without a GPU it says so
and, with ``--cpu-smoke``, runs the same code paths tiny on the CPU (seconds): the CI check of
this script (``tests/test_bench_gpu.py``).

    python bench/bench_gpu.py                      # on a GPU machine: ~3-5 min
    python bench/bench_gpu.py --cpu-smoke          # anywhere: seconds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16-mixed", "fp16-mixed")
MODELS = {  # name -> (registry name, builder params)
    "gym_unet f8 k7": ("gym_unet", {"filters": 8, "kernel": 7}),
    "smp unet-resnet34": ("unet", {"encoder": "resnet34", "encoder_weights": None}),
}
SMOKE_MODELS = {"gym_unet f2 k3": ("gym_unet", {"filters": 2, "kernel": 3})}
BANDS, CLASSES = 3, 4


@dataclass
class Row:
    """One line of the table: what ran, how fast (img/s), and the GPU busy share if sampled."""

    what: str
    model: str
    size: int
    precision: str
    images_per_s: float
    gflop_per_s: float = float("nan")
    busy: str = ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--help`` lists them)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-smoke", action="store_true",
                   help="tiny CPU run of every code path (no GPU needed, seconds)")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="px, square")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    p.add_argument("--batch", type=int, default=8, help="images per step (Gym's 8)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN choice)")
    p.add_argument("--pack", type=int, default=4, help="trials packed on one GPU (0: skip)")
    p.add_argument("--pack-seconds", type=float, default=20.0, help="each packed trial's time")
    args = p.parse_args(argv)
    if min(args.sizes) < 32 or any(s % 32 for s in args.sizes):
        p.error("--sizes must be multiples of 32 (smp encoders stride 32), >= 32")
    if args.batch < 2 or args.steps < 1 or args.warmup < 0 or args.pack < 0:
        p.error("--batch >= 2 (BatchNorm), --steps >= 1, --warmup >= 0, --pack >= 0")
    return args


def smoke_settings(args: argparse.Namespace) -> argparse.Namespace:
    """``--cpu-smoke``: the same measurements, tiny (64 px, filters 2, 2 steps, no packing)."""
    return argparse.Namespace(**{**vars(args), "sizes": [64], "batch": 2, "steps": 2,
                                 "warmup": 1, "precision": ["fp32", "bf16-mixed"], "pack": 0})


# ------------------------------------------------------------------------------ steps
def build(name: str, params: dict[str, object], device: torch.device) -> nn.Module:
    from raygym.inference.runtime import to_layout
    from raygym.models import build_model

    model = build_model(name, in_channels=BANDS, num_classes=CLASSES, **params).to(device)
    return to_layout(model, True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rate(model: nn.Module, size: int, precision: str, device: torch.device, batch: int,
               steps: int, warmup: int, seconds: float = 0.0) -> float:
    """Training images/s: ``warmup`` untimed steps, then ``steps`` (or ``seconds``) timed."""
    from raygym.inference.runtime import logits
    from raygym.train.losses import build_loss

    loss_fn = build_loss("dice", CLASSES, None)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16-mixed")
    x = torch.randn(batch, BANDS, size, size, device=device)
    y = torch.randint(0, CLASSES, (batch, size, size), device=device)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(logits(model, x, device=device, precision=precision,
                              channels_last=True), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    sync(device)
    tick, done = time.perf_counter(), 0
    while done < steps or time.perf_counter() - tick < seconds:
        step()
        done += 1
    sync(device)
    return done * batch / (time.perf_counter() - tick)


@torch.no_grad()
def predict_rate(model: nn.Module, size: int, precision: str, device: torch.device,
                 batch: int, steps: int, warmup: int) -> float:
    """Inference images/s (eval mode, ``no_grad``, softmax included as the predictor does)."""
    from raygym.inference.runtime import logits

    model.eval()
    x = torch.randn(batch, BANDS, size, size, device=device)
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            tick = time.perf_counter()
        logits(model, x, device=device, precision=precision, channels_last=True).softmax(1)
    sync(device)
    return steps * batch / (time.perf_counter() - tick)


def train_gflops(model: nn.Module, size: int, images_per_s: float) -> float:
    from raygym.train.throughput import TRAIN_FLOPS_FACTOR, forward_flops_per_image

    return TRAIN_FLOPS_FACTOR * forward_flops_per_image(model, (BANDS, size, size)) \
        * images_per_s / 1e9


# ------------------------------------------------------------------------- GPU busy
def busy_reader() -> tuple[str, object] | None:
    """A function returning the GPU 0 utilisation in %: NVML, else nvidia-smi, else None."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return "nvml", lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # not installed, or no driver: try the command line
        pass
    if shutil.which("nvidia-smi"):
        def smi() -> float:
            out = subprocess.run(["nvidia-smi", "--id=0", "--query-gpu=utilization.gpu",
                                  "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout
            return float(out.split()[0])
        return "nvidia-smi", smi
    return None


@contextlib.contextmanager
def sampled_busy(period: float = 0.2) -> Iterator[list[float]]:
    """Sample GPU 0's utilisation (%) every ``period`` s while the block runs."""
    reader = busy_reader()
    samples: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while reader is not None and not stop.wait(period):
            with contextlib.suppress(Exception):
                samples.append(reader[1]())  # type: ignore[operator]

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def busy_text(samples: list[float]) -> str:
    return f"{statistics.median(samples):.0f} %" if samples else "n/a"


def packed_trials(n: int, size: int, precision: str, batch: int, seconds: float) -> list[Row]:
    """One trial alone, then ``n`` Ray tasks with ``num_gpus=1/n`` each (Tune's packing)."""
    import ray

    name, params = MODELS["gym_unet f8 k7"]

    @ray.remote(num_gpus=1.0 / n, num_cpus=1)
    def trial() -> float:
        dev = torch.device("cuda")
        return train_rate(build(name, params, dev), size, precision, dev, batch, 1, 3, seconds)

    ray.init(num_gpus=1, num_cpus=max(n, 2), include_dashboard=False, log_to_driver=False)
    try:
        with sampled_busy() as alone:
            one = ray.get(trial.remote())
        with sampled_busy() as packed:
            rates = ray.get([trial.remote() for _ in range(n)])
    finally:
        ray.shutdown()
    return [Row("1 trial alone (0.25 GPU)", "gym_unet f8 k7", size, precision, one,
                busy=busy_text(alone)),
            Row(f"{n} trials packed, summed", "gym_unet f8 k7", size, precision, sum(rates),
                busy=busy_text(packed))]


# ---------------------------------------------------------------------------------- DDP
def _ddp_worker(rank: int, world: int, size: int, precision: str, batch: int, steps: int,
                port: int, out: dict[int, float]) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    dev = torch.device("cuda", rank)
    torch.cuda.set_device(dev)
    name, params = MODELS["gym_unet f8 k7"]
    model = DistributedDataParallel(build(name, params, dev), device_ids=[rank])
    out[rank] = train_rate(model, size, precision, dev, batch, steps, 5)
    dist.destroy_process_group()


def ddp_rate(size: int, precision: str, batch: int, steps: int) -> float:
    """Summed img/s of 2 DDP workers (nccl), each with ``batch`` images per step."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, size, precision, batch, steps, port, out), nprocs=2)
    return sum(out.values())


# -------------------------------------------------------------------------------- table
def markdown(rows: list[Row], header: str) -> str:
    lines = [header, "",
             "| measurement | model | px | precision | img/s | GFLOP/s | GPU busy |",
             "|---|---|---:|---|---:|---:|---:|"]
    for r in rows:
        g = "" if r.gflop_per_s != r.gflop_per_s else f"{r.gflop_per_s:.0f}"
        lines.append(f"| {r.what} | {r.model} | {r.size} | {r.precision} | "
                     f"{r.images_per_s:.1f} | {g} | {r.busy} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    """Every measurement ``args`` asks for; returns the Markdown table."""
    gpu = torch.cuda.is_available()
    if not gpu and not args.cpu_smoke:
        return ("no GPU is present (torch.cuda.is_available() is False): nothing measured; "
                "run with --cpu-smoke to check this script's code paths on the CPU")
    device = torch.device("cuda" if gpu and not args.cpu_smoke else "cpu")
    if args.cpu_smoke:
        args = smoke_settings(args)
        models = SMOKE_MODELS
        note = "no GPU is present: CPU smoke run (tiny sizes, figures mean nothing)" \
            if not gpu else "CPU smoke run (tiny sizes, figures mean nothing)"
    else:
        models = {k: MODELS[k] for k in args.models}
        note = f"{torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    print(note, file=sys.stderr, flush=True)
    rows: list[Row] = []
    for label, (name, params) in models.items():
        for size in args.sizes:
            for precision in args.precision:
                torch.manual_seed(0)
                model = build(name, params, device)
                rate = train_rate(model, size, precision, device, args.batch, args.steps,
                                  args.warmup)
                rows.append(Row("train", label, size, precision, rate,
                                train_gflops(model, size, rate)))
                rate = predict_rate(model, size, precision, device, args.batch, args.steps,
                                    args.warmup)
                rows.append(Row("predict", label, size, precision, rate))
                print(f"{label} {size}px {precision}: train {rows[-2].images_per_s:.1f} "
                      f"predict {rate:.1f} img/s", file=sys.stderr, flush=True)
                del model
    best = "bf16-mixed" if "bf16-mixed" in args.precision else args.precision[0]
    if gpu and not args.cpu_smoke and torch.cuda.device_count() >= 2:
        rows.append(Row("DDP 2 workers (nccl), summed", "gym_unet f8 k7", 256, best,
                        ddp_rate(256, best, args.batch, args.steps)))
    elif not args.cpu_smoke:
        note += "; DDP skipped: 1 GPU"
    if gpu and not args.cpu_smoke and args.pack:
        rows += packed_trials(args.pack, 256, best, args.batch, args.pack_seconds)
    header = (f"bench_gpu: {note}; torch {torch.__version__}, batch {args.batch}, "
              f"{args.steps} timed steps after {args.warmup}, channels_last")
    return markdown(rows, header)


def main(argv: Sequence[str] | None = None) -> int:
    print(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
