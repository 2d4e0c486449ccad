"""What the driver spends writing a search's TensorBoard files, per trial: tensorboardX's
``SummaryWriter`` (Tune's default) against raygym's :class:`~raygym.event_files.
TensorBoardWriter`, driven as Tune's ``TBXLoggerCallback`` drives them, without Ray.

Per trial: a writer on its folder; per result (``--results``) ``--scalars`` scalars (a raygym
search's result has ~22 numbers Tune keeps) and a flush, as Tune flushes after every result;
at its end the HParams summaries and a close. ``--trials`` trials, ``--open`` of them open at
once (a search's concurrency). The two writers alternate, ``--repeats`` times each; CPU seconds
of this process (the writer's threads included) and wall seconds, per trial.

    python bench/bench_tensorboard.py --trials 300 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def drive(writer_cls: Any, out: Path, *, trials: int, open_at_once: int, results: int,
          scalars: int) -> tuple[float, float]:
    """(CPU s, wall s) of writing ``trials`` trials' results through ``writer_cls``."""
    from tensorboardX.summary import hparams

    tags = [f"ray/tune/metric_{i}" for i in range(scalars)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    live: list[Any] = []
    for n in range(trials):
        writer = writer_cls(str(out / f"trial_{n:05d}"), flush_secs=30)
        live.append(writer)
        # the open trials take turns reporting, as trials running side by side do
        for step in range(1, results + 1):
            for i, tag in enumerate(tags):
                writer.add_scalar(tag, 0.5 + 0.001 * i * step, global_step=step)
            writer.flush()
        if len(live) >= open_at_once:
            done = live.pop(0)
            for proto in hparams({"model/filters": 8, "train/max_lr": 1e-3},
                                 {"ray/tune/val_mean_iou": 0.7}):
                done.file_writer.add_summary(proto)
            done.close()
    for writer in live:
        writer.close()
    return time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--open", type=int, default=32, help="trials open at once")
    ap.add_argument("--results", type=int, default=5, help="results per trial")
    ap.add_argument("--scalars", type=int, default=22, help="scalars per result")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    from tensorboardX import SummaryWriter

    from raygym.event_files import TensorBoardWriter

    writers = {"tensorboardX SummaryWriter": SummaryWriter, "raygym TensorBoardWriter":
               TensorBoardWriter}
    per_trial: dict[str, list[tuple[float, float]]] = {name: [] for name in writers}
    for _ in range(args.repeats):
        for name, cls in writers.items():  # alternating
            with tempfile.TemporaryDirectory(prefix="bench-tb-") as tmp:
                cpu, wall = drive(cls, Path(tmp), trials=args.trials, open_at_once=args.open,
                                  results=args.results, scalars=args.scalars)
            per_trial[name].append((1e3 * cpu / args.trials, 1e3 * wall / args.trials))
    print(f"{args.trials} trials x {args.results} results x {args.scalars} scalars, "
          f"{args.open} open at once, {args.repeats} runs each (alternating)")
    print("| writer | CPU ms per trial: median (min-max) | wall ms per trial: median (min-max) |")
    print("|---|---|---|")
    for name, runs in per_trial.items():
        cpu, wall = [r[0] for r in runs], [r[1] for r in runs]
        print(f"| {name} | {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) | "
              f"{statistics.median(wall):.1f} ({min(wall):.1f}-{max(wall):.1f}) |")


if __name__ == "__main__":
    main()
