"""Many rehearsals of one search on a recorded curve table, beside random search and the grid.

``raygym search SPACE --replay TABLE --searches N``: the search that SPACE sets up is run N
times in simulated time (:func:`raygym.search.simulate.simulate`: raygym's own searcher and
scheduler, built from SPACE's config, driven on the table's recorded curves; no Ray processes),
at search seeds ``search.seed`` .. ``search.seed + N - 1``, and so are its baselines: raygym's
default search settings (when SPACE sets others), random search with SPACE's scheduler, and
Gym's grid (every configuration of the table, one run each). One search says little: a
rehearsal over many seeds says how often the settings find the grid's best, and how soon.

Each row's figures (:func:`raygym.search.simulate.summarize`): the epochs spent until the
handed-back configuration is within 0.01 of the grid's best (quartiles, as a share of the
grid's epochs to early stopping), how many searches got there (also on fresh training
noise: :func:`fresh_noise_shares`), the chance of handing back the
grid's best / one of its best three at 25 % and 50 % of the grid's epochs, and the median
ground-truth score handed back at 10 / 25 / 50 / 100 % of them. On a table with 3 or more
training seeds, also what the hand-back at half the grid's epochs scores on a seed that the
search never replayed (``unseen_at_50``, :func:`unseen_seed_scores`): the ground truth is
the mean of seeds a search replays, so a search is also judged on a run it could not see.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from raygym.config import ExperimentConfig
from raygym.search.replay import CurveTable, config_truth, load_table
from raygym.search.space_config import SearchSpace

# Search keys that say what is searched and how much, not how: a row of raygym's defaults
# keeps SPACE's values of these.
_BUDGET_KEYS = ("num_samples", "max_concurrent", "metric", "mode", "top_k", "seed",
                "points_to_evaluate", "results_dir", "storage_path", "max_failures",
                "time_budget")


@dataclass(frozen=True)
class Row:
    """One line of a rehearsal: ``config`` searched with ``sampler`` (``tpe``: the config's
    own searcher; ``random``: Optuna's RandomSampler with the same bookkeeping; ``grid``:
    every configuration of the table in its order, no scheduler)."""

    name: str
    config: ExperimentConfig
    sampler: str


def rehearsal_rows(config: ExperimentConfig, table: CurveTable) -> list[Row]:
    """SPACE's own settings (``yours``), raygym's defaults where SPACE sets others
    (``defaults``), random search with SPACE's scheduler (``random``) and the grid."""
    s = config.search

    def with_search(**update: Any) -> ExperimentConfig:
        return config.model_copy(update={"search": s.model_copy(update=update)})

    if s.algorithm == "grid":
        rows = [Row("yours", config, "grid")]
    elif s.algorithm == "random":
        # Tune's random generator repeats nothing; Optuna's RandomSampler with no repeats
        # samples the same way with the bookkeeping the simulator drives
        rows = [Row("yours", with_search(algorithm="optuna", repeat_top=0), "random")]
    else:
        rows = [Row("yours", config, "tpe")]
    # validated whole, so that the defaults that depend on training (the grace period) follow
    budget = {k: getattr(s, k) for k in _BUDGET_KEYS}
    defaults = type(config).model_validate({**config.model_dump(), "search": budget})
    if defaults.search.model_dump() != s.model_dump():
        rows.append(Row("defaults", defaults, "tpe"))
    if s.algorithm != "random":
        # the baseline the issue names: random sampling, the same early stopping and repeats;
        # BOHB's HyperBand needs its own searcher, so random search then judges with ASHA at
        # BOHB's reduction factor (BOHB and the grid repeat nothing)
        rows.append(Row("random", with_search(
            algorithm="optuna", scheduler="asha" if s.algorithm == "bohb" else s.scheduler,
            repeat_top=s.repeat_top if s.algorithm == "optuna" else 0), "random"))
    if s.algorithm != "grid":
        rows.append(Row("grid", with_search(algorithm="grid", scheduler="none",
                                            num_samples=len(table.configs)), "grid"))
    return rows


