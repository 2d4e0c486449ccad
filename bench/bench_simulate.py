"""Search settings judged on recorded learning curves: many seeds, side by side, vs the grid.

Every setting runs ``--seeds`` simulated searches (:mod:`raygym.search.simulate`: raygym's own
searcher and Tune's scheduler, built from the same config ``raygym search`` would use, driven
in simulated time on the recorded curves of ``bench/curves/*.csv``) over the table's whole
grid as a space of choices. Ground truth, fixed before any search: each configuration's score
under early stopping (``--patience`` epochs without improvement of ``--monitor``, the
validation loss by default; best weights kept), averaged over the table's training seeds; the
grid's cost is the epochs early stopping runs for every configuration (as Gym's grid does).

Printed first, the table's noise (:func:`raygym.search.noise.noise_floor`): one run's
spread around its configuration's mean, the standard error (SE) of a ground-truth score, a
bootstrap of the grid's best over training seeds, how a grid with one run per
configuration picks, and whether the table's leaders replicate (its best by half the seeds,
judged by the other half). Printed per setting: median and quartiles of the epochs until the
handed-back configuration (the leaderboard's rank 1) is within 0.01 of the grid's best, as a
share of the grid's epochs;
the share of searches that got there; the chance of a top-1 / top-3 configuration after 25 %
and 50 % of the grid's epochs; the anytime curve (median ground-truth score handed back at
10 / 25 / 50 / 100 % of the grid's epochs); trials and pruned trials (medians); beside them
the noise-aware figures: the median epochs until the handed-back configuration is within one
SE of the best ("SE: med"), and the chance that it is at 50 % of the grid's epochs ("@50").
Then, per setting, where the top-3 chance is lost (:func:`raygym.search.simulate.top_k_funnel`):
the share of searches in which, by 25 / 50 % of the grid's epochs, a top-3 configuration had
been suggested, had run to its own end, and was handed back.

Example::

    python bench/bench_simulate.py bench/curves/s2_64x128.csv.gz --seeds 30 --json /tmp/s2.json
    python bench/bench_simulate.py bench/curves/aerial_96x128.csv.gz --settings default random
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# name -> (algorithm, search overrides); "random" uses Optuna's RandomSampler in the same
# searcher (same bookkeeping: no configuration twice), "grid" Gym's factorial order. Every
# setting but "default" spells out what it sets, so changing the defaults moves only "default".


def _setting(algorithm: str, scheduler: str = "asha", grace: int | str = 2, rf: float = 3,
             rep: int = 0, mv: bool = False, **more: Any) -> tuple[str, dict[str, Any]]:
    search: dict[str, Any] = {"scheduler": scheduler, "grace_period": grace,
                              "reduction_factor": rf, "repeat_top": rep,
                              "tpe": {"multivariate": mv}, **more}
    return algorithm, search


SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("tpe", {}),  # raygym search's defaults, whatever they are now
    "previous-default": _setting("tpe", grace=1),  # grace = ramp-up, independent TPE
    "grid": _setting("grid", "none"),
    "random": _setting("random", "none"),
    "random+asha": _setting("random"),
    "random+asha-rep3": _setting("random", rep=3),
    "tpe": _setting("tpe", "none"),
    "tpe+asha-g1-r3": _setting("tpe", grace=1),
    "tpe+asha-g2-r3": _setting("tpe"),
    "tpe+asha-g3-r3": _setting("tpe", grace=3),
    "tpe+asha-g2-r2": _setting("tpe", rf=2),
    "tpe+asha-g2-r4": _setting("tpe", rf=4),
    "tpe+hb3-g2-r3": _setting("tpe", brackets=3),
    "tpe+median-g2": _setting("tpe", "median"),
    "tpe+asha-g2-max": _setting("tpe", rung_metric="max"),
    "tpe+asha-g2-mean3": _setting("tpe", rung_metric="mean3"),
    "tpe-mv+asha-g2": _setting("tpe", mv=True),
    "tpe+asha-g2-rep1": _setting("tpe", rep=1),
    "tpe+asha-g2-rep3": _setting("tpe", rep=3),
    "tpe-mv+asha-g2-rep3": _setting("tpe", rep=3, mv=True),
    "tpe-mv+asha-g2-r2-rep3": _setting("tpe", rf=2, rep=3, mv=True),
    "tpe-mv+median-g2-rep3": _setting("tpe", "median", rep=3, mv=True),
    "tpe-mv+hb3-g2-rep3": _setting("tpe", rep=3, mv=True, brackets=3),
    # noise-aware: more leaders repeated on a second seed (hand-back by the mean of two runs),
    # later first rung
    "tpe-mv+asha-g2-rep6": _setting("tpe", rep=6, mv=True),
    "tpe-mv+asha-g3-rep3": _setting("tpe", grace=3, rep=3, mv=True),
    "tpe-mv+asha-g3-rep6": _setting("tpe", grace=3, rep=6, mv=True),
    # no scheduler, leaders repeated; and a later first rung (the 4-seed tables' best
    # configurations learn slowly: lr 1e-4, large filters)
    "tpe-mv-rep3": _setting("tpe", "none", rep=3, mv=True),
    "tpe-rep3": _setting("tpe", "none", rep=3),
    "random-rep3": _setting("random", "none", rep=3),
    "tpe-mv+asha-g4-rep3": _setting("tpe", grace=4, rep=3, mv=True),
    # the hand-back picked by a shrunk mean (shrink_leader) instead of the best mean
    "grid-shrink": ("grid", {"scheduler": "none", "_pick": "shrink"}),
    "tpe-shrink": _setting("tpe", "none", _pick="shrink"),
    "tpe-mv-rep3-shrink": _setting("tpe", "none", rep=3, mv=True, _pick="shrink"),
    "default-shrink": ("tpe", {"_pick": "shrink"}),
    "default-lcb": ("tpe", {"_pick": "lcb"}),  # hand-back by mean - run_sd / sqrt(runs)
    "default-smooth": ("tpe", {"_pick": "smooth"}),  # pooled with one-step neighbours
    "default-rep6": ("tpe", {"repeat_top": 6}),  # the defaults, 6 leaders trained twice
    # leaders raced further: trained again while their mean keeps them among the best
    "default-rr3": ("tpe", {"repeat_runs": 3}),
    "default-rep6-rr3": ("tpe", {"repeat_top": 6, "repeat_runs": 3}),
    "random+asha-rep3-shrink": _setting("random", rep=3, _pick="shrink"),
    "tpe-mv+median-g3-rep3": _setting("tpe", "median", grace=3, rep=3, mv=True),
    "random+median-g3-rep3": _setting("random", "median", grace=3, rep=3),
    # learning-curve-aware stopping, on top of the default: halving that spares a trial whose
    # curve still rises (Optuna's PatientPruner), or rungs judged on the validation loss
    "tpe-mv+patient0-g2-rep3": _setting("tpe", "patient", rep=3, mv=True, prune_patience=0),
    "tpe-mv+patient1-g2-rep3": _setting("tpe", "patient", rep=3, mv=True, prune_patience=1),
    "tpe-mv+asha-g2-loss-rep3": _setting("tpe", rep=3, mv=True, rung_on="val_loss"),
    "random+asha-loss-rep3": _setting("random", rep=3, rung_on="val_loss"),
    # BOHB (TuneBOHB + HyperBandForBOHB; the bohb extra): no grace period, no repeats
    "bohb-r3": ("bohb", {"algorithm": "bohb", "reduction_factor": 3, "repeat_top": 0}),
    "bohb-r2": ("bohb", {"algorithm": "bohb", "reduction_factor": 2, "repeat_top": 0}),
    # ... with trials that run to max_epochs (no early stopping inside a trial): Ray's
    # HyperBandForBOHB brackets then fill, and BOHB's model hears of every rung
    # a first rung at a share of the budget instead of a fixed epoch (the 30-epoch aerial
    # table's high learning rates lead only from epoch ~12): "_grace_frac" of max_epochs
    "tpe-mv+median-gthird-rep3": _setting("tpe", "median", rep=3, mv=True, _grace_frac=1 / 3),
    "tpe-mv+median-ghalf-rep3": _setting("tpe", "median", rep=3, mv=True, _grace_frac=1 / 2),
    "tpe-mv+asha-gthird-rep3": _setting("tpe", rep=3, mv=True, _grace_frac=1 / 3),
    "random+median-gthird-rep3": _setting("random", "median", rep=3, _grace_frac=1 / 3),
    "random+median-ghalf-rep3": _setting("random", "median", rep=3, _grace_frac=1 / 2),
    # ... or learnt from the first trials, run in full (grace_period: auto)
    "tpe-mv+median-gauto-rep3": _setting("tpe", "median", rep=3, mv=True, grace="auto"),
    "tpe-mv+asha-gauto-rep3": _setting("tpe", rep=3, mv=True, grace="auto"),
    "random+median-gauto-rep3": _setting("random", "median", rep=3, grace="auto"),
    "bohb-r3-noes": ("bohb", {"algorithm": "bohb", "reduction_factor": 3, "repeat_top": 0,
                              "_train": {"patience": 1000}}),
}


def shrink_leader(table: Any) -> Any:
    """Experimental hand-back under seed noise: each configuration's mean shrunk towards an
    additive (main-effects, ridge) model of all scores so far, by the share of the spread
    between configurations that is not run noise (empirical Bayes). Run noise: pooled over
    repeated configurations, else half the residual variance."""
    import numpy as np

    from raygym.search.replay import _same

    cols = []
    for key in table.param_keys:
        levels = table.values(key)
        cols.append([[1.0 if _same(cfg[key], v) else 0.0 for v in levels]
                     for cfg in table.configs])
    design = np.hstack([np.ones((len(table.configs), 1))] + [np.asarray(c) for c in cols])

    def leader(runs: dict[int, dict[str, float]]) -> int:
        scored = {c: list(v.values()) for c, v in runs.items() if v}
        if not scored:
            return -1
        cids = list(scored)
        means = np.array([np.mean(scored[c]) for c in cids])
        if len(cids) < design.shape[1]:
            return cids[int(np.argmax(means))]
        n = np.array([len(scored[c]) for c in cids], dtype=float)
        x = design[cids]
        gram = x.T @ (x * n[:, None]) + np.diag([0.0] + [1.0] * (x.shape[1] - 1))
        pred = x @ np.linalg.solve(gram, x.T @ (n * means))
        resid = means - pred
        rep = [v for v in scored.values() if len(v) > 1]
        if rep:
            sigma2 = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in rep) / sum(
                len(v) - 1 for v in rep)
        else:
            sigma2 = float(np.var(resid)) / 2
        tau2 = max(float(np.var(resid) - np.mean(sigma2 / n)), 1e-6)
        post = pred + tau2 / (tau2 + sigma2 / n) * resid
        return cids[int(np.argmax(post))]
    return leader


def lcb_leader(runs: dict[int, dict[str, float]]) -> int:
    """Experimental hand-back: each configuration's mean minus run_sd / sqrt(its runs) (a
    lower confidence bound), run_sd pooled over the configurations run more than once so far;
    before any repeat, the plain mean."""
    import numpy as np

    scored = {c: list(v.values()) for c, v in runs.items() if v}
    if not scored:
        return -1
    rep = [v for v in scored.values() if len(v) > 1]
    sd = math.sqrt(sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in rep)
                   / sum(len(v) - 1 for v in rep)) if rep else 0.0
    return max(scored, key=lambda c: np.mean(scored[c]) - sd / math.sqrt(len(scored[c])))


def smooth_leader(table: Any, weight: float = 0.5) -> Any:
    """Experimental hand-back: each configuration's mean pooled with its one-step neighbours'
    runs (configurations that differ in one ordered numeric key by one recorded level, e.g.
    the next learning rate or filter count), each neighbour run weighing ``weight`` of one of
    its own (a kernel smoother over the grid: a local alternative to :func:`shrink_leader`'s
    additive model)."""
    from raygym.search.replay import _same

    ordered = {}
    for key in table.param_keys:
        levels = table.values(key)
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels):
            ordered[key] = sorted(levels)

    def level(cfg: dict[str, Any], key: str) -> int:
        return next(i for i, v in enumerate(ordered[key]) if _same(cfg[key], v))

    neighbours: list[list[int]] = []
    for a in table.configs:
        near = []
        for j, b in enumerate(table.configs):
            differ = [k for k in table.param_keys if not _same(a[k], b[k])]
            if len(differ) == 1 and differ[0] in ordered and \
                    abs(level(a, differ[0]) - level(b, differ[0])) == 1:
                near.append(j)
        neighbours.append(near)

    def leader(runs: dict[int, dict[str, float]]) -> int:
        scored = {c: list(v.values()) for c, v in runs.items() if v}
        if not scored:
            return -1

        def pooled(c: int) -> float:
            total, weights = sum(scored[c]), float(len(scored[c]))
            for j in neighbours[c]:
                if j in scored:
                    total += weight * sum(scored[j])
                    weights += weight * len(scored[j])
            return total / weights
        return max(scored, key=pooled)
    return leader


def pick_leader(pick: str | None, table: Any) -> Any:
    """A setting's ``_pick``: the simulator's hand-back rule (None: the best mean)."""
    return {"shrink": lambda: shrink_leader(table), "lcb": lambda: lcb_leader,
            "smooth": lambda: smooth_leader(table),
            None: lambda: None}[pick]()


DEFAULT_SETTINGS = ["default", "previous-default", "grid", "random", "random+asha",
                    "random+asha-rep3", "tpe", "tpe+asha-g2-r3", "tpe+asha-g3-r3",
                    "tpe+asha-g2-r2", "tpe+hb3-g2-r3", "tpe+median-g2", "tpe+asha-g2-max",
                    "tpe+asha-g2-mean3", "tpe-mv+asha-g2", "tpe+asha-g2-rep3",
                    "tpe-mv+asha-g2-rep3", "tpe-mv+asha-g2-rep6", "tpe-mv+asha-g3-rep3",
                    "tpe-mv+patient0-g2-rep3", "tpe-mv+patient1-g2-rep3",
                    "tpe-mv+asha-g2-loss-rep3", "bohb-r3", "bohb-r2"]


def experiment(table: Any, patience: int, concurrency: int, overrides: dict[str, Any],
               monitor: str = "val_loss") -> dict[str, Any]:
    """The table's grid as a search space of choices, in ``raygym search``'s own schema."""
    overrides = dict(overrides)
    train = overrides.pop("_train", {})  # a setting's own training keys (e.g. patience)
    overrides.pop("_pick", None)
    if (frac := overrides.pop("_grace_frac", None)) is not None:
        overrides["grace_period"] = max(1, round(frac * table.epochs))
    sections: dict[str, Any] = {
        "name": "simulated",
        "data": {"images": "unused/images", "labels": "unused/labels",
                 "classes": ["a", "b"]},
        "model": {}, "loss": {},
        "train": {"max_epochs": table.epochs, "patience": patience, "rampup_epochs": 1,
                  "monitor": monitor, **train},
        "search": {"num_samples": len(table.configs), "max_concurrent": concurrency,
                   "algorithm": "optuna", **overrides},
    }
    for key in table.param_keys:
        section, name = key.split(".", 1)
        sections[section][name] = {"choice": table.values(key)}
    return sections


def run_setting(job: tuple[str, str, int, int, int, list[int], str, str]) -> dict[str, Any]:
    """Worker: every seed of one setting on one table; the summary and per-seed figures."""
    name, table_path, patience, concurrency, _, seeds, monitor, seed_draw = job
    from optuna.samplers import RandomSampler

    from raygym.search.noise import noise_floor
    from raygym.search.replay import ground_truth, load_table
    from raygym.search.simulate import epochs_to_target, simulate, summarize, top_k_funnel
    from raygym.search.space_config import load_experiment

    table = load_table(table_path)
    algorithm, overrides = SETTINGS[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "space.yaml"
        path.write_text(yaml.safe_dump(experiment(table, patience, concurrency, overrides,
                                                  monitor)))
        config, space = load_experiment(path)
    truth = ground_truth(table, patience=patience, max_epochs=table.epochs, monitor=monitor)
    tick = time.process_time()
    traces = []
    leader = pick_leader(overrides.get("_pick"), table)
    for seed in seeds:
        sampler = RandomSampler(seed=seed) if algorithm == "random" else None
        traces.append(simulate(config, space, table, seed=seed,
                               max_epochs_spent=truth.grid_epochs,
                               algorithm="grid" if algorithm == "grid" else None,
                               sampler=sampler, leader=leader, seed_draw=seed_draw))
    # beside the goal, not instead of it: the same figures with the table's own noise
    # (a ground-truth score's standard error) as the tolerance instead of 0.01
    out = summarize(traces, truth, noise_se=noise_floor(truth)["mean_se"])
    out["per_seed"] = [epochs_to_target(tr, truth) / truth.grid_epochs for tr in traces]
    out["funnel"] = {f: top_k_funnel(traces, truth, f) for f in (0.25, 0.5)}
    out["cpu_s"] = time.process_time() - tick
    out["setting"] = name
    return out


def fmt(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("table", type=Path)
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--first-seed", type=int, default=0,
                   help="search seeds first..first+seeds-1: fresh ones re-check a choice "
                        "made on seeds 0-29 without the luck of the seeds it was chosen on")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping in every trial (default max(3, epochs // 5))")
    p.add_argument("--monitor", default="val_loss",
                   help="what early stopping watches (train.monitor), e.g. val_mean_iou")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 0))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--seed-draw", choices=["shared", "per_trial"], default="shared",
                   help="which recorded seed a run replays: shared by every configuration "
                        "of a search (raygym trains every trial on train.seed), or drawn per "
                        "configuration (trainings seeded per run, e.g. Gym's Keras grid)")
    args = p.parse_args(argv)

    from raygym.search.noise import noise_floor
    from raygym.search.replay import ground_truth, load_table

    table = load_table(str(args.table.resolve()))
    patience = args.patience or max(3, table.epochs // 5)
    truth = ground_truth(table, patience=patience, max_epochs=table.epochs,
                         monitor=args.monitor)
    best = int(truth.ranks.argmin())
    print(f"{args.table.name}: {len(table.configs)} configurations x {len(table.seeds)} "
          f"training seeds, {table.epochs} epochs recorded; patience {patience} on "
          f"{args.monitor}; grid cost "
          f"{truth.grid_epochs:.0f} epochs; grid's best {truth.best:.4f} "
          f"({table.configs[best]}); 2nd {sorted(truth.scores)[-2]:.4f}; configurations "
          f"within 0.01 of the best: {sum(truth.reached(i) for i in range(len(truth.scores)))}"
          f"; {args.seeds} search seeds from {args.first_seed}, {args.concurrency} trials "
          f"at once; recorded seeds {args.seed_draw}", flush=True)
    noise = noise_floor(truth)
    lo, mid, hi = noise["boot_best"]
    print(f"noise of the table: one run's spread {noise['run_sd']:.3f}, a ground-truth "
          f"score's standard error (SE) {noise['mean_se']:.3f}, configurations within it of "
          f"the best {noise['within_se']}; seeds resampled: the grid's best {lo:.3f}-{hi:.3f} "
          f"(median {mid:.3f}), the same configuration best {noise['boot_same']:.0%}; one run "
          f"per configuration: its pick within 0.01 {noise['single_within']:.0%}, top-3 "
          f"{noise['single_top3']:.0%}", flush=True)
    k = len(table.seeds)
    if k >= 2:
        print(f"do new runs name the same best? {math.ceil(k / 2)} seeds pick, the other "
              f"{k - math.ceil(k / 2)} judge (every split): the pick within 0.01 of their best "
              f"{noise['split_within']:.0%}, {noise['split_gap']:+.3f} on average; top-3 "
              f"shared {noise['split_top3']:.1f} of 3", flush=True)
    from raygym.search.bohb import bohb_installed

    settings = [n for n in args.settings if SETTINGS[n][0] != "bohb" or bohb_installed()]
    if len(settings) < len(args.settings):
        print("BOHB settings left out: they need the bohb extra (pip install -e .[bohb])")
    search_seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(name, str(args.table.resolve()), patience, args.concurrency, i, search_seeds,
             args.monitor, args.seed_draw) for i, name in enumerate(settings)]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(run_setting, jobs, chunksize=1)
    head = (f"{'setting':20} {'to best q25/med/q75':>22} {'reached':>8} {'top1@25':>8} "
            f"{'top1@50':>8} {'top3@25':>8} {'top3@50':>8}  anytime 10/25/50/100 %"
            f"{'':>6} trials pruned  SE: med @50")
    print(head)
    for r in results:
        q = r["to_best"]
        a = r["anytime"]
        print(f"{r['setting']:20} {fmt(q[0]):>6} {fmt(q[1]):>7} {fmt(q[2]):>7} "
              f"{r['reached']:>8.0%} {r['top1'][0.25]:>8.0%} {r['top1'][0.5]:>8.0%} "
              f"{r['top3'][0.25]:>8.0%} {r['top3'][0.5]:>8.0%}  "
              f"{a[0.1]:.3f} {a[0.25]:.3f} {a[0.5]:.3f} {a[1.0]:.3f} "
              f"{r['trials']:>6.0f} {r['pruned']:>6.0f}  {fmt(r['to_noise']):>5} "
              f"{r['noise_at_50']:>4.0%}")
    print("where top-3 is lost: share of searches in which, by 25 / 50 % of the grid's "
          "epochs, a top-3 configuration was started, had run to its end, was handed back")
    for r in results:
        fun = r["funnel"]
        print(f"{r['setting']:20} " + "   ".join(
            f"@{f:.0%}: started {fun[f]['started']:>4.0%} ended {fun[f]['completed']:>4.0%} "
            f"handed back {fun[f]['chosen']:>4.0%}" for f in (0.25, 0.5)))
    if args.json:
        args.json.write_text(json.dumps({
            "table": str(args.table), "patience": patience, "monitor": args.monitor,
            "seeds": args.seeds, "first_seed": args.first_seed, "seed_draw": args.seed_draw,
            "concurrency": args.concurrency, "grid_epochs": truth.grid_epochs,
            "grid_best": truth.best, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
