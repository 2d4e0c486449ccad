"""A search simulator on a recorded curve table: hundreds of searches in minutes.

The searcher and the scheduler are the very objects ``raygym search`` builds
(:func:`raygym.search.tune.build_searcher` / ``build_scheduler`` from the same config), driven
the way Tune's controller drives them (``suggest``; each result to the scheduler, then to the
searcher unless the scheduler stopped the trial; ``on_trial_complete`` with the last result),
by a discrete-event loop in simulated time: each replayed epoch takes the seconds it took when
it was recorded, ``search.max_concurrent`` trials at once. Only Tune's actors and processes are
left out; ``raygym search SPACE --replay TABLE`` runs the same replay through real Tune.
(Syne Tune's simulator backend and the tabular benchmarks HPOBench / YAHPO are the models for
this method.)

What a search "hands back" after each epoch is the configuration of the trial with the best
reported ``best_<metric>`` (the leaderboard's rank 1); it is judged by its ground-truth score
(:class:`raygym.search.replay.GroundTruth`), against the grid's best and the grid's cost.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raygym.config import ExperimentConfig
from raygym.search.replay import (
    CurveTable,
    GroundTruth,
    SeedDraw,
    replay_results,
    replay_seed,
)
from raygym.search.space import REPEAT_KEY, active_params, enumerate_points
from raygym.search.space_config import SearchSpace
from raygym.train.contract import diverged, finished


@dataclass
class SearchTrace:
    """One simulated search, one entry per epoch spent (in simulated-time order).

    ``epochs[i]``: epochs spent by all trials after that epoch (i + 1); ``chosen[i]``: the
    configuration id the search would hand back then (-1: no score yet); ``trials``: how
    many trials started; ``pruned``: how many the scheduler stopped; ``sim_seconds``: the
    recorded training seconds the search would have taken on ``max_concurrent`` slots.
    """

    epochs: np.ndarray
    chosen: np.ndarray
    trials: int
    pruned: int
    sim_seconds: float
    order: list[int] = field(default_factory=list)  # configuration ids in start order
    ran: list[int] = field(default_factory=list)  # epochs each of those trials ran
    # per trial, in start order: epochs spent (by all trials) when it was suggested and when
    # it ended (inf: still running at the end), and whether it ran to its own end (not
    # stopped by the scheduler, not diverged)
    started: list[int] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    completed: list[bool] = field(default_factory=list)


class _Stub:
    """What schedulers read of a Tune ``Trial``: its id and status (hashable by identity)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.status = "PENDING"
        self.is_saving = False  # a replayed trial pauses without writing a checkpoint
        self.last_result: dict[str, Any] = {}
        self.config: dict[str, Any] = {}

    def __repr__(self) -> str:
        return self.trial_id


class _Controller:
    """The part of Tune's controller that schedulers call: the trials (all, in creation order,
    and the unfinished ones), ``stop_trial`` (HyperBand stops paused trials of a bracket it
    halves) and ``search_alg.searcher`` (HyperBandForBOHB tells BOHB when a trial pauses)."""

    def __init__(self, scheduler: Any, searcher: Any) -> None:
        from types import SimpleNamespace

        self.trials: dict[str, _Stub] = {}
        self.scheduler = scheduler
        self.searcher = searcher
        self.search_alg = SimpleNamespace(searcher=searcher)
        self.stopped: list[_Stub] = []  # trials stopped while not running (pruned)

    def get_live_trials(self) -> list[_Stub]:
        return [t for t in self.trials.values() if t.status != "TERMINATED"]

    def get_trials(self) -> list[_Stub]:
        return list(self.trials.values())

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.trials.values())

    def stop_trial(self, trial: _Stub) -> None:
        """As Tune's ``TuneController.stop_trial``: a pending or paused trial is removed from
        the scheduler and completed without a result; a running one completes with its last
        result."""
        if trial.status == "TERMINATED":
            return
        if trial.status in ("PENDING", "PAUSED"):
            self.scheduler.on_trial_remove(self, trial)
            self.searcher.on_trial_complete(trial.trial_id)
            self.stopped.append(trial)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
            self.searcher.on_trial_complete(trial.trial_id, trial.last_result)
        trial.status = "TERMINATED"


