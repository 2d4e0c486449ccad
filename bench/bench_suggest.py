"""Time per suggestion of raygym's Optuna searcher as the study grows (issue 10), without Tune.

The real searcher and scheduler (``build_searcher`` / ``build_scheduler`` from bench_scale's
space: arch x filters x loss x a continuous max_lr, ASHA grace 2 rf 3, 10 epochs), driven by
the search simulator (:func:`raygym.search.simulate.simulate`) on the S2 curve table, with
``--concurrency`` trials at once and the study in a file as ``raygym search`` keeps it. Prints
the median ``suggest`` time per block of 100 asks and the driver CPU of the whole search.

    python bench/bench_suggest.py --trials 1000
    python bench/bench_suggest.py --trials 1000 --max-history none   # TPE models every trial
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_scale  # bench/ sibling module

from raygym.search import simulate
from raygym.search import tune as search_tune
from raygym.search.optuna_search import TruthfulOptunaSearch
from raygym.search.replay import CurveTable
from raygym.search.space_config import load_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-history", default="300", help="search.tpe.max_history, or none")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-suggest-"))
    spec = {"name": "suggest", "trials": args.trials, "concurrency": args.concurrency,
            "algorithm": "optuna", "scheduler": "asha", "epochs": 10, "cpus": 64}
    config, space = load_experiment(bench_scale.space_yaml(spec, out))
    history = None if args.max_history == "none" else int(args.max_history)
    tpe = config.search.tpe.model_copy(update={"max_history": history})
    config = config.model_copy(
        update={"search": config.search.model_copy(update={"tpe": tpe})})
    build = search_tune.build_searcher
    # the simulator builds an in-memory study; the study file is what a search writes
    search_tune.build_searcher = (  # type: ignore[assignment]
        lambda c, s, _out, sampler=None: build(c, s, out, sampler=sampler))
    times: list[float] = []
    suggest = TruthfulOptunaSearch.suggest

    def timed(self: Any, trial_id: str) -> Any:
        t0 = time.perf_counter()
        try:
            return suggest(self, trial_id)
        finally:
            times.append(time.perf_counter() - t0)

    TruthfulOptunaSearch.suggest = timed  # type: ignore[method-assign]
    table = CurveTable.load(bench_scale.fixed_cost_table(out, 1.0))
    cpu0 = time.process_time()
    trace = simulate.simulate(config, space, table, seed=0, max_epochs_spent=1e12)
    cpu = time.process_time() - cpu0
    print(f"{trace.trials} trials ({trace.pruned} pruned), {args.concurrency} at once, "
          f"max_history {history}: driver CPU {cpu:.1f} s ({1e3 * cpu / trace.trials:.1f} ms "
          f"per trial); study file {sum(f.stat().st_size for f in out.glob('optuna.*'))} bytes")
    for start in range(0, len(times), 100):
        block = times[start:start + 100]
        print(f"asks {start:5d}-{start + len(block):5d}: median "
              f"{1e3 * statistics.median(block):5.1f} ms")


if __name__ == "__main__":
    main()