def describe_row(row: Row) -> str:
    """What a row searches with, in a few words."""
    s = row.config.search
    if row.sampler == "grid":
        return f"every configuration of the table once ({s.num_samples} trials), in its order"
    what = {"tpe": "BOHB" if s.algorithm == "bohb" else "TPE" + (
        " (multivariate)" if s.tpe.multivariate else ""), "random": "random"}[row.sampler]
    trials = f"at most {s.num_samples} trials, "
    if s.algorithm == "bohb":
        return f"{trials}{what} + HyperBand (reduction factor {s.reduction_factor:g})"
    stop = {"none": "no scheduler", "asha": f"ASHA (grace {s.grace_period}, reduction "
            f"factor {s.reduction_factor:g})", "median": f"median stopping (grace "
            f"{s.grace_period})", "patient": f"patient halving (grace {s.grace_period})"
            }.get(s.scheduler, s.scheduler)
    return f"{trials}{what} + {stop}" + (f", best {s.repeat_top} repeated" if s.repeat_top
                                         else "")


def unseen_seed_scores(config: ExperimentConfig, table: CurveTable, seeds: list[int],
                       run: Callable[[ExperimentConfig, CurveTable, int, float], int] | None,
                       runs_per_configuration: int = 1, truth: Any = None
                       ) -> list[float] | None:
    """Seed cross-validation: search seed k replays the table without its recorded seed
    k mod S (a fold) and is judged by its score on that seed alone, at half the fold's grid
    epochs. ``run(config, fold, search_seed, budget)`` is one search's hand-back there
    (configuration id; None: the fold's own best by the mean of its seeds, what its ground
    truth calls best). None where a fold cannot replay it: fewer than 3 recorded seeds, or
    ``runs_per_configuration`` above the fold's seeds. ``truth``: the table's ground truth
    under ``config``, when the caller has it already."""
    import numpy as np

    n = len(table.seeds)
    truth = truth if truth is not None else config_truth(config, table)
    if n < 3 or runs_per_configuration > n - 1 or truth.per_seed is None:
        return None
    folds: dict[int, tuple[CurveTable, float, int]] = {}
    scores = []
    for seed in seeds:
        j = seed % n
        if j not in folds:
            fold = table.without_seed(table.seeds[j])
            fold_truth = config_truth(config, fold)
            folds[j] = (fold, 0.5 * fold_truth.grid_epochs, int(np.argmin(fold_truth.ranks)))
        fold, budget, fold_best = folds[j]
        cid = fold_best if run is None else run(config, fold, seed, budget)
        scores.append(float(truth.per_seed[cid, j]) if cid >= 0 else float("nan"))
    return scores


def fresh_fold(config: ExperimentConfig, table: CurveTable, seed: int
               ) -> tuple[CurveTable, Any]:
    """Recorded seed ``seed`` alone, for a search to replay, and the ground truth of the
    other seeds, to judge it: training noise its judge does not share, as a real search
    meets it."""
    return table.only_seed(seed), config_truth(config, table.without_seed(seed))


def fresh_noise_shares(config: ExperimentConfig, table: CurveTable, seeds: list[int],
                       run: Callable[[ExperimentConfig, CurveTable, int, float], Any]
                       ) -> list[float] | None:
    """Searches on training noise their judge does not share, as a real search meets it:
    search seed k replays only the table's recorded seed k mod S (a repeat replays it again)
    and is judged by the ground truth of the other seeds. ``run(config, table, search_seed,
    budget)`` is one search's trace. Per search: epochs until its hand-back is within 0.01 of
    that truth's best, a share of its grid's epochs (inf: never). None with one seed.

    A replayed search sees noise that is part of its judge (optimistic); here a repeat
    averages no noise (pessimistic for searches that repeat)."""
    from raygym.search.simulate import epochs_to_target

    n = len(table.seeds)
    if n < 2:
        return None
    folds: dict[int, tuple[CurveTable, Any]] = {}
    shares = []
    for seed in seeds:
        j = seed % n
        if j not in folds:
            folds[j] = fresh_fold(config, table, table.seeds[j])
        alone, judge = folds[j]
        trace = run(config, alone, seed, judge.grid_epochs)
        shares.append(epochs_to_target(trace, judge) / judge.grid_epochs)
    return shares