class GridSearcher:
    """Gym's exhaustive grid as a searcher: every point of the space, in factorial order,
    or the given ``points`` in their order."""

    def __init__(self, space: SearchSpace, points: list[dict[str, Any]] | None = None) -> None:
        from raygym.search.space import decode_value

        if points is None:
            points = enumerate_points(space)
            if points is None:
                raise ValueError("a grid needs a discrete space")
            by_path = {d.path: d for d in space}
            points = [{k: decode_value(by_path[k], v) for k, v in p.items()} for p in points]
        self.points = points
        self.next = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        from ray.tune.search import Searcher

        if self.next >= len(self.points):
            return Searcher.FINISHED
        self.next += 1
        return self.points[self.next - 1]

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        pass


def with_seed(config: ExperimentConfig, seed: int) -> ExperimentConfig:
    return config.model_copy(update={"search": config.search.model_copy(update={"seed": seed})})


def simulate(config: ExperimentConfig, space: SearchSpace, table: CurveTable, *, seed: int,
             max_epochs_spent: float, algorithm: str | None = None,
             sampler: Any = None, grid_points: list[dict[str, Any]] | None = None,
             leader: Callable[[dict[int, dict[str, float]]], int] | None = None,
             seed_draw: SeedDraw = "shared") -> SearchTrace:
    """One search of ``space`` as ``config`` sets it up, replayed on ``table``.

    Runs until ``max_epochs_spent`` epochs were spent, ``search.num_samples`` trials ran or
    the searcher is finished. ``algorithm``: ``grid`` replaces the searcher with Gym's grid
    (no scheduler), over the space or ``grid_points`` (``{key path: value}`` each);
    ``sampler``: an Optuna sampler instead of the configured TPE (e.g.
    ``RandomSampler`` for a random-search baseline with the same bookkeeping).
    With ``search.repeat_top`` the searcher repeats leading configurations; a repeat replays
    another of the table's seeds, and configurations are ranked by their mean, as the
    leaderboard ranks them. ``seed_draw``: which recorded seed a run replays
    (:func:`raygym.search.replay.replay_seed_index`; ``shared``, raygym's own training, or
    ``per_trial``).
    """
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
    from ray.tune.search import Searcher

    from raygym.search.tune import build_scheduler, build_searcher

    config = with_seed(config, seed)
    s, t = config.search, config.train
    np.random.seed(seed)  # AsyncHyperBand and hpbandster draw from numpy's global generator
    random.seed(seed)
    if algorithm == "grid":
        searcher: Any = GridSearcher(space, grid_points)
        scheduler: Any = FIFOScheduler()
    else:
        searcher = build_searcher(config, space, None, sampler=sampler)
        scheduler = build_scheduler(config, space)
    if not scheduler.metric:  # Tune's TuneConfig(metric, mode), as run_tune passes them
        scheduler.set_search_properties(s.metric, s.mode)
    ctl = _Controller(scheduler, searcher)
    sign = 1.0 if s.mode == "max" else -1.0
    events: list[tuple[float, int, str, int]] = []  # (time, tie-break, trial id, epoch index)
    replays: dict[str, tuple[list[dict[str, Any]], int]] = {}  # trial -> (results, config)
    resume_at: dict[str, int] = {}  # trial -> index of its next epoch
    ran: dict[str, int] = {}  # trial -> epochs replayed
    started: dict[str, int] = {}  # trial -> epochs spent when suggested
    ended: dict[str, tuple[int, bool]] = {}  # trial -> (epochs spent when it ended, completed)
    stopped_seen = 0  # of ctl.stopped, those already in ``ended``
    spent, pruned, seq = 0, 0, 0
    chosen = -1
    runs: dict[int, dict[str, float]] = {}  # config -> {trial: its best value so far}
    epochs_out: list[int] = []
    chosen_out: list[int] = []
    order: list[int] = []
    searcher_done = False
    clock = 0.0

    def ask() -> bool:
        """One new trial from the searcher (PENDING), as Tune's trial queue asks for it."""
        nonlocal searcher_done
        trial_id = f"t{len(ctl.trials):05d}"
        params = searcher.suggest(trial_id)
        if params is None:
            return False
        if params == Searcher.FINISHED:
            searcher_done = True
            return False
        run = int(params.get(REPEAT_KEY, 0))
        cid = table.match(active_params(space, params))
        order.append(cid)
        runs.setdefault(cid, {})
        replays[trial_id] = (list(replay_results(
            table, cid, replay_seed(table, cid, s.seed, run, seed_draw), patience=t.patience,
            max_epochs=t.max_epochs, metric=s.metric, search=s, monitor=t.monitor)), cid)
        resume_at[trial_id] = ran[trial_id] = 0
        started[trial_id] = spent
        stub = _Stub(trial_id)
        stub.config = params  # as Tune's Trial.config (SparingRepeats reads the repeat key)
        ctl.trials[trial_id] = stub
        scheduler.on_trial_add(ctl, stub)
        return True

    def fill_slots() -> None:
        """Tune's controller step: ask the searcher while a slot is free, then run what the
        scheduler chooses (pending trials first for FIFO / ASHA; HyperBand's own choice of
        paused trials to resume) on ``max_concurrent`` slots."""
        nonlocal seq
        while True:
            while (not searcher_done and len(ctl.trials) < s.num_samples
                   and ctl.count("PENDING") + ctl.count("RUNNING") < s.max_concurrent):
                if not ask():
                    break
            if ctl.count("RUNNING") >= s.max_concurrent:
                return
            trial = scheduler.choose_trial_to_run(ctl)
            if trial is None:
                return
            trial.status = "RUNNING"
            i = resume_at[trial.trial_id]
            seq += 1
            heapq.heappush(events, (clock + _seconds(replays[trial.trial_id][0][i]), seq,
                                    trial.trial_id, i))

    fill_slots()
    while events and spent < max_epochs_spent:
        clock, _, trial_id, i = heapq.heappop(events)
        stub = ctl.trials[trial_id]
        if stub.status != "RUNNING":  # stopped by the scheduler while its epoch ran
            continue
        results, cid = replays[trial_id]
        result = dict(results[i])  # HyperBandForBOHB writes into the result it judges
        spent += 1
        ran[trial_id] += 1
        stub.last_result = result
        if diverged(result):
            scheduler.on_trial_error(ctl, stub)
            searcher.on_trial_complete(trial_id, error=True)
            stub.status = "TERMINATED"
            ended[trial_id] = (spent, False)
        else:
            value = result.get(f"best_{s.metric}", math.nan)
            if value == value:
                runs[cid][trial_id] = sign * value
                chosen = (leader or _leader)(runs)
            if finished(result):  # the trial's own loop ended: Tune's done flag
                decision = TrialScheduler.STOP
            else:
                decision = scheduler.on_trial_result(ctl, stub, result)
            if decision == TrialScheduler.STOP:
                ctl.stop_trial(stub)
                pruned += not finished(result)
                ended[trial_id] = (spent, finished(result))
            else:
                searcher.on_trial_result(trial_id, result)
                resume_at[trial_id] = i + 1
                if decision == TrialScheduler.PAUSE:
                    stub.status = "PAUSED"
                else:
                    seq += 1
                    heapq.heappush(events, (clock + _seconds(results[i + 1]), seq, trial_id,
                                            i + 1))
        for gone in ctl.stopped[stopped_seen:]:  # paused / pending ones HyperBand stopped
            ended.setdefault(gone.trial_id, (spent, False))
        stopped_seen = len(ctl.stopped)
        epochs_out.append(spent)
        chosen_out.append(chosen)
        fill_slots()
    pruned += len(ctl.stopped)
    return SearchTrace(epochs=np.asarray(epochs_out), chosen=np.asarray(chosen_out),
                       trials=len(ctl.trials), pruned=pruned, sim_seconds=clock, order=order,
                       ran=[ran[t] for t in ctl.trials],
                       started=[started[t] for t in ctl.trials],
                       ended=[float(ended[t][0]) if t in ended else math.inf
                              for t in ctl.trials],
                       completed=[t in ended and ended[t][1] for t in ctl.trials])


