"""Per-epoch sections: the learning curves of the top trials, and the scheduler's pruning
picture (the metric of every trial per epoch, stopped ones dashed, ASHA's rungs marked)."""

from __future__ import annotations

import math
from typing import Any

from raygym.report.document import ReportDocument, cell_text
from raygym.report.figures import epoch_axis, legend_outside, pyplot, shorten
from raygym.report.results import FINISHED, NOT_PRUNED, SearchResults, as_float, parse_cell
from raygym.search.space import short_key

TOP_CURVES = 5
"""How many of the best trials the learning-curve figure shows."""
LABELLED_CURVES = 10
"""How many trials not stopped by the scheduler the pruning figure names (the best, by the
leaderboard); the others share one colour and one legend entry."""
OTHERS_COLOUR = "#6baed6"


def epoch_series(hist: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Epochs (1-based) and values of ``key`` in a trial's history, epochs without it left out."""
    xs, ys = [], []
    for r in hist:
        v = as_float(r.get(key))
        if not math.isnan(v):
            xs.append(int(r.get("epoch", r.get("training_iteration", len(xs) + 1))))
            ys.append(v)
    return xs, ys


def _label(res: SearchResults, tid: str) -> str:
    """A trial's legend entry: its id and its sampled values, shortened."""
    params = res.trial_params.get(tid) or next(
        ({k: parse_cell(r.get(k, "")) for k in res.param_keys} for r in res.rows
         if r.get("trial_id") == tid), {})
    short = ", ".join(f"{short_key(k, res.param_keys)}={cell_text(v)}"
                      for k, v in params.items() if v != "")
    return f"{tid} ({shorten(short, 60)})" if short else tid


def curves_section(doc: ReportDocument, res: SearchResults) -> None:
    """val mean IoU and val loss per epoch of the :data:`TOP_CURVES` best trials."""
    doc.section("curves")
    if res.trials_note:
        doc.note(res.trials_note)
    ranked = [tid for tid in res.trial_ids()
              if res.status(tid) != "failed" and res.histories.get(tid)]
    top = ranked[:TOP_CURVES]
    if not top:
        if not res.trials_note:
            doc.note("no per-epoch results of a successful trial were found.")
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9))
    cmap = plt.get_cmap("tab10")
    for i, tid in enumerate(top):
        hist = res.histories[tid]
        for ax, key in zip(axes, ("val_mean_iou", "val_loss"), strict=True):
            xs, ys = epoch_series(hist, key)
            ax.plot(xs, ys, marker="o", ms=3, color=cmap(i), label=_label(res, tid),
                    linestyle="-" if res.status(tid) in FINISHED else "--")
    axes[0].set_title("validation mean IoU")
    axes[0].set_ylim(0, 1)
    axes[1].set_title("validation loss")
    for ax in axes:
        epoch_axis(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.045 * math.ceil(len(top) / 2)))
    fig.tight_layout()
    doc.figure(fig, "curves", f"val mean IoU and val loss per epoch of the top {len(top)} "
               "trials (dashed: stopped early by the scheduler).")


