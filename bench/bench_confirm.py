"""Real searches (training, not replay) checked against the simulator's prediction.

For a recorded table (its card gives the data set, sizes and training settings), runs
``raygym search`` for real, in this process on a local Ray, over the table's grid as a space
of choices with one search setting of ``bench_simulate.py`` (``--setting``), for each of
``--seeds``. Each real search is scored like a simulated one: epochs spent (in the order Tune
reported them) until the configuration it would hand back (its leaderboard's rank 1) has a
ground-truth score within 0.01 of the grid's best, as a share of the grid's epochs; the
simulator's quartiles for the same setting and budget, over ``--sim-seeds``, are printed beside,
twice: with the simulator as ``bench_simulate.py`` runs it (searches replay the recorded seeds
whose mean is the ground truth, so the noise a search sees is part of the truth that judges it),
and on fresh noise, as a real search meets it (each recorded seed in turn is the only one the
searches replay, and the mean of the other seeds judges them).

Example (aerial table, 3 searches of 60 trials: ~20 min each on 2 cores; ``--predict-only``
prints the prediction alone, in ~30 s, to write down before the searches run)::

    python bench/bench_confirm.py bench/curves/aerial_96x128_30ep_pbn.csv.gz --seeds 0 1 2 \
        --samples 60 --patience 30 --train-seed search
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from bench_simulate import SETTINGS, experiment  # bench/ sibling modules
from record_curves import LOSSES, data_section

ALGORITHMS = {"tpe": "optuna", "random": "random", "grid": "grid"}


def real_sections(card: dict[str, Any], table: Any, setting: str, patience: int,
                  samples: int, seed: int, workdir: Path, train_seed: int = 0
                  ) -> dict[str, Any]:
    """The table's recording settings + the table's grid as a space + one search setting;
    ``train_seed``: the trials' ``train.seed`` (a repeat trains the next one)."""
    algorithm, overrides = SETTINGS[setting]
    if algorithm == "random":
        raise SystemExit("random search runs Tune's own generator for real: compare tpe")
    args = argparse.Namespace(set=card["set"], size=card["target_size"], limit=None,
                              copies=card["augment_copies"])
    sections = experiment(table, patience, 2, overrides)
    lr = card["lr_schedule"]
    own_seed = f"-t{train_seed}" if train_seed else ""  # seed-0 searches keep their old names
    sections.update(
        name=f"confirm-{setting.replace('+', '_')}-{seed}{own_seed}",
        data=data_section(args, workdir),
    )
    sections["model"].update(kernel=card["kernel"], dropout=0.1)
    sections["train"].update(batch_size=card["batch_size"], lr_schedule="gym",
                             start_lr=lr["start_lr"], min_lr=lr["min_lr"],
                             rampup_epochs=lr["rampup_epochs"], exp_decay=lr["exp_decay"],
                             precision=card["precision"], seed=train_seed, num_threads=1,
                             # tables recorded before the option validated with the running
                             # averages: train as the table was recorded
                             precise_bn_images=card.get("precise_bn_images", 0))
    sections["search"].update(num_samples=samples, seed=seed, top_k=1,
                              results_dir=str(workdir / "results"))
    sections["resources"] = {"workers_per_trial": 1, "cpus_per_worker": 1, "num_cpus": 2}
    return sections


def epoch_order(out: Path, name: str) -> list[tuple[float, str, int, dict[str, Any]]]:
    """Every reported epoch: (timestamp, trial, epoch, result), in reporting order."""
    rows = []
    for result in sorted((out / "ray" / name).glob("*/result.json")):
        for line in result.read_text().splitlines():
            r = json.loads(line)
            rows.append((r["timestamp"], result.parent.name, r["epoch"], r))
    rows.sort(key=lambda x: x[:3])
    return rows


def score_real(out: Path, name: str, table: Any, truth: Any, space: Any,
               metric: str) -> dict[str, Any]:
    from raygym.search.space import active_params

    params_of = {p.parent.name: json.loads(p.read_text())
                 for p in (out / "ray" / name).glob("*/params.json")}
    chosen, to_best = -1, math.inf
    runs: dict[int, dict[str, float]] = {}  # ranked by their mean, as the leaderboard
    rows = epoch_order(out, name)
    for spent, (_, trial, _, r) in enumerate(rows, start=1):
        v = r.get(f"best_{metric}", math.nan)
        if v == v:
            cid = table.match(active_params(space, params_of[trial]))
            runs.setdefault(cid, {})[trial] = v
            means = {c: sum(x.values()) / len(x) for c, x in runs.items()}
            chosen = max(means, key=lambda c: means[c])
        if math.isinf(to_best) and chosen >= 0 and truth.reached(chosen):
            to_best = spent
    return {"epochs": len(rows), "to_best": to_best / truth.grid_epochs,
            "rank": int(truth.ranks[chosen]) if chosen >= 0 else None,
            "trials": len(params_of)}


def simulated(config: Any, space: Any, replayed: Any, judge: Any, sim_seeds: int
              ) -> list[tuple[float, int]]:
    """``sim_seeds`` simulated searches of ``config`` replaying the table ``replayed``, each as
    (epochs until its hand-back is within 0.01 of ``judge``'s best, as a share of the grid's
    epochs; epochs it spent)."""
    from raygym.search.simulate import epochs_to_target, simulate

    out = []
    for s in range(sim_seeds):
        trace = simulate(config, space, replayed, seed=s, max_epochs_spent=math.inf)
        out.append((epochs_to_target(trace, judge) / judge.grid_epochs,
                    int(trace.epochs[-1]) if len(trace.epochs) else 0))
    return out