def _leader(runs: dict[int, dict[str, float]]) -> int:
    """The configuration with the best mean (signed: higher is better) over its runs, as the
    leaderboard ranks them."""
    scored = {cid: sum(v.values()) / len(v) for cid, v in runs.items() if v}
    return max(scored, key=lambda c: scored[c]) if scored else -1


def _seconds(result: dict[str, Any]) -> float:
    return float(result.get("epoch_seconds") or 1.0)


# --------------------------------------------------------------------------------- metrics
def epochs_to_target(trace: SearchTrace, truth: GroundTruth, tolerance: float = 0.01) -> float:
    """Epochs spent until the handed-back configuration is within ``tolerance`` of the
    grid's best (and stays the hand-back from then on is not required); inf: never."""
    for spent, cid in zip(trace.epochs, trace.chosen, strict=True):
        if cid >= 0 and truth.reached(int(cid), tolerance):
            return float(spent)
    return math.inf


def chosen_at(trace: SearchTrace, epochs: float) -> int:
    """The configuration handed back after ``epochs`` epochs (-1: none)."""
    i = int(np.searchsorted(trace.epochs, epochs, side="right")) - 1
    return int(trace.chosen[i]) if i >= 0 else -1


def summarize(traces: list[SearchTrace], truth: GroundTruth,
              fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0),
              noise_se: float | None = None) -> dict[str, Any]:
    """Figures over many seeds of one search setting.

    ``to_best``: quartiles (q25, median, q75) of epochs-to-within-0.01 as a share of the
    grid's epochs (inf: the search never got there); ``reached``: the share of searches that
    got there at all; ``top1`` / ``top3``: chance that the handed-back configuration is the
    grid's best / among its best three after 25 % and 50 % of the grid's epochs;
    ``anytime``: {fraction: median ground-truth score handed back at that budget}.
    With ``noise_se`` (a ground-truth score's standard error, :func:`raygym.search.noise.
    noise_floor`'s ``mean_se``), the same with it as the tolerance instead of 0.01:
    ``to_noise`` (median share) and ``noise_at_50`` (chance at 50 % of the grid's epochs).
    """
    grid = truth.grid_epochs
    shares = np.array([epochs_to_target(tr, truth) / grid for tr in traces])
    q25, q50, q75 = (float(np.quantile(shares, q, method="lower")) for q in (0.25, 0.5, 0.75))

    def top(k: int, fraction: float) -> float:
        hits = [(c := chosen_at(tr, fraction * grid)) >= 0 and truth.ranks[c] <= k
                for tr in traces]
        return float(np.mean(hits))

    anytime = {}
    for f in fractions:
        vals = [truth.scores[c] if (c := chosen_at(tr, f * grid)) >= 0 else math.nan
                for tr in traces]
        anytime[f] = float(np.nanmedian(vals)) if np.isfinite(vals).any() else math.nan
    noisy: dict[str, float] = {}
    if noise_se is not None:
        near = np.array([epochs_to_target(tr, truth, noise_se) / grid for tr in traces])
        noisy = {"to_noise": float(np.quantile(near, 0.5, method="lower")),
                 "noise_at_50": float(np.mean([
                     (c := chosen_at(tr, 0.5 * grid)) >= 0 and truth.reached(c, noise_se)
                     for tr in traces]))}
    return {**noisy, "searches": len(traces), "to_best": (q25, q50, q75),
            "reached": float(np.mean(np.isfinite(shares))),
            "top1": {0.25: top(1, 0.25), 0.5: top(1, 0.5)},
            "top3": {0.25: top(3, 0.25), 0.5: top(3, 0.5)},
            "anytime": anytime, "trials": float(np.median([tr.trials for tr in traces])),
            "pruned": float(np.median([tr.pruned for tr in traces]))}


