"""How much of a recorded table's ranking is noise of its training seeds.

A table records each configuration at a few training seeds; its ground truth
(:func:`raygym.search.replay.ground_truth`) averages them. These figures say what a rank or
a lead on that truth is worth before a search is judged by it: one run's spread, the
standard error of a score, a bootstrap of the grid's best, how a grid of one run per
configuration picks, and whether a second set of runs names the same leaders.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from raygym.search.replay import GroundTruth

# Under this share of seed splits confirming the table's best, its leading ranks are ties.
TIES_BELOW = 0.5


def noise_floor(truth: GroundTruth, *, draws: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """How much of a table's ranking is noise of its training seeds (mode ``max`` tables).

    ``run_sd``: the spread of one training run around its configuration's mean, pooled over
    configurations with every seed finite (sqrt(mean of (s_i - mean)^2 * S / (S - 1)));
    ``mean_se``: that over sqrt(S), the standard error of a ground-truth score; ``within_se``:
    configurations whose score is within ``mean_se`` of the best. Bootstrap (``draws`` times
    each configuration's seeds resampled with replacement): ``boot_best`` (5 %, 50 %, 95 %) of
    the grid's best score, ``boot_same``: how often the same configuration is best. One run
    per configuration at a random seed (Gym's grid with one seed): ``single_within``: how
    often its pick is within 0.01 of the best, ``single_top3``: among the best 3.

    Whether a second set of training runs names the same leaders (every split of the seeds
    into ``ceil(S / 2)`` picking and ``S - ceil(S / 2)`` judging seeds, S >= 2): the
    configuration best by its picking seeds' mean, scored by its judging seeds' mean, minus
    the judging seeds' best (``split_gap``, mean over splits, <= 0); how often that is
    within 0.01 (``split_within``); how many of the picking seeds' top 3 are in the judging
    seeds' top 3 (``split_top3``, of 3). A table whose ``split_within`` is low has a best
    configuration that new runs would not confirm.
    """
    per = truth.per_seed
    assert per is not None and truth.mode == "max"
    n, k = per.shape
    full = np.isfinite(per).all(axis=1)
    dev = per[full] - per[full].mean(axis=1, keepdims=True)
    run_sd = float(np.sqrt((dev ** 2).sum() / (full.sum() * (k - 1))))
    mean_se = run_sd / math.sqrt(k)
    rng = np.random.default_rng(seed)
    filled = np.where(np.isnan(per), -np.inf, per)
    picks = rng.integers(0, k, size=(draws, n, k))
    boot = np.take_along_axis(np.broadcast_to(filled, (draws, n, k)), picks, axis=2).mean(axis=2)
    best_id = int(np.argmin(truth.ranks))
    one = filled[np.arange(n)[None, :], picks[:, :, 0]].argmax(axis=1)
    ok = np.nan_to_num(truth.scores, nan=-np.inf)
    return {"run_sd": run_sd, "mean_se": mean_se,
            "within_se": int((ok >= truth.best - mean_se).sum()),
            "boot_best": tuple(float(np.quantile(boot.max(axis=1), q)) for q in (.05, .5, .95)),
            "boot_same": float(np.mean(boot.argmax(axis=1) == best_id)),
            "single_within": float(np.mean(ok[one] >= truth.best - 0.01)),
            "single_top3": float(np.mean(truth.ranks[one] <= 3)),
            **_seed_splits(per)}


def _seed_splits(per: np.ndarray, tolerance: float = 0.01) -> dict[str, float]:
    """Pick by some seeds' mean, judge by the others' (``noise_floor``'s ``split_*``)."""
    k = per.shape[1]
    if k < 2:
        return {"split_gap": math.nan, "split_within": math.nan, "split_top3": math.nan}
    gaps, top3 = [], []
    for picking in itertools.combinations(range(k), math.ceil(k / 2)):
        judging = [j for j in range(k) if j not in picking]
        with np.errstate(invalid="ignore"):  # a configuration failed on every seed: NaN
            pick = np.nanmean(per[:, list(picking)], axis=1)
            judge = np.nanmean(per[:, judging], axis=1)
        pick, judge = np.nan_to_num(pick, nan=-np.inf), np.nan_to_num(judge, nan=-np.inf)
        gaps.append(float(judge[int(pick.argmax())] - judge.max()))
        top3.append(len(set(np.argsort(-pick)[:3]) & set(np.argsort(-judge)[:3])))
    gap = np.array(gaps)
    return {"split_gap": float(gap.mean()), "split_within": float(np.mean(gap >= -tolerance)),
            "split_top3": float(np.mean(top3))}


def table_noise(truth: GroundTruth) -> dict[str, float] | None:
    """What a rank on this table is worth (``noise_floor``'s figures), for the verdict."""
    per = truth.per_seed
    if truth.mode != "max" or per is None or per.shape[1] < 2 or not np.isfinite(per).all(
            axis=1).any():
        return None
    noise = noise_floor(truth, draws=200)
    return {k: noise[k] for k in ("run_sd", "mean_se", "split_within", "split_top3")}


def noise_line(noise: dict[str, float]) -> str:
    """``table_noise``'s figures in one sentence, with a warning when leaders are ties."""
    return (f"the table's noise: one run's spread {noise['run_sd']:.3f}, a score's standard "
            f"error {noise['mean_se']:.3f}; its best by half the training seeds is within 0.01 "
            f"of its best by the other half in {noise['split_within']:.0%} of splits (top 3 "
            f"shared {noise['split_top3']:.1f} of 3)"
            + ("" if noise["split_within"] >= TIES_BELOW else
               ": ranks this close are ties, not a verdict; record more seeds to tell them "
               "apart (raygym record SPACE --seeds ... --add adds runs to a table)"))
