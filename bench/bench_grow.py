"""Growing a search (``raygym search SPACE --resume`` with a larger ``search.num_samples``)
against planning the larger search from the start, on recorded tables, through real Tune.

For each search seed, two replayed searches (``--replay``: the real ``raygym search`` code path,
trials replay recorded curves instead of training): one of ``--to`` trials at once; one of
``--from`` trials, then resumed with ``--to``. Both are scored as ``search.json``'s ``replay``
verdict scores them: the ground-truth rank and score of the configuration handed back, and the
epochs spent (share of the grid's). Arms alternate per seed; medians and quartiles printed side
by side. The grown search starts TPE's model after ``num_samples // 3`` random trials (2-10) of
its first count, as a user's first, smaller search would.

Example (~2 min per table for 10 seeds on 2 cores)::

    python bench/bench_grow.py bench/curves/s2_128x64_4seeds_pbn --seeds 0-9 --from 12 --to 36
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any


def run_search(space: Path, table: Path, results: Path, seed: int, samples: int,
               resume: bool) -> dict[str, Any]:
    """One replayed search (or its growth); its search.json ``replay`` verdict."""
    from raygym.cli import main

    argv = ["search", str(space), "--replay", str(table), "--set",
            f"search.num_samples={samples}", "--set", f"search.seed={seed}", "--set",
            f"search.results_dir={results}", "--set", f"name=grow-{seed}"]
    with redirect_stdout(io.StringIO()):
        code = main([*argv, *(["--resume"] if resume else [])])
    if code != 0:
        raise SystemExit(f"search seed {seed} exited {code}")
    saved = json.loads((results / f"grow-{seed}-replay" / "search.json").read_text())
    return saved["replay"]


def quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3g}" if values else "-"
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{q2:.3g} ({q1:.3g}-{q3:.3g})"


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(text)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="a bench/curves table without its suffix "
                        "(its .space.yaml and .csv.gz beside it)")
    parser.add_argument("--seeds", type=seeds_arg, default=list(range(10)))
    parser.add_argument("--from", dest="before", type=int, default=12)
    parser.add_argument("--to", dest="after", type=int, default=36)
    args = parser.parse_args()
    space = args.table.with_name(args.table.name + ".space.yaml")
    table = args.table.with_name(args.table.name + ".csv.gz")
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    arms: dict[str, list[dict[str, Any]]] = {"at once": [], "grown": []}
    started = time.perf_counter()
    for i, seed in enumerate(args.seeds):
        order = ["at once", "grown"] if i % 2 == 0 else ["grown", "at once"]
        for arm in order:
            with tempfile.TemporaryDirectory() as folder:
                results = Path(folder)
                if arm == "grown":
                    run_search(space, table, results, seed, args.before, resume=False)
                verdict = run_search(space, table, results, seed, args.after,
                                     resume=arm == "grown")
            arms[arm].append(verdict)
        print(f"seed {seed}: " + "; ".join(
            f"{arm} rank {v[-1]['found']['rank'] if v[-1].get('found') else '-'}, "
            f"{v[-1]['epochs'] / v[-1]['grid_epochs']:.0%} of the grid's epochs"
            for arm, v in arms.items()), file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"\n{table.name}: {len(args.seeds)} search seeds, {args.before} -> {args.after} trials "
          f"grown vs {args.after} at once ({time.perf_counter() - started:.0f} s, load "
          f"{load:.1f})")
    print("| arm | rank of the pick (median, quartiles) | ground truth of the pick | top-3 | "
          "epochs, share of the grid's | within 0.01 of the grid's best at |")
    print("|---|---|---|---|---|---|")
    for arm, verdicts in arms.items():
        found = [v["found"] for v in verdicts if v.get("found")]
        ranks = [float(f["rank"]) for f in found]
        reached = [v["epochs_to_best"] / v["grid_epochs"] for v in verdicts
                   if v.get("epochs_to_best") is not None]
        print(f"| {arm} | {quartiles(ranks)} | {quartiles([f['score'] for f in found])} | "
              f"{sum(r <= 3 for r in ranks)}/{len(verdicts)} | "
              f"{quartiles([v['epochs'] / v['grid_epochs'] for v in verdicts])} | "
              f"{quartiles(reached) if reached else 'never'} "
              f"({len(reached)}/{len(verdicts)} searches) |")


if __name__ == "__main__":
    main()