def _run_row(job: tuple[Row, SearchSpace, str, list[int], float | None]) -> dict[str, Any]:
    """Every search seed of one row (a worker process, or inline); its summary.
    ``noise_se``: a ground-truth score's standard error (None: the table cannot tell)."""
    row, space, table_path, seeds, noise_se = job
    import numpy as np
    from optuna.samplers import RandomSampler

    from raygym.search.simulate import chosen_at, simulate, summarize

    table = load_table(table_path)
    truth = config_truth(row.config, table)
    # the grid baseline is the table's: every recorded configuration once, in the table's
    # order (SPACE may sample a continuous range that the table recorded at a few points); a
    # space searched by grid (yours) runs its own points
    keys = [k for k in table.param_keys if k in space.paths()]
    grid = ([{k: cfg[k] for k in keys} for cfg in table.configs] if row.name == "grid"
            else None)

    def search(config: ExperimentConfig, on: CurveTable, seed: int, budget: float) -> Any:
        return simulate(config, space, on, seed=seed, max_epochs_spent=budget,
                        algorithm="grid" if row.sampler == "grid" else None,
                        sampler=RandomSampler(seed=seed) if row.sampler == "random" else None,
                        grid_points=grid)

    traces = [search(row.config, table, seed, truth.grid_epochs) for seed in seeds]
    s = row.config.search
    unseen = unseen_seed_scores(
        row.config, table, seeds,
        lambda config, fold, seed, budget: chosen_at(search(config, fold, seed, budget), budget),
        s.repeat_runs if s.repeat_top and row.sampler != "grid" else 1, truth)
    fresh = fresh_noise_shares(row.config, table, seeds, search)
    return {"name": row.name, "settings": describe_row(row),
            **summarize(traces, truth, noise_se=noise_se),
            "unseen_at_50": float(np.nanmean(unseen)) if unseen else None,
            "reached_fresh": float(np.isfinite(fresh).mean()) if fresh else None}


