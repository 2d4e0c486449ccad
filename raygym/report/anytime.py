"""The anytime curve of a search: the best score reported so far against the epochs all
trials have spent, in the order Tune reported them (its ``timestamp``), with where trials were
pruned or finished. A replayed search (``search.json`` key ``replay``) adds the recorded
grid's best score and cost and the rank of the search's best configuration."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from raygym.report.document import ReportDocument
from raygym.report.figures import epoch_axis, legend_outside, pyplot
from raygym.report.results import (
    FINISHED,
    NOT_PRUNED,
    SearchResults,
    as_float,
    category_text,
    parse_cell,
)
from raygym.search.noise import TIES_BELOW

AnytimeRecord = tuple[float, str, int, float]
"""One reported epoch: (Tune ``timestamp`` in s, trial id, epoch, score)."""


@dataclass(frozen=True)
class AnytimeSeries:
    """The anytime curve of a search, one point per reported epoch (see :func:`anytime_series`).

    ``epochs[i]`` is ``i + 1``: epochs spent by the whole search after the (i+1)-th report;
    ``best[i]`` the best score reported up to then (NaN before the first finite score);
    ``last_epoch_at[trial]`` the epoch count at which that trial's last epoch was reported;
    ``best_trial`` the trial whose report first reached the final best (None: no score).
    """

    epochs: list[int]
    best: list[float]
    last_epoch_at: dict[str, int]
    best_trial: str | None

    @property
    def total_epochs(self) -> int:
        return len(self.epochs)

    @property
    def final_best(self) -> float:
        return self.best[-1] if self.best else math.nan

    @property
    def first_best_at(self) -> int | None:
        """Epoch count at which the final best was first reached (None without a score)."""
        final = self.final_best
        if math.isnan(final):
            return None
        return next(x for x, y in zip(self.epochs, self.best, strict=True) if y == final)

    def best_at(self, x: int) -> float:
        """The best-so-far score after ``x`` epochs (1-based, as in ``epochs``)."""
        return self.best[x - 1] if 1 <= x <= len(self.best) else math.nan


def anytime_series(records: Iterable[AnytimeRecord], mode: str = "max") -> AnytimeSeries:
    """Best-so-far score of a search against the epochs it has spent (an anytime curve).

    ``records``: one ``(timestamp_s, trial_id, epoch, value)`` per reported epoch of every
    trial (timestamp: Tune's ``timestamp``, Unix seconds; epoch: 1-based; value: the score,
    NaN when the epoch has none). They are ordered by timestamp, ties broken by trial id and
    then epoch; the i-th record (1-based) puts the search at ``i`` epochs spent. ``mode``:
    ``"max"`` or ``"min"``, which way the score improves. A NaN value spends an epoch without
    changing the best.
    """
    ordered = sorted(records, key=lambda r: (float(r[0]), str(r[1]), int(r[2])))
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    epochs: list[int] = []
    best: list[float] = []
    last: dict[str, int] = {}
    current = math.nan
    best_trial: str | None = None
    for x, (_ts, trial, _epoch, value) in enumerate(ordered, start=1):
        v = float(value)
        if not math.isnan(v) and (math.isnan(current) or better(v, current)):
            current, best_trial = v, str(trial)
        epochs.append(x)
        best.append(current)
        last[str(trial)] = x
    return AnytimeSeries(epochs, best, last, best_trial)


def anytime_records(res: SearchResults) -> tuple[list[AnytimeRecord], int]:
    """Every reported epoch of every trial as an :data:`AnytimeRecord`, scored by
    ``best_<metric>`` (the score of the epoch whose weights are kept), else ``<metric>``.
    Returns the records and the number of epochs skipped for want of a ``timestamp``."""
    records: list[AnytimeRecord] = []
    skipped = 0
    metric = res.metric
    for tid, hist in res.histories.items():
        for i, row in enumerate(hist, start=1):
            # a replayed search reports many epochs a second: its own clock orders them
            ts = as_float(row.get("replay_wall", row.get("timestamp")))
            if math.isnan(ts):
                skipped += 1
                continue
            value = as_float(row.get(f"best_{metric}"))
            if math.isnan(value):
                value = as_float(row.get(metric))
            epoch = row.get("epoch", row.get("training_iteration", i))
            try:
                epoch = int(epoch)
            except (TypeError, ValueError):
                epoch = i
            records.append((ts, tid, epoch, value))
    return records, skipped


def _replay_line(res: SearchResults, series: AnytimeSeries,
                 replay: dict[str, Any]) -> str | None:
    """Where the search's best configuration sits in a replayed (recorded) table, or None."""
    ranks = [r for r in replay.get("ranks") or [] if isinstance(r, dict)]
    ok = res.scored_rows()
    tid = ok[0]["trial_id"] if ok else series.best_trial
    if tid is None or not ranks:
        return None
    spellings: dict[str, set[str]] = {}
    row = next((r for r in res.rows if r.get("trial_id") == tid), None)
    for key in res.param_keys:
        if row is not None and row.get(key, "") != "":
            raw = row[key]
            spellings.setdefault(key, set()).update({raw, str(parse_cell(raw)),
                                                     category_text(parse_cell(raw))})
    for key, value in (res.trial_params.get(tid) or {}).items():
        spellings.setdefault(key, set()).update({str(value), category_text(value)})

    def matches(entry: dict[str, Any]) -> bool:
        params = entry.get("params") or {}
        return bool(params) and all(str(v) in spellings.get(k, set()) or
                                    category_text(v) in spellings.get(k, set())
                                    for k, v in params.items())

    hit = next((r for r in ranks if matches(r)), None)
    grid_best = as_float(replay.get("grid_best"))
    if hit is None:
        return (f"Replay: the best trial {tid}'s configuration was not found among the "
                f"{len(ranks)} configurations of the recorded table.")
    score = as_float(hit.get("score"))
    gap = abs(grid_best - score)
    return (f"Replay: the search's best configuration (trial {tid}) ranks {hit.get('rank')} "
            f"of {len(ranks)} configurations of the recorded table; its ground-truth "
            f"{res.metric} is {score:.4f} vs the grid's best {grid_best:.4f} "
            f"(gap {gap:.4f}).")