def pruning_section(doc: ReportDocument, res: SearchResults) -> None:
    """The metric per epoch of every trial, and the epochs spent against the full budget."""
    doc.section("pruning")
    s = res.search_cfg
    scheduler = s.get("scheduler", "asha")
    metric = res.metric
    tids = [t for t in res.trial_ids() if res.histories.get(t)]
    if not tids:
        doc.note(res.trials_note or "no per-epoch results were found.")
        return
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.4))
    max_epoch, n_pruned, n_failed, n_others = draw_trial_curves(ax, res, tids, metric)
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="#9a9a9a", linestyle="--", label=f"pruned ({n_pruned})")]
    if n_others:
        extra.append(Line2D([], [], color=OTHERS_COLOUR, linewidth=1.0,
                            label=f"the other {n_others} not pruned"))
    if n_failed:
        extra.append(Line2D([], [], color="#d62728", linestyle=":", marker="x",
                            label=f"failed ({n_failed})"))
    max_epochs_cfg = (res.config.get("train") or {}).get("max_epochs")
    grace = s.get("grace_period") or 1
    if scheduler == "asha" and isinstance(grace, int):  # (auto: learnt during the search)
        _draw_asha_rungs(ax, grace,
                         float(s.get("reduction_factor") or 2), int(max_epochs_cfg or max_epoch))
    legend_outside(ax, extra)
    epoch_axis(ax)
    ax.set_ylabel(metric)
    ax.set_title(f"{scheduler}: {len(tids)} trials, {n_pruned} stopped early", fontsize=10)
    doc.figure(fig, "pruning", f"{metric} per epoch of every trial"
               + (f"; grey dashed: stopped by the {scheduler} scheduler" if scheduler != "none"
                  else " (no scheduler: none was stopped early)")
               + (", dotted verticals: ASHA's rungs (where it compares trials)"
                  if scheduler == "asha" else "") + ".")
    epochs = sum(len(res.histories[t]) for t in tids)
    budget = len(tids) * int(max_epochs_cfg or max_epoch)
    if budget:
        doc.text(f"{epochs} epochs trained out of {budget} without early stopping "
                 f"({100 * epochs / budget:.0f} %).")


def draw_trial_curves(ax: Any, res: SearchResults, tids: list[str],
                      metric: str) -> tuple[int, int, int, int]:
    """Every trial's ``metric`` per epoch on ``ax``: the first :data:`LABELLED_CURVES` of
    ``tids`` (leaderboard order) that the scheduler did not stop in colours of their own,
    named; the other such trials in one light colour, pruned trials grey dashed, failed ones
    red dotted. Returns (last epoch seen, pruned, failed, the other trials not pruned).

    The unnamed trials are one collection each, not a line per trial: at 1,000 trials a line
    and a legend entry each made the figure a 6,000-pixel-tall legend."""
    from matplotlib.collections import LineCollection

    cmap = pyplot().get_cmap("tab10")
    max_epoch, named, n_failed = 1, 0, 0
    others: list[list[tuple[int, float]]] = []
    pruned: list[list[tuple[int, float]]] = []
    for tid in tids:
        xs, ys = epoch_series(res.histories[tid], metric)
        if not xs:
            continue
        max_epoch = max(max_epoch, xs[-1])
        st = res.status(tid)
        if st == "failed":
            n_failed += 1
            ax.plot(xs, ys, color="#d62728", linestyle=":", linewidth=1.2)
            ax.scatter(xs[-1:], ys[-1:], marker="x", color="#d62728", s=40, zorder=3)
        elif st in NOT_PRUNED and named < LABELLED_CURVES:
            ax.plot(xs, ys, color=cmap(named % 10), linewidth=1.8, marker="o", ms=3,
                    label=f"{tid} ({st})", zorder=2)
            named += 1
        else:
            (others if st in NOT_PRUNED else pruned).append(list(zip(xs, ys, strict=True)))
    if others:
        ax.add_collection(LineCollection(others, colors=OTHERS_COLOUR, linewidths=1.0,
                                         zorder=1))
    if pruned:
        ax.add_collection(LineCollection(pruned, colors="#9a9a9a", linestyles="--",
                                         linewidths=1.1, zorder=1))
        points = [pt for line in pruned for pt in line]
        ax.scatter([x for x, _ in points], [y for _, y in points], marker=".", s=12,
                   color="#9a9a9a", zorder=1)
    ax.autoscale_view()
    return max_epoch, len(pruned), n_failed, len(others)


def _draw_asha_rungs(ax: Any, grace: int, reduction: float, max_t: int) -> None:
    """Dotted verticals at ASHA's rungs (epochs ``grace * reduction**k`` below ``max_t``)."""
    rung = float(grace)
    while rung < max_t:
        ax.axvline(rung, color="#555", linestyle=":", linewidth=0.8)
        ax.text(rung, 1.0, f" rung {rung:g}", transform=ax.get_xaxis_transform(),
                fontsize=7, va="top", color="#555")
        rung *= reduction
