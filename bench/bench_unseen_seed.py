"""Search settings judged on a training seed that no search replayed (seed cross-validation).

``bench_simulate.py`` judges a hand-back by the mean over all of a table's recorded seeds, of
which the search replayed some. ``bench_heldout.py`` judges it by the seeds the search did not
replay for that configuration, which differ between settings that run a configuration a
different number of times (racing: a configuration run 3 times is judged on 1 seed, one run
twice on 2), so their difference mixes the configurations chosen with the seeds judging them.
Here each recorded seed in turn is held out (a fold): the searches replay the table without
it, and every setting's hand-back is judged by its score on that seed alone. In a fold every
setting is judged by the same seed, so a paired difference is one of the configurations
chosen only.

Printed per setting: the held-out score of the hand-back at 25 / 50 / 100 % of the grid's
epochs (the grid of the table without the held-out seed); beside them "every seed": per
fold, the configuration with the best mean over all the other seeds (the grid trained on
each of them: what the tables' ground truth calls best), judged the same way; then, at 50 %,
each setting minus "every seed" per fold, and minus the first setting (mean, SE and t over
all searches, and over the folds: the folds are the independent units).

    python bench/bench_unseen_seed.py bench/curves/aerial_96x128_30ep_5seeds.csv.gz \
        --patience 30 --settings default grid default-rr3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml
from bench_simulate import SETTINGS, experiment, pick_leader  # bench/ sibling module


def main(argv: list[str] | None = None) -> int:
    from optuna.samplers import RandomSampler

    from raygym.search.replay import ground_truth, load_table
    from raygym.search.simulate import chosen_at, simulate
    from raygym.search.space_config import load_experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path)
    p.add_argument("--settings", nargs="+", default=["default", "grid"],
                   choices=list(SETTINGS))
    p.add_argument("--searches", type=int, default=25, help="search seeds per fold")
    p.add_argument("--first-seed", type=int, default=100)
    p.add_argument("--patience", type=int, default=None)
    args = p.parse_args(argv)
    table = load_table(str(args.table))
    patience = args.patience or max(3, table.epochs // 5)
    full = ground_truth(table, patience=patience, max_epochs=table.epochs)
    budgets = (0.25, 0.5, 1.0)
    at = budgets.index(0.5)  # the goal's budget: the paired comparisons
    # setting -> fold -> search seed -> held-out score at each budget
    held: dict[str, dict[int, dict[int, list[float]]]] = {n: {} for n in args.settings}
    exhaustive: list[float] = []  # per fold: the best mean over every other seed, judged
    for j, seed_out in enumerate(table.seeds):
        sub = table.without_seed(seed_out)
        truth = ground_truth(sub, patience=patience, max_epochs=table.epochs)
        exhaustive.append(float(full.per_seed[int(np.argmin(truth.ranks)), j]))
        for name in args.settings:
            algorithm, overrides = SETTINGS[name]
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "space.yaml"
                path.write_text(yaml.safe_dump(experiment(sub, patience, 2, overrides)))
                config, space = load_experiment(path)
            fold = held[name].setdefault(j, {})
            for s in range(args.first_seed, args.first_seed + args.searches):
                trace = simulate(
                    config, space, sub, seed=s, max_epochs_spent=truth.grid_epochs,
                    algorithm="grid" if algorithm == "grid" else None,
                    sampler=RandomSampler(seed=s) if algorithm == "random" else None,
                    leader=pick_leader(overrides.get("_pick"), sub))
                fold[s] = [float(full.per_seed[c, j]) if (c := chosen_at(
                    trace, b * truth.grid_epochs)) >= 0 else float("nan") for b in budgets]
        print(f"fold {j} (seed {seed_out} held out) done", flush=True)
    print(f"{args.table.name}: {len(table.seeds)} folds x {args.searches} searches (search "
          f"seeds from {args.first_seed}); held-out score of the hand-back at 25 / 50 / 100 % "
          "of the grid's epochs")
    for name in args.settings:
        rows = np.array([v for fold in held[name].values() for v in fold.values()])
        print(f"  {name:16s} " + " / ".join(f"{np.nanmean(rows[:, i]):.4f}"
                                             for i in range(len(budgets))))
    ex = np.array(exhaustive)
    print(f"  {'every seed':16s} {ex.mean():.4f} (the configuration with the best mean over "
          f"all other recorded seeds: the grid run {len(table.seeds) - 1} times; per fold "
          f"{' '.join(f'{x:.4f}' for x in ex)})")
    for name in args.settings:
        f = np.array([np.nanmean([v[at] for v in held[name][j].values()]) - ex[j]
                      for j in range(len(ex))])
        fse = f.std(ddof=1) / np.sqrt(len(f))
        print(f"  {name} minus every seed at 50 %, per fold: "
              f"{' '.join(f'{x:+.4f}' for x in f)} (mean {f.mean():+.4f}, t over folds "
              f"{f.mean() / fse if fse else 0.0:+.2f})")
    base = args.settings[0]
    for name in args.settings[1:]:
        diffs, folds = [], []
        for j in held[base]:
            d = [held[name][j][s][at] - held[base][j][s][at] for s in held[base][j]]
            diffs += d
            folds.append(float(np.nanmean(d)))
        d, f = np.array(diffs), np.array(folds)
        se = np.nanstd(d, ddof=1) / np.sqrt(np.isfinite(d).sum())
        if not se:
            print(f"  {name} minus {base} at 50 %: the same hand-back in every search")
            continue
        fse = f.std(ddof=1) / np.sqrt(len(f))
        print(f"  {name} minus {base} at 50 %: {np.nanmean(d):+.4f} (SE {se:.4f}, t "
              f"{np.nanmean(d) / se:+.2f}; better in {np.mean(d > 0):.0%}, worse in "
              f"{np.mean(d < 0):.0%}); per fold {' '.join(f'{x:+.4f}' for x in f)} "
              f"(t over folds {f.mean() / fse if fse else 0.0:+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
