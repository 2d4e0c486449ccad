"""How much a simulated search's hand-back owes to having replayed its ground truth's own runs.

A simulated trial replays one recorded seed of its configuration (a repeat: the next one), and
the ground truth is the mean over *all* recorded seeds, so the runs a search saw are part of
the truth it is judged by. For each of ``--seeds`` searches of one setting this prints the
configuration held at half the grid's epochs, judged (a) by the full ground truth, as
``bench_simulate.py`` does, and (b) by the mean of the recorded seeds the search did not
replay for it (a held-out truth: tables with more than 2 seeds only). The difference is the
simulator's optimism. A setting ``X-shrink`` beside ``X`` is the same searches with another
hand-back; their difference per search seed is printed (paired: mean, its SE and t).

Example (~1 min per setting)::

    python bench/bench_heldout.py bench/curves/s2_128x64_4seeds.csv --settings default grid
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import yaml
from bench_simulate import SETTINGS, experiment, shrink_leader  # bench/ sibling module


def main(argv: list[str] | None = None) -> int:
    from optuna.samplers import RandomSampler

    from raygym.search.replay import ground_truth, load_table
    from raygym.search.simulate import chosen_at, simulate
    from raygym.search.space_config import load_experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path)
    p.add_argument("--settings", nargs="+", default=["default"], choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping in every trial (default max(3, epochs // 5))")
    args = p.parse_args(argv)
    table = load_table(str(args.table))
    if len(table.seeds) < 3:
        raise SystemExit(f"{args.table}: {len(table.seeds)} seeds; a held-out truth needs 3+")
    patience = args.patience or max(3, table.epochs // 5)
    truth = ground_truth(table, patience=patience, max_epochs=table.epochs)
    n_seeds = len(table.seeds)
    print(f"{args.table.name}: patience {patience}, grid's best {truth.best:.4f}, "
          f"{args.seeds} searches per setting")
    shrunk = shrink_leader(table)
    held_by: dict[str, dict[int, float]] = {}
    for name in args.settings:
        algorithm, overrides = SETTINGS[name]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "space.yaml"
            path.write_text(yaml.safe_dump(experiment(table, patience, 2, overrides)))
            config, space = load_experiment(path)
        full, held = [], []
        held_by[name] = {}
        for seed in range(args.seeds):
            trace = simulate(config, space, table, seed=seed, max_epochs_spent=truth.grid_epochs,
                             algorithm="grid" if algorithm == "grid" else None,
                             sampler=RandomSampler(seed=seed) if algorithm == "random" else None,
                             leader=shrunk if overrides.get("_pick") == "shrink" else None)
            cid = chosen_at(trace, 0.5 * truth.grid_epochs)
            if cid < 0:
                continue
            runs = trace.order.count(cid)  # replay_seed: seed index (cid + search seed + run)
            seen = {(cid + seed + run) % n_seeds for run in range(runs)}
            unseen = [j for j in range(n_seeds) if j not in seen]
            full.append(truth.scores[cid])
            held.append(float(np.nanmean(truth.per_seed[cid, unseen])))
            held_by[name][seed] = held[-1]
        se = np.std(held, ddof=1) / np.sqrt(len(held)) if len(held) > 1 else float("nan")
        print(f"  {name:24s} held at 50 %: full truth {np.mean(full):.4f}, on its unseen seeds "
              f"{np.mean(held):.4f} (SE {se:.4f}), optimism "
              f"{np.mean(full) - np.mean(held):+.4f} ({len(full)} searches)", flush=True)
    for name in args.settings:
        if (other := f"{name}-shrink") not in held_by:
            continue
        seeds = sorted(set(held_by[name]) & set(held_by[other]))
        diff = np.array([held_by[other][s] - held_by[name][s] for s in seeds])
        se = diff.std(ddof=1) / np.sqrt(len(diff))
        print(f"  {other} minus {name}, unseen seeds, paired over {len(diff)} searches: "
              f"{diff.mean():+.4f} (SE {se:.4f}, t {diff.mean() / se if se else 0:+.1f}; "
              f"better in {np.mean(diff > 0):.0%}, worse in {np.mean(diff < 0):.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
