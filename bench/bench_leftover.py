"""Leftover racing (``search.leftover_runs``) judged on a training seed no search replayed.

``bench_simulate.py`` judges a hand-back by the mean over all of a table's recorded seeds,
and a search that races its leaders through those same seeds is judged by the runs it saw.
Here each recorded seed in turn is held out (a fold): the searches replay a table without
it, and each setting's hand-back is judged by its score on the held-out seed alone. Every
setting is judged by the same seed in a fold, so the paired difference between two settings
is the difference of the configurations they chose, never of the seeds that judge them.

Searches get ``--samples-factor`` x the table's configurations as ``num_samples`` (room for
the leftover trials once the discrete space is exhausted) and ``--end`` x the grid's epochs.
Printed per setting: the held-out score of the hand-back at 50 % / 100 % / the end; beside
them "every seed": per fold, the configuration with the best mean over all the other seeds
(the grid trained on every one of them), judged the same way; then each setting minus that
and minus the first setting, at the end: mean, SE, t over all searches and over the folds.

    python bench/bench_leftover.py bench/curves/aerial_96x128_30ep_5seeds.csv.gz --patience 30 \\
        --settings default default-lo3 default-lo4
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_simulate import SETTINGS, experiment  # bench/ sibling module


def without_seed(table: Any, seed: int) -> Any:
    """The table with one recorded training seed left out."""
    return dataclasses.replace(table, seeds=[s for s in table.seeds if s != seed],
                               curves={k: v for k, v in table.curves.items() if k[1] != seed})


def main(argv: list[str] | None = None) -> int:
    from raygym.search.replay import ground_truth, load_table
    from raygym.search.simulate import chosen_at, simulate
    from raygym.search.space_config import load_experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path)
    p.add_argument("--settings", nargs="+", default=["default", "default-lo3"],
                   choices=list(SETTINGS))
    p.add_argument("--searches", type=int, default=25, help="search seeds per fold")
    p.add_argument("--first-seed", type=int, default=100)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--samples-factor", type=float, default=4.0)
    p.add_argument("--end", type=float, default=4.0, help="budget, x the grid's epochs")
    args = p.parse_args(argv)
    table = load_table(str(args.table))
    patience = args.patience or max(3, table.epochs // 5)
    full = ground_truth(table, patience=patience, max_epochs=table.epochs)
    budgets = (0.5, 1.0, args.end)
    # setting -> fold -> search seed -> held-out score at each budget
    held: dict[str, dict[int, dict[int, list[float]]]] = {n: {} for n in args.settings}
    exhaustive: list[float] = []  # per fold: the best mean over every other seed, judged
    for j, seed_out in enumerate(table.seeds):
        sub = without_seed(table, seed_out)
        truth = ground_truth(sub, patience=patience, max_epochs=table.epochs)
        exhaustive.append(float(full.per_seed[int(np.argmin(truth.ranks)), j]))
        for name in args.settings:
            _, overrides = SETTINGS[name]
            with tempfile.TemporaryDirectory() as tmp:
                exp = experiment(sub, patience, 2, overrides)
                exp["search"]["num_samples"] = round(args.samples_factor * len(sub.configs))
                path = Path(tmp) / "space.yaml"
                path.write_text(yaml.safe_dump(exp))
                config, space = load_experiment(path)
            fold = held[name].setdefault(j, {})
            for s in range(args.first_seed, args.first_seed + args.searches):
                trace = simulate(config, space, sub, seed=s,
                                 max_epochs_spent=args.end * truth.grid_epochs)
                fold[s] = [float(full.per_seed[c, j]) if (c := chosen_at(
                    trace, b * truth.grid_epochs)) >= 0 else float("nan") for b in budgets]
        print(f"fold {j} (seed {seed_out} held out) done", flush=True)
    print(f"{args.table.name}: {len(table.seeds)} folds x {args.searches} searches; "
          f"num_samples {args.samples_factor:g} x configurations; held-out score of the "
          f"hand-back at 50 % / 100 % / {args.end:.0%} of the grid's epochs")
    for name in args.settings:
        rows = np.array([v for fold in held[name].values() for v in fold.values()])
        print(f"  {name:16s} " + " / ".join(f"{np.nanmean(rows[:, i]):.4f}"
                                             for i in range(len(budgets))))
    ex = np.array(exhaustive)
    print(f"  {'every seed':16s} {ex.mean():.4f} (the configuration with the best mean over "
          f"all other recorded seeds: the grid run {len(table.seeds) - 1} times; per fold "
          f"{' '.join(f'{x:.4f}' for x in ex)})")
    for name in args.settings:
        f = np.array([np.nanmean([v[-1] for v in held[name][j].values()]) - ex[j]
                      for j in range(len(ex))])
        fse = f.std(ddof=1) / np.sqrt(len(f))
        print(f"  {name} minus every seed at the end, per fold: "
              f"{' '.join(f'{x:+.4f}' for x in f)} (mean {f.mean():+.4f}, t over folds "
              f"{f.mean() / fse if fse else 0.0:+.2f})")
    base = args.settings[0]
    for name in args.settings[1:]:
        diffs, folds = [], []
        for j in held[base]:
            d = [held[name][j][s][-1] - held[base][j][s][-1] for s in held[base][j]]
            diffs += d
            folds.append(float(np.nanmean(d)))
        d, f = np.array(diffs), np.array(folds)
        se = np.nanstd(d, ddof=1) / np.sqrt(np.isfinite(d).sum())
        fse = f.std(ddof=1) / np.sqrt(len(f))
        print(f"  {name} minus {base} at the end: {np.nanmean(d):+.4f} (SE {se:.4f}, t "
              f"{np.nanmean(d) / se:+.2f}; better in {np.mean(d > 0):.0%}, worse in "
              f"{np.mean(d < 0):.0%}); per fold {' '.join(f'{x:+.4f}' for x in f)} "
              f"(t over folds {f.mean() / fse if fse else 0.0:+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
