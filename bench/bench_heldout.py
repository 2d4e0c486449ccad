"""How much a simulated search's hand-back owes to having replayed its ground truth's own runs.

A simulated trial replays one recorded seed of its configuration (a repeat: the next one), and
the ground truth is the mean over *all* recorded seeds, so the runs a search saw are part of
the truth it is judged by. For each of ``--seeds`` searches of one setting this prints the
configuration held at 25 / 50 / 100 % of the grid's epochs, judged (a) by the full ground
truth, as ``bench_simulate.py`` does, and (b) by the mean of the recorded seeds the search did
not replay for it (a held-out truth: tables with more than 2 seeds only). The difference is
the simulator's optimism; (b) is what the hand-back is worth on a fresh run.

Settings that run a configuration a different number of times are judged on different seeds
here (a configuration raced to 3 runs of 4 on 1, one run twice on 2): compare those with
``bench_unseen_seed.py``, which judges every setting on the same held-out seed.

Paired comparisons (the same search seeds): every setting against ``--against`` (default:
``default``), and ``X-shrink`` against ``X`` (the same searches with another hand-back):
mean difference of (b) at 50 %, its SE and t.

Example (~1 min per setting)::

    python bench/bench_heldout.py bench/curves/s2_128x64_4seeds.csv.gz --settings default grid
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_simulate import SETTINGS, experiment, pick_leader  # bench/ sibling module

BUDGETS = (0.25, 0.5, 1.0)  # shares of the grid's epochs


def paired(a: dict[int, float], b: dict[int, float],
           worlds: dict[int, int] | None = None) -> str:
    """``b - a`` over the search seeds both have: mean, SE, t, median, how often better /
    worse. ``worlds``: search seed -> the recorded seed every configuration's first run
    replays (``--seed-draw shared``): the searches then live in only that many noise worlds,
    and the t that counts each world once (the worlds' mean differences) is printed too."""
    seeds = sorted(set(a) & set(b))
    diff = np.array([b[s] - a[s] for s in seeds])
    if len(diff) < 2:
        return "too few searches"
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    t = diff.mean() / se if se else 0.0
    grouped = ""
    if worlds:
        ids = sorted({worlds[s] for s in seeds})
        means = np.array([np.mean([d for s, d in zip(seeds, diff, strict=True)
                                   if worlds[s] == w]) for w in ids])
        if len(means) > 1:
            g_se = means.std(ddof=1) / np.sqrt(len(means))
            grouped = (f"; as {len(means)} worlds: SE {g_se:.4f}, t "
                       f"{means.mean() / g_se if g_se else 0.0:+.2f}")
    return (f"{diff.mean():+.4f} (SE {se:.4f}, t {t:+.2f}; median {np.median(diff):+.4f}; "
            f"better in {np.mean(diff > 0):.0%}, worse in {np.mean(diff < 0):.0%}, "
            f"{len(diff)} searches{grouped})")


def replayed_seeds(trace: Any, cid: int, search_seed: int, n_seeds: int,
                  draw: str = "shared") -> set[int]:
    """The recorded seed indices that a search's runs of ``cid`` replayed (all of them, in
    the whole search): none of them may be part of the held-out truth."""
    from raygym.search.replay import replay_seed_index

    return {replay_seed_index(n_seeds, cid, search_seed, run, draw)
            for run in range(trace.order.count(cid))}


def held_out(truth: Any, cid: int, seen: set[int]) -> float:
    """The mean of ``cid``'s recorded seed scores that the search did not replay."""
    unseen = [j for j in range(truth.per_seed.shape[1]) if j not in seen]
    return float(np.nanmean(truth.per_seed[cid, unseen])) if unseen else float("nan")


def main(argv: list[str] | None = None) -> int:
    from optuna.samplers import RandomSampler

    from raygym.search.replay import ground_truth, load_table, replay_seed_index
    from raygym.search.simulate import chosen_at, simulate
    from raygym.search.space_config import load_experiment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path)
    p.add_argument("--settings", nargs="+", default=["default"], choices=list(SETTINGS))
    p.add_argument("--against", default="default", choices=list(SETTINGS),
                   help="the setting every other one is paired with")
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--first-seed", type=int, default=0,
                   help="search seeds first..first+seeds-1 (fresh ones: a re-check)")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping in every trial (default max(3, epochs // 5))")
    p.add_argument("--monitor", default="val_loss", help="what early stopping watches")
    p.add_argument("--seed-draw", choices=["shared", "per_trial"], default="shared",
                   help="as in bench_simulate.py")
    args = p.parse_args(argv)
    table = load_table(str(args.table))
    if len(table.seeds) < 3:
        raise SystemExit(f"{args.table}: {len(table.seeds)} seeds; a held-out truth needs 3+")
    patience = args.patience or max(3, table.epochs // 5)
    truth = ground_truth(table, patience=patience, max_epochs=table.epochs,
                         monitor=args.monitor)
    n_seeds = len(table.seeds)
    print(f"{args.table.name}: patience {patience} on {args.monitor}, grid's best "
          f"{truth.best:.4f} of {truth.grid_epochs:.0f} epochs, {args.seeds} searches per "
          f"setting (search seeds from {args.first_seed}, recorded seeds {args.seed_draw}); "
          "held-out means at "
          f"{' / '.join(f'{b:.0%}' for b in BUDGETS)} of the "
          "grid's epochs")
    held_by: dict[str, dict[int, float]] = {}  # setting -> search seed -> held-out at 50 %
    for name in args.settings:
        algorithm, overrides = SETTINGS[name]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "space.yaml"
            path.write_text(yaml.safe_dump(experiment(table, patience, 2, overrides,
                                                      args.monitor)))
            config, space = load_experiment(path)
        full: dict[float, list[float]] = {b: [] for b in BUDGETS}
        held: dict[float, list[float]] = {b: [] for b in BUDGETS}
        held_by[name] = {}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            trace = simulate(config, space, table, seed=seed, max_epochs_spent=truth.grid_epochs,
                             algorithm="grid" if algorithm == "grid" else None,
                             sampler=RandomSampler(seed=seed) if algorithm == "random" else None,
                             leader=pick_leader(overrides.get("_pick"), table),
                             seed_draw=args.seed_draw)
            for budget in BUDGETS:
                cid = chosen_at(trace, budget * truth.grid_epochs)
                if cid < 0:
                    continue
                full[budget].append(truth.scores[cid])
                held[budget].append(held_out(truth, cid, replayed_seeds(
                    trace, cid, seed, n_seeds, args.seed_draw)))
                if budget == 0.5:
                    held_by[name][seed] = held[budget][-1]
        h50 = held[0.5]
        se = np.std(h50, ddof=1) / np.sqrt(len(h50)) if len(h50) > 1 else float("nan")
        print(f"  {name:26s} held-out {' / '.join(f'{np.mean(held[b]):.4f}' for b in BUDGETS)}"
              f" (SE at 50 % {se:.4f}); full truth at 50 % {np.mean(full[0.5]):.4f}, optimism "
              f"{np.mean(full[0.5]) - np.mean(h50):+.4f} ({len(h50)} searches)", flush=True)
    worlds = ({seed: replay_seed_index(n_seeds, 0, seed, 0, "shared")
               for seed in range(args.first_seed, args.first_seed + args.seeds)}
              if args.seed_draw == "shared" else None)
    for name in args.settings:
        if name != args.against and args.against in held_by:
            print(f"  {name} minus {args.against}, held-out at 50 %: "
                  f"{paired(held_by[args.against], held_by[name], worlds)}")
        if (other := f"{name}-shrink") in held_by and args.against != name:
            print(f"  {other} minus {name}, held-out at 50 %: "
                  f"{paired(held_by[name], held_by[other], worlds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