def anytime_section(doc: ReportDocument, res: SearchResults) -> None:
    """The curve, when the final best was first reached, and a replay's rank and cost."""
    doc.section("anytime")
    records, skipped = anytime_records(res)
    if not records:
        doc.note(res.trials_note or ("the per-epoch results have no timestamp: no anytime "
                                     "curve." if skipped else
                                     "no per-epoch results were found."))
        return
    series = anytime_series(records, res.mode)
    replay = res.info.get("replay")
    replay = replay if isinstance(replay, dict) else None
    n_pruned = _anytime_figure(doc, res, series, replay)
    doc.text(_anytime_text(res, series, n_pruned, skipped))
    if replay is not None:
        line = _replay_line(res, series, replay)
        grid_epochs = as_float(replay.get("grid_epochs"))
        if not math.isnan(grid_epochs) and grid_epochs > 0:
            cost = (f"Running the whole grid costs {grid_epochs:g} epochs; this search spent "
                    f"{series.total_epochs} ({100 * series.total_epochs / grid_epochs:.0f} %).")
            line = f"{line} {cost}" if line else cost
        noise = replay.get("noise")
        if isinstance(noise, dict) and not math.isnan(as_float(noise.get("split_within"))):
            ties = as_float(noise["split_within"]) < TIES_BELOW
            worth = (f"On this table one run spreads {as_float(noise.get('run_sd')):.3f} around "
                     f"its configuration's mean; the best by half its training seeds is within "
                     f"0.01 of the best by the other half in "
                     f"{100 * as_float(noise['split_within']):.0f} % of splits"
                     + (", so ranks this close are ties, not a verdict." if ties else "."))
            line = f"{line} {worth}" if line else worth
        if line:
            doc.text(line)