def top_k_funnel(traces: list[SearchTrace], truth: GroundTruth, fraction: float = 0.5,
                 k: int = 3) -> dict[str, float]:
    """Where the chance of handing back a top-``k`` configuration after ``fraction`` of the
    grid's epochs is lost, as shares of the searches: ``started``: a trial of a top-``k``
    configuration had been suggested by then (the most any hand-back rule could reach with
    this sampler); ``completed``: one had run to its own end (not stopped by the scheduler);
    ``chosen``: the hand-back was a top-``k`` configuration (``summarize``'s ``top3``)."""
    budget = fraction * truth.grid_epochs
    top = {int(c) for c in np.flatnonzero(truth.ranks <= k)}
    started, completed, chosen = [], [], []
    for tr in traces:
        began = [c for c, s in zip(tr.order, tr.started, strict=True) if s <= budget]
        done = [c for c, e, ok in zip(tr.order, tr.ended, tr.completed, strict=True)
                if ok and e <= budget]
        started.append(bool(top.intersection(began)))
        completed.append(bool(top.intersection(done)))
        chosen.append((c := chosen_at(tr, budget)) >= 0 and truth.ranks[c] <= k)
    return {"started": float(np.mean(started)), "completed": float(np.mean(completed)),
            "chosen": float(np.mean(chosen))}