def fresh_noise(config: Any, space: Any, table: Any, sim_seeds: int) -> list[tuple[float, int]]:
    """:func:`simulated` on training noise the truth does not share, as a real search meets
    it: each recorded seed in turn is the only one replayed (a repeat replays it again), and
    the mean of the other seeds judges the hand-back (``rehearse.fresh_fold``)."""
    from raygym.search.rehearse import fresh_fold

    out = []
    for seed in table.seeds:
        out += simulated(config, space, *fresh_fold(config, table, seed), sim_seeds)
    return out


def quartiles(runs: list[tuple[float, int]]) -> list[float]:
    shares = np.asarray([share for share, _ in runs])
    return [float(np.quantile(shares, x, method="lower")) for x in (0.25, 0.5, 0.75)]


def pct(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("table", type=Path)
    p.add_argument("--setting", default="default", choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=24, help="trials per search")
    p.add_argument("--sim-seeds", type=int, default=30)
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping in every trial (default max(3, epochs // 5), as "
                   "bench_simulate.py)")
    p.add_argument("--train-seed", choices=["0", "search"], default="0",
                   help="the trials' train.seed: 0 in every search (searches then share each "
                   "configuration's training noise), or each search's own seed (as the "
                   "simulator, which replays other recorded seeds in each search)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--predict-only", action="store_true",
                   help="print the simulator's prediction for these searches, train nothing "
                   "(write it down before running them)")
    args = p.parse_args(argv)

    from rich.console import Console

    from raygym.search.replay import ground_truth, load_table
    from raygym.search.run import search_experiment
    from raygym.search.space_config import load_experiment

    table = load_table(str(args.table.resolve()))
    card = json.loads(args.table.with_name(
        args.table.name.removesuffix(".gz").removesuffix(".csv") + ".card.json").read_text())
    assert set(card["grid"]["loss.name"]) <= {json.dumps(v, sort_keys=True)
                                              if isinstance(v, dict) else v
                                              for v in LOSSES.values()}
    patience = args.patience or max(3, table.epochs // 5)
    truth = ground_truth(table, patience=patience, max_epochs=table.epochs)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_confirm-"))
    workdir.mkdir(parents=True, exist_ok=True)
    real: list[dict[str, Any]] = []
    sims: dict[str, list[tuple[float, int]]] = {}
    for seed in args.seeds:
        sections = real_sections(card, table, args.setting, patience, args.samples, seed,
                                 workdir, seed if args.train_seed == "search" else 0)
        path = workdir / f"{sections['name']}.yaml"
        path.write_text(yaml.safe_dump(sections, sort_keys=False))
        config, space = load_experiment(path)
        out = workdir / "results" / config.name
        if not args.predict_only and not (out / "leaderboard.csv").exists():
            tick = time.perf_counter()
            code = search_experiment(config, space, space_file=path,
                                     console=Console(file=io.StringIO()))
            assert code == 0
            print(f"seed {seed}: real search {time.perf_counter() - tick:.0f} s", flush=True)
        if not args.predict_only:
            scored = score_real(out, config.name, table, truth, space, config.search.metric)
            real.append({"seed": seed, "train_seed": config.train.seed, **scored})
        if not sims:
            sims["replayed"] = simulated(config, space, table, truth, args.sim_seeds)
            if len(table.seeds) > 1:
                sims["fresh"] = fresh_noise(config, space, table, args.sim_seeds)
    print(f"{args.table.name}, setting {args.setting}, {args.samples} trials per search: "
          f"grid {truth.grid_epochs:.0f} epochs, best {truth.best:.4f}")
    q = {noise: quartiles(runs) for noise, runs in sims.items()}
    for noise, runs in sims.items():
        reach = np.mean([np.isfinite(share) for share, _ in runs])
        print(f"simulated, {noise} noise ({len(runs)} searches): reach {reach:.0%}; to within "
              f"0.01 q25 {pct(q[noise][0])}, median {pct(q[noise][1])}, q75 "
              f"{pct(q[noise][2])}; epochs spent median "
              f"{np.median([epochs for _, epochs in runs]):.0f}")
    for r in real:
        inside = " and ".join(f"{'inside' if lo <= r['to_best'] <= hi else 'outside'} the "
                              f"{noise} quartiles" for noise, (lo, _, hi) in q.items())
        print(f"real seed {r['seed']}: {r['trials']} trials, {r['epochs']} epochs "
              f"({r['epochs'] / truth.grid_epochs:.0%} of the grid), to within 0.01 "
              f"{pct(r['to_best'])}, handed back rank {r['rank']}; {inside}")
    if real:
        median_real = float(np.median([r["to_best"] for r in real]))
        print(f"real median to within 0.01: {pct(median_real)} (goal <= 35 %)")
    if args.json:
        args.json.write_text(json.dumps({"real": real, "sim_quartiles": q["replayed"],
                                         "sim_quartiles_fresh": q.get("fresh"),
                                         "grid_epochs": truth.grid_epochs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
