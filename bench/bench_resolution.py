"""Image size as a fidelity: rank every configuration on a cheap low-resolution run, then train
the best few at full size, against raygym's default search on the full-size table.

Two curve tables of the same grid (same configurations, epochs and schedule), one recorded at
a smaller image size. Strategy ``res-kK-rR`` (one search seed):

1. every configuration once at the low size (its recorded seed drawn per search seed, as
   :func:`raygym.search.replay.replay_seed_index` draws it, shared by all configurations as
   raygym trains them unless ``--seed-draw per_trial``; early stopping at ``--patience``),
   in the grid's order; the hand-back meanwhile is the low-size leader;
2. the best ``K`` by that run's kept score, at full size, ``R`` runs each (all first runs in
   low-size rank order, then the second runs); the hand-back is the best full-size mean.

Cost is counted in full-size epochs: a low-size epoch costs the ratio of the two tables'
median recorded epoch seconds (printed; ``--cost-ratio`` overrides it, e.g. the pixel ratio).
Printed per strategy, over ``--seeds`` search seeds, beside the default search (``default``
in ``bench_simulate.py``) on the same seeds: the section-2 figures of issue 9 (median epochs
to within 0.01 of the grid's best, top-1 / top-3 at 25 % and 50 % of the grid's epochs) and the
held-out score at 50 % (the mean of the full-size seeds the search did not replay for the
configuration it hands back), with the paired difference against the default.

Example::

    python bench/bench_resolution.py bench/curves/s2_64x32_2seeds.csv.gz bench/curves/s2_128x64_4seeds.csv.gz \\
        --patience 20 --seeds 100 --first-seed 100
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_heldout import held_out, paired, replayed_seeds  # bench/ sibling modules
from bench_simulate import SETTINGS, experiment, fmt

BUDGETS = (0.25, 0.5, 1.0)


def kept_run(table: Any, cid: int, seed: int, patience: int) -> tuple[float, int]:
    """(the kept val mIoU, epochs run) of one recorded run under early stopping."""
    from raygym.search.replay import replay_results

    results = list(replay_results(table, cid, seed, patience=patience, max_epochs=table.epochs,
                                  metric="val_mean_iou"))
    return float(results[-1].get("best_val_mean_iou", math.nan)), len(results)


def resolution_search(cheap: Any, full: Any, *, seed: int, top_k: int, runs: int,
                      patience: int, cost_ratio: float, draw: str = "shared"
                      ) -> tuple[Any, dict[int, set[int]]]:
    """One ``res-kK-rR`` search: its trace (cumulative full-size epochs, hand-back after each
    run) and, per configuration, the full-size seed indices it replayed."""
    from raygym.search.replay import replay_seed_index
    from raygym.search.simulate import SearchTrace

    spent, epochs_out, chosen_out = 0.0, [], []
    low: dict[int, float] = {}
    for cid in range(len(cheap.configs)):
        j = replay_seed_index(len(cheap.seeds), cid, seed, 0, draw)
        score, ran = kept_run(cheap, cid, cheap.seeds[j], patience)
        spent += ran * cost_ratio
        if score == score:
            low[cid] = score
        epochs_out.append(spent)
        chosen_out.append(max(low, key=low.__getitem__) if low else -1)
    leaders = sorted(low, key=lambda c: -low[c])[:top_k]
    scores: dict[int, list[float]] = {}
    seen: dict[int, set[int]] = {}
    for run in range(runs):
        for cid in leaders:
            j = replay_seed_index(len(full.seeds), cid, seed, run, draw)
            score, ran = kept_run(full, cid, full.seeds[j], patience)
            spent += ran
            seen.setdefault(cid, set()).add(j)
            if score == score:
                scores.setdefault(cid, []).append(score)
            epochs_out.append(spent)
            chosen_out.append(max(scores, key=lambda c: float(np.mean(scores[c])))
                              if scores else chosen_out[-1])
    trace = SearchTrace(epochs=np.asarray(epochs_out), chosen=np.asarray(chosen_out),
                        trials=len(cheap.configs) + runs * len(leaders), pruned=0,
                        sim_seconds=0.0, order=list(range(len(cheap.configs))))
    return trace, seen


def main(argv: list[str] | None = None) -> int:
    from raygym.search.replay import ground_truth, load_table
    from raygym.search.simulate import chosen_at, simulate, summarize
    from raygym.search.space_config import load_experiment

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cheap", type=Path, help="the table at the low image size")
    p.add_argument("full", type=Path, help="the same grid at full size")
    p.add_argument("--patience", type=int, required=True)
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--strategies", nargs="+", default=["res-k3-r2", "res-k6-r2"])
    p.add_argument("--cost-ratio", type=float, default=None)
    p.add_argument("--seed-draw", choices=["shared", "per_trial"], default="shared",
                   help="as in bench_simulate.py")
    args = p.parse_args(argv)
    cheap, full = load_table(str(args.cheap.resolve())), load_table(str(args.full.resolve()))
    if cheap.configs != full.configs or cheap.epochs != full.epochs:
        print("the two tables record different grids or epoch budgets", file=sys.stderr)
        return 2
    truth = ground_truth(full, patience=args.patience, max_epochs=full.epochs)
    grid = truth.grid_epochs

    def median_epoch_s(t: Any) -> float:
        return float(np.median(np.concatenate([c["seconds"] for c in t.curves.values()])))

    ratio = args.cost_ratio or median_epoch_s(cheap) / median_epoch_s(full)
    # how well the small size ranks the full one: bench_fidelity.py on the same two tables
    print(f"{args.cheap.name} -> {args.full.name}: a low-size epoch costs {ratio:.2f} of a "
          f"full one (median epoch {median_epoch_s(cheap):.2f} s / {median_epoch_s(full):.2f}"
          f" s); grid {grid:.0f} epochs, best {truth.best:.4f}; {args.seeds} search seeds "
          f"from {args.first_seed}")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    rows: dict[str, tuple[list[Any], dict[int, float]]] = {}
    overrides = SETTINGS["default"][1]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(experiment(full, args.patience, 2, overrides)))
        config, space = load_experiment(path)
    traces, held = [], {}
    for seed in seeds:
        trace = simulate(config, space, full, seed=seed, max_epochs_spent=grid,
                         seed_draw=args.seed_draw)
        traces.append(trace)
        cid = chosen_at(trace, 0.5 * grid)
        if cid >= 0:
            held[seed] = held_out(truth, cid, replayed_seeds(trace, cid, seed, len(full.seeds),
                                                             args.seed_draw))
    rows["default"] = (traces, held)
    for name in args.strategies:
        k, r = (int(part[1:]) for part in name.split("-")[1:])
        traces, held = [], {}
        for seed in seeds:
            trace, seen = resolution_search(cheap, full, seed=seed, top_k=k, runs=r,
                                            patience=args.patience, cost_ratio=ratio,
                                            draw=args.seed_draw)
            traces.append(trace)
            cid = chosen_at(trace, 0.5 * grid)
            if cid >= 0:
                held[seed] = held_out(truth, cid, seen.get(cid, set()))
        rows[name] = (traces, held)
    print(f"{'strategy':12} {'to best q25/med/q75':>20} {'top1@25':>8} {'top1@50':>8} "
          f"{'top3@25':>8} {'top3@50':>8}  held-out @50  ends at")
    for name, (traces, held) in rows.items():
        s = summarize(traces, truth)
        q = s["to_best"]
        end = np.median([tr.epochs[-1] for tr in traces]) / grid
        print(f"{name:12} {fmt(q[0]):>6} {fmt(q[1]):>6} {fmt(q[2]):>6} "
              f"{s['top1'][0.25]:>8.0%} {s['top1'][0.5]:>8.0%} {s['top3'][0.25]:>8.0%} "
              f"{s['top3'][0.5]:>8.0%}  {np.mean(list(held.values())):.4f}       {end:.0%}")
    for name in args.strategies:
        print(f"  {name} minus default, held-out at 50 %: "
              f"{paired(rows['default'][1], rows[name][1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
