"""Does a cheaper fidelity rank configurations like the full one? Two curve tables of the same
grid side by side (e.g. S2 at 32 x 64 and at 64 x 128 pixels).

Printed: the cost of an epoch in each table (median recorded seconds); the rank correlation
(Spearman) of the ground-truth scores (:func:`raygym.search.replay.ground_truth`) between the
tables, beside that of one training seed against the other within the full table and what
that implies for two seed-averaged tables at full fidelity (Spearman-Brown); the rank correlation of the cheap table's score after each epoch
e (one run, the first seed) with the full table's ground truth, beside the full table's own
epoch e; and where the full table's best 3 configurations rank in the cheap table.

Example::

    python bench/bench_fidelity.py bench/curves/s2_32x64.csv.gz bench/curves/s2_64x128.csv.gz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cheap", type=Path)
    p.add_argument("full", type=Path)
    p.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8])
    args = p.parse_args(argv)

    from raygym.search.replay import ground_truth, load_table

    cheap, full = load_table(str(args.cheap.resolve())), load_table(str(args.full.resolve()))
    if cheap.configs != full.configs:
        print("the two tables record different grids", file=sys.stderr)
        return 2
    truth = {}
    for name, t in (("cheap", cheap), ("full", full)):
        truth[name] = ground_truth(t, patience=max(3, t.epochs // 5), max_epochs=t.epochs)
        secs = np.median([c["seconds"][i] for c in t.curves.values() for i in range(t.epochs)])
        print(f"{name}: {t.path.name}, {t.epochs} epochs, median {secs:.2f} s per epoch, "
              f"grid cost {truth[name].grid_epochs:.0f} epochs")
    gc, gf = truth["cheap"].scores, truth["full"].scores
    ok = np.isfinite(gc) & np.isfinite(gf)
    per = truth["full"].per_seed
    both = np.isfinite(per).all(axis=1)
    r = spearmanr(per[both, 0], per[both, 1])[0]
    k = per.shape[1]
    # Spearman-Brown: how well two k-seed means at full fidelity would agree, given r
    print(f"Spearman, ground truth cheap vs full: {spearmanr(gc[ok], gf[ok])[0]:.2f}; "
          f"full seed 0 vs seed 1: {r:.2f} (two {k}-seed means at full fidelity: about "
          f"{k * r / (1 + (k - 1) * r):.2f})")
    first = cheap.seeds[0]
    for e in args.epochs:
        row = []
        for t in (cheap, full):
            if e > t.epochs:
                row.append("   -")
                continue
            v = np.array([t.curves[(c, first)]["val_mean_iou"][e - 1]
                          for c in range(len(t.configs))])
            m = np.isfinite(v) & np.isfinite(gf)
            row.append(f"{spearmanr(v[m], gf[m])[0]:.2f}")
        print(f"epoch {e:2d}: Spearman with the full ground truth: cheap {row[0]}, "
              f"full {row[1]}")
    top = np.argsort(truth["full"].ranks)[:3]
    print("full table's best 3 in the cheap table: ranks "
          + ", ".join(str(int(truth["cheap"].ranks[c])) for c in top)
          + f" of {len(cheap.configs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