def rehearse(config: ExperimentConfig, space: SearchSpace, table: CurveTable, *,
             searches: int, workers: int | None = None,
             on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """``searches`` simulated searches per row of :func:`rehearsal_rows`.

    ``workers``: processes (default: this machine's CPUs, at most one per row; 1 runs in
    this process). ``on_row`` is called with each row's summary as it is ready, in row
    order. Returns the table's figures (``grid_epochs``, ``grid_best``, ``configurations``,
    ``noise``; ``best_unseen``: the table's own best per fold, judged on the seed left out, as
    the rows' ``unseen_at_50``), the search seeds and ``rows`` (each
    :func:`~raygym.search.simulate.summarize` plus its ``name`` and ``unseen_at_50``).
    """
    import numpy as np

    from raygym.search.noise import table_noise

    truth = config_truth(config, table)
    noise = table_noise(truth)  # None: one training seed, nothing to tell noise by
    rows = rehearsal_rows(config, table)
    seeds = list(range(config.search.seed, config.search.seed + searches))
    jobs = [(row, space, str(table.path), seeds, noise["mean_se"] if noise else None)
            for row in rows]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    out: list[dict[str, Any]] = []
    if workers == 1:
        for job in jobs:
            out.append(_run_row(job))
            if on_row is not None:
                on_row(out[-1])
    else:
        import multiprocessing

        # spawn: a forked child would inherit the parent's Ray and Optuna state
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for summary in pool.map(_run_row, jobs):
                out.append(summary)
                if on_row is not None:
                    on_row(summary)
    best = int(truth.ranks.argmin())
    best_unseen = unseen_seed_scores(config, table, seeds, None, truth=truth)
    return {"table": str(table.path), "configurations": len(table.configs),
            "best_unseen": float(np.nanmean(best_unseen)) if best_unseen else None,
            "training_seeds": len(table.seeds), "grid_epochs": truth.grid_epochs,
            "grid_best": truth.best, "grid_best_params": table.configs[best],
            "search_seeds": [seeds[0], seeds[-1]], "noise": noise, "rows": out}


def print_rehearsal(result: dict[str, Any], console: Any) -> None:
    """The rehearsal's rows side by side (fixed width: 80 columns), then what a rank on the
    table is worth."""
    from raygym.search.noise import noise_line

    first, last = result["search_seeds"]
    title = (f"{last - first + 1} simulated searches per row (search seeds {first}-{last}) on "
             f"{result['table']}: {result['configurations']} configurations x "
             f"{result['training_seeds']} training seeds; the grid costs "
             f"{result['grid_epochs']:.0f} epochs to early stopping, its best "
             f"{result['grid_best']:.4f} ({result['grid_best_params']})")
    console.print(title, markup=False, highlight=False)
    noisy = "noise_at_50" in result["rows"][0]
    lines = [f"{'':8}{'to the grid best':>18}{'reach':^12}{'top-1':>10}{'top-3':>10}"
             + (f"{'<=SE':>5}" if noisy else "") + f"{'score @50':>12}",
             f"{'settings':8}{'q25':>6}{'med':>6}{'q75':>6}{'table':>6}{'fresh':>6}"
             f"{'@25':>5}{'@50':>5}{'@25':>5}{'@50':>5}" + (f"{'@50':>5}" if noisy else "")
             + f"{'truth':>6}{'new':>6}{'stop':>5}"]
    for row in result["rows"]:
        q, a = row["to_best"], row["anytime"]
        fresh = row.get("reached_fresh")
        lines.append(
            f"{row['name']:8}" + "".join(f"{_share(x):>6}" for x in q)
            + f"{row['reached']:>6.0%}" + (f"{fresh:>6.0%}" if fresh is not None else f"{'-':>6}")
            + f"{row['top1'][0.25]:>5.0%}{row['top1'][0.5]:>5.0%}"
            f"{row['top3'][0.25]:>5.0%}{row['top3'][0.5]:>5.0%}"
            + (f"{row['noise_at_50']:>5.0%}" if noisy else "")
            + f"{a[0.5]:>6.3f}" + (f"{new:>6.3f}" if (new := row.get("unseen_at_50"))
                                    is not None else f"{'-':>6}")
            + f"{row['pruned']:>5.0f}")
    lines += [f"  {row['name']}: {row['settings']}" for row in result["rows"]]
    for line in lines:
        console.print(line, markup=False, highlight=False)
    console.print("to the grid best: epochs until the configuration handed back is within 0.01 "
                  "of the grid's best, a share of the grid's epochs (quartiles over the "
                  "searches); reach: searches that got there, on the table's seeds (each search "
                  "replays recorded seeds whose mean is the truth that judges it: optimistic) "
                  "and on fresh noise (each replays one recorded seed alone, a repeat the same "
                  "one, judged by the mean of the others: pessimistic for searches that "
                  "repeat; -: one seed); top-1 / top-3: searches handing "
                  "back the grid's best / one of its best 3 after 25 % / 50 % of the grid's "
                  "epochs; <=SE: searches handing back, at 50 %, a configuration within one "
                  "standard error of the grid's best (closer than the table can tell apart); "
                  "score @50, after 50 %: truth, the median ground truth handed back; new, "
                  "its mean score on a recorded training seed the search never replayed "
                  "(each search leaves one of the table's seeds out and is judged by it; -: "
                  "fewer than 3 seeds, or more repeats than a fold keeps)"
                  + (f", where the table's own best by its other seeds scores "
                     f"{result['best_unseen']:.3f}" if result.get("best_unseen") is not None
                     else "") + "; "
                  "stop: trials the scheduler stopped (median); every search replays one "
                  "recorded training seed for all its configurations (a repeat: another one), "
                  "as a raygym search trains every trial on train.seed",
                  markup=False, highlight=False)
    if result.get("noise"):
        console.print(noise_line(result["noise"]))


def _share(x: float) -> str:
    return "never" if x == float("inf") else f"{x:.0%}"