def _anytime_figure(doc: ReportDocument, res: SearchResults, series: AnytimeSeries,
                    replay: dict[str, Any] | None) -> int:
    """Draw the curve, a marker where each trial reported its last epoch and, for a replay,
    the grid's best and cost. Returns the number of pruned trials."""
    from matplotlib.lines import Line2D

    metric = res.metric

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.step(series.epochs, series.best, where="post", color="#08519c", linewidth=2.0,
            label=f"best {metric} so far")
    groups: dict[str, list[int]] = {"finished": [], "pruned": [], "failed": []}
    for tid, x in series.last_epoch_at.items():
        st = res.status(tid)
        if st in FINISHED:
            groups["finished"].append(x)
        elif st == "failed":
            groups["failed"].append(x)
        elif st not in NOT_PRUNED:
            groups["pruned"].append(x)
    style = {"finished": ("o", "#2ca02c", "finished (completed / early-stopped)"),
             "pruned": ("v", "#7f7f7f", "stopped by the scheduler"),
             "failed": ("x", "#d62728", "failed")}
    for name, xs in groups.items():
        if not xs:
            continue
        marker, colour, label = style[name]
        xs = sorted(xs)
        ax.scatter(xs, [series.best_at(x) for x in xs], marker=marker, color=colour, s=34,
                   zorder=3, label=f"{label} ({len(xs)})")
        ax.scatter(xs, [0.0] * len(xs), marker=marker, color=colour, s=22, zorder=3,
                   transform=ax.get_xaxis_transform(), clip_on=False)
    extra: list[Any] = []
    if replay is not None:
        grid_best = as_float(replay.get("grid_best"))
        grid_epochs = as_float(replay.get("grid_epochs"))
        if not math.isnan(grid_best):
            ax.axhline(grid_best, color="#d62728", linestyle="--", linewidth=1.0)
            extra.append(Line2D([], [], color="#d62728", linestyle="--",
                                label=f"grid best ({grid_best:.4f})"))
        if not math.isnan(grid_epochs):
            ax.axvline(grid_epochs, color="#9467bd", linestyle=":", linewidth=1.2)
            extra.append(Line2D([], [], color="#9467bd", linestyle=":",
                                label=f"whole grid ({grid_epochs:g} epochs)"))
    for grown in res.info.get("grown") or []:
        x = as_float(grown.get("epochs_before")) if isinstance(grown, dict) else math.nan
        if not math.isnan(x) and x > 0:
            ax.axvline(x, color="#ff7f0e", linestyle="-.", linewidth=1.2)
            extra.append(Line2D([], [], color="#ff7f0e", linestyle="-.",
                                label=f"grown {grown.get('from')} -> {grown.get('to')} trials"))
    legend_outside(ax, extra)
    epoch_axis(ax, "epochs spent by the search (all trials, in the order reported)")
    ax.set_ylabel(f"best {metric} so far ({res.mode})")
    ax.set_xlim(left=0)
    ax.set_title(f"anytime curve: {len(series.last_epoch_at)} trials, "
                 f"{series.total_epochs} epochs", fontsize=10)
    fig.tight_layout()
    doc.figure(fig, "anytime", f"Best {metric} reported so far (best_{metric}: the score of the "
               "epoch whose weights are kept) against the epochs the whole search has spent; "
               "markers: where each trial reported its last epoch.")
    return len(groups["pruned"])


def _anytime_text(res: SearchResults, series: AnytimeSeries, n_pruned: int,
                  skipped: int) -> str:
    """The paragraph under the curve: epochs spent, when the final best was first reached."""
    metric = res.metric
    first = series.first_best_at
    text = f"The search spent {series.total_epochs} epochs (all trials together). "
    if first is None:
        text += f"No trial reported a {metric}. "
    else:
        text += (f"The final best {metric} {series.final_best:.4f} was first reached after "
                 f"{first} epochs ({100 * first / series.total_epochs:.0f} % of the total), "
                 f"by trial {series.best_trial}. ")
    scheduler = res.search_cfg.get("scheduler", "asha")
    text += (f"{n_pruned} of {len(series.last_epoch_at)} trials were pruned (stopped by the "
             f"{scheduler} scheduler)." if scheduler != "none" else
             "No scheduler stopped any trial (scheduler: none).")
    if skipped:
        text += f" {skipped} epochs without a timestamp are not shown."
    return text


